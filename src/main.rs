//! The `zplan` command line.
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use zplan::runner::{self, RunOptions};
use zplan::shard::Shard;
use zplan::suite::LoadedSuite;
use zplan_models::DeviceChoice;

/// zplan: plan robot actions by imagining them in a world model's latent space.
#[derive(Parser, Debug)]
#[command(name = "zplan", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the libtorch version, CUDA availability, torch threads and build profile.
    Info {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a scenario file or a suite file (every referenced file, model shapes) and print it.
    Validate {
        /// A scenario RON file or a suite RON file.
        file: PathBuf,
        /// Device to load suite models on for the shape check.
        #[arg(long, default_value = "cpu")]
        device: DeviceChoice,
    },
    /// Run a suite of closed-loop episodes (default: scenarios/default.ron) and report.
    Run(RunArgs),
    /// Merge run directories (e.g. shards) into one report.
    Merge {
        /// Run directories to merge.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output directory (default: a new one under runs/).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Inspect world models.
    #[command(subcommand)]
    Model(ModelCmd),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Suite file.
    #[arg(default_value = "scenarios/default.ron")]
    suite: PathBuf,
    /// Output directory (default: a new directory under runs/).
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Finish an interrupted run in DIR: no episode lost, none run twice.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Run only shard i of N (`i/N`); defaults from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT
    /// or JOB_COMPLETION_INDEX (with --shard-count or ZPLAN_SHARD_COUNT).
    #[arg(long)]
    shard: Option<Shard>,
    /// Shard count to pair with SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX.
    #[arg(long)]
    shard_count: Option<u32>,
    /// Model device override: cpu, cuda, cuda:N or auto.
    #[arg(long)]
    device: Option<DeviceChoice>,
    /// Parallel episode workers (default: CPU cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Subcommand, Debug)]
enum ModelCmd {
    /// Load a model, print its latent shape and device, and time a batched encode and rollout.
    Inspect {
        /// TorchScript file (.pt), native JEPA weights (.safetensors), or `sim`.
        model: String,
        /// Scenario whose observation and action sizes to probe with.
        #[arg(long, conflicts_with_all = ["obs_shape", "action_dim"])]
        scenario: Option<PathBuf>,
        /// Observation shape, e.g. `4` or `3,64,64`.
        #[arg(long, value_delimiter = ',', requires = "action_dim")]
        obs_shape: Option<Vec<i64>>,
        /// Action size.
        #[arg(long, requires = "obs_shape")]
        action_dim: Option<i64>,
        /// Device: cpu, cuda, cuda:N or auto.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Batch size of the timed calls.
        #[arg(long, default_value_t = 256)]
        batch: i64,
        /// Horizon of the timed rollout.
        #[arg(long, default_value_t = 16)]
        horizon: i64,
    },
}

fn looks_like_suite(path: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let first = text
        .lines()
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with("#!"))
        .unwrap_or("");
    Ok(first.starts_with("Suite"))
}

fn cmd_validate(file: &Path, device: DeviceChoice) -> Result<()> {
    if looks_like_suite(file)? {
        let suite = LoadedSuite::load(file)?;
        let models = runner::check_models(&suite, device)?;
        println!("suite `{}` ({}): {} entries, seed {}", suite.suite.name, file.display(), suite.suite.entries.len(), suite.suite.seed);
        for (i, e) in suite.suite.entries.iter().enumerate() {
            let m = &models[i];
            println!(
                "  {}: scenario {} ({}), model {} latent {:?}, planner {}, {} episodes",
                e.name,
                suite.scenarios[i].0,
                suite.scenarios[i].1.kind(),
                m.name(),
                m.latent_shape(),
                e.planner.name(),
                suite.episodes(i)
            );
        }
        println!("ok");
    } else {
        let sc = zplan_sim::ScenarioConfig::load(file)?;
        let spec = sc.spec();
        println!("scenario {} ({})", file.display(), spec.kind);
        println!("  observation ({}): {}", spec.obs_dim(), spec.obs_names.join(", "));
        println!("  action ({}): low {:?} high {:?}", spec.action_dim(), spec.action_low, spec.action_high);
        println!(
            "  control dt {} s = {} substeps x {} s, step limit {}",
            spec.control_dt, spec.substeps, spec.physics_dt, spec.max_steps
        );
        println!("ok");
    }
    Ok(())
}

fn cmd_run(args: RunArgs) -> Result<()> {
    let (suite_path, out, shard, device) = if let Some(dir) = &args.resume {
        let m: runner::Manifest = serde_json::from_str(
            &std::fs::read_to_string(dir.join("run.json"))
                .with_context(|| format!("{}: no run.json; not a zplan run directory", dir.display()))?,
        )
        .with_context(|| format!("{}/run.json is not a zplan run manifest", dir.display()))?;
        let dev = match (&args.device, &m.device) {
            (Some(d), _) => Some(*d),
            (None, Some(s)) => Some(s.parse().map_err(|e| anyhow::anyhow!("{e}"))?),
            (None, None) => None,
        };
        (m.suite_path.clone(), dir.clone(), m.shard, dev)
    } else {
        let shard = match args.shard {
            Some(s) => s,
            None => Shard::from_env(args.shard_count)?.unwrap_or(Shard::ALL),
        };
        let suite = LoadedSuite::load(&args.suite)?;
        let out = args.out.clone().unwrap_or_else(|| {
            let mut d = runner::default_out_dir(&suite.suite.name);
            if shard.count > 1 {
                d = PathBuf::from(format!("{}-shard{}of{}", d.display(), shard.index, shard.count));
            }
            d
        });
        (args.suite.clone(), out, shard, args.device)
    };
    let suite = LoadedSuite::load(&suite_path)?;
    let opts = RunOptions {
        out: out.clone(),
        shard,
        device,
        workers: args.workers,
        progress: !args.no_progress,
        filmstrips: true,
    };
    eprintln!("zplan run: suite {} shard {} -> {}", suite_path.display(), shard, out.display());
    let outcome = runner::run_suite(&suite, &opts)?;
    let errors = outcome.records.iter().filter(|r| r.error.is_some()).count();
    println!("\n{}", outcome.summary_md);
    println!(
        "{} episodes run now, {} from before; {} errors. Results in {}",
        outcome.ran,
        outcome.skipped,
        errors,
        out.display()
    );
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Info { json } => {
            let info = zplan::info::Info::collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("{info}");
            }
        }
        Command::Validate { file, device } => cmd_validate(&file, device)?,
        Command::Run(args) => cmd_run(args)?,
        Command::Merge { dirs, out } => {
            let out = out.unwrap_or_else(|| runner::default_out_dir("merged"));
            let outcome = runner::merge(&dirs, &out)?;
            println!("{}", outcome.summary_md);
            println!("{} episodes merged into {}", outcome.records.len(), out.display());
        }
        Command::Model(ModelCmd::Inspect { model, scenario, obs_shape, action_dim, device, batch, horizon }) => {
            let (spec_model, scenario_cfg, obs_shape, action_dim) = resolve_model_args(&model, scenario.as_deref(), obs_shape, action_dim)?;
            let m = zplan_models::load_any(&spec_model, scenario_cfg.as_ref(), &obs_shape, action_dim, device)?;
            let r = zplan_models::inspect(m.as_ref(), batch, horizon)?;
            println!("model        {}", m.name());
            println!("device       {:?}", m.device());
            println!("obs shape    {:?}", m.obs_shape());
            println!("action dim   {}", m.action_dim());
            println!("latent shape {:?}", m.latent_shape());
            println!("encode       {:.3} ms for batch {}", r.encode_ms, batch);
            println!("rollout      {:.3} ms for batch {} x horizon {} ({:.0} latent steps/s)", r.rollout_ms, batch, horizon, (batch * horizon) as f64 / (r.rollout_ms / 1000.0));
        }
    }
    Ok(())
}

fn resolve_model_args(
    model: &str,
    scenario: Option<&Path>,
    obs_shape: Option<Vec<i64>>,
    action_dim: Option<i64>,
) -> Result<(zplan_models::ModelSpec, Option<zplan_sim::ScenarioConfig>, Vec<i64>, i64)> {
    let spec = zplan_models::ModelSpec::from_path_str(model);
    match (scenario, obs_shape, action_dim) {
        (Some(p), _, _) => {
            let sc = zplan_sim::ScenarioConfig::load(p)?;
            let s = sc.spec();
            Ok((spec, Some(sc), vec![s.obs_dim() as i64], s.action_dim() as i64))
        }
        (None, Some(o), Some(a)) => Ok((spec, None, o, a)),
        _ => bail!("give --scenario FILE, or --obs-shape D[,D...] and --action-dim A"),
    }
}
