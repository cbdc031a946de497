//! Planner benchmarks behind `zplan bench-plan` and `zplan bench`.
//!
//! - [`bench_plan`] times one plan on any supported world model (warm-up, then median and p99
//!   over repeats) and, interleaved with it, the same batched rollouts done alone, so the ratio
//!   of the two is the planner's own overhead (sampling, refit, energy, host transfers). For
//!   native JEPA networks it also counts the plan's arithmetic and compares its rate with a
//!   large matmul timed in the same process at the same thread count. See [`plan`].
//! - [`bench_suite`] runs a suite whose entries differ in planner and budget, closed loop, and
//!   writes per scenario a success-versus-plan-time plot with the Pareto front marked, and a
//!   table (Markdown and CSV). See [`pareto`].
//!
//! Both set libtorch's intra-op threads explicitly: OpenMP workers spin-wait, and on an
//! oversubscribed machine they made small-model inference about ten times slower in our
//! measurements, which would turn a benchmark into a measurement of the machine's load.

pub mod pareto;
pub mod plan;

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use zplan_models::{DeviceChoice, Precision};

pub use pareto::{pareto_front, BenchRow};
pub use plan::{
    run_plan_bench, Arithmetic, BackendKind, Clock, PlanBenchReport, PlanBenchSettings,
    PlannerKind, RolloutCall, Timing,
};

/// Arguments of `zplan bench-plan`: time one plan against the same rollouts done alone.
#[derive(Args, Debug, Clone)]
pub struct BenchPlanArgs {
    /// World model: a TorchScript file (.pt), native JEPA weights (.safetensors / .json stem),
    /// `sim` (needs --scenario), or `jepa-new` for freshly initialised native JEPA networks
    /// (sizes from --latent-dim, --hidden, --layers).
    #[arg(long)]
    pub model: String,
    /// Scenario file: observation and action sizes, action bounds, and a real start and goal
    /// observation (episode `--seed`).
    #[arg(long, conflicts_with_all = ["obs_shape", "action_dim"])]
    pub scenario: Option<PathBuf>,
    /// Observation shape, e.g. `11` or `3,64,64` (start and goal are seeded random
    /// observations; actions bounded to [-1, 1]).
    #[arg(long, value_delimiter = ',', requires = "action_dim")]
    pub obs_shape: Option<Vec<i64>>,
    /// Action size.
    #[arg(long, requires = "obs_shape")]
    pub action_dim: Option<i64>,
    /// Planner.
    #[arg(long, value_enum, default_value_t = PlannerKind::Cem)]
    pub planner: PlannerKind,
    /// Candidates per iteration (gradient: sequences optimised side by side).
    #[arg(long, default_value_t = 300)]
    pub samples: usize,
    /// Elites (default: samples / 10, at least 1).
    #[arg(long)]
    pub elites: Option<usize>,
    /// Planned actions.
    #[arg(long, default_value_t = 16)]
    pub horizon: usize,
    /// Iterations per plan (gradient: Adam steps).
    #[arg(long, default_value_t = 10)]
    pub iters: u32,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Where CEM keeps its population: `host` (sampling and refit on the CPU, the default) or
    /// `device` (sampling, energies, top-k and refit as tensor ops on the model's device, one
    /// download per plan). CEM only.
    #[arg(long, value_enum, default_value_t = BackendKind::Host)]
    pub backend: BackendKind,
    /// Precision of the model: fp32, or bf16 (bfloat16 weights and latents; the reference
    /// matmul of JEPA models is then bf16 too).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
    /// torch intra-op threads (also for the reference matmul).
    #[arg(long, default_value_t = 1)]
    pub threads: i32,
    /// CPU threads that roll out groups of candidates in parallel, each with one torch thread
    /// (`zplan_models::ParallelRollout`); 1 = off. Needs `--threads 1` and the wall clock; the
    /// JEPA arithmetic summary is then left out (its matmul reference runs on one thread).
    #[arg(long, default_value_t = 1)]
    pub rollout_threads: usize,
    /// Timed plans (each followed by the same rollouts done alone).
    #[arg(long, default_value_t = 20)]
    pub repeats: usize,
    /// Untimed plans first (TorchScript optimises on its first calls).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Planner seed, and seed of the start and goal observations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Energy as RON, e.g. `(metric: L2, reduction: Sum)` (default: L1 on the last step,
    /// normalised).
    #[arg(long)]
    pub energy: Option<String>,
    /// Side of the square float32 matmul whose rate JEPA plans are compared with.
    #[arg(long, default_value_t = 2048)]
    pub matmul_size: i64,
    /// `jepa-new`: latent size (default 64).
    #[arg(long)]
    pub latent_dim: Option<i64>,
    /// `jepa-new`: hidden width of encoder and predictor (default 256).
    #[arg(long)]
    pub hidden: Option<i64>,
    /// `jepa-new`: hidden layers of encoder and predictor (default 2).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Clock: `wall`, or `cpu` (process CPU time, Linux): robust when other processes compete
    /// for the cores; use it with --threads 1 and on the CPU only.
    #[arg(long, value_enum, default_value_t = Clock::Wall)]
    pub clock: Clock,
    /// Also write the full report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Arguments of `zplan bench`: planners × budgets × scenarios in closed loop, with Pareto plots.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Bench suite: a run suite (see `zplan run`) whose entries differ in planner and budget.
    #[arg(default_value = "scenarios/bench.ron")]
    pub suite: PathBuf,
    /// Output directory (default: a new directory under runs/); an existing one of the same
    /// suite is resumed.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Model device override: cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// Parallel episode workers (default: CPU cores). Plan times of parallel workers share
    /// the cores; use 1 for latencies comparable with `bench-plan`.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// `zplan bench-plan`: loads the model, runs [`run_plan_bench`] and prints the report, whose
/// last line is machine-readable (`plan_ms_median=… plan_ms_p99=… rollout_ms_median=…
/// overhead=…`, plus `gflops=… matmul_gflops=… efficiency=…` for native JEPA models).
///
/// # Errors
/// Unloadable models, bad sizes or settings, and planner errors, with context.
pub fn bench_plan(args: &BenchPlanArgs) -> Result<()> {
    if args.threads < 1 {
        bail!("--threads must be at least 1, got {}", args.threads);
    }
    if args.rollout_threads < 1 {
        bail!(
            "--rollout-threads must be at least 1, got {}",
            args.rollout_threads
        );
    }
    if args.rollout_threads > 1 && args.threads > 1 {
        bail!(
            "--rollout-threads {} runs each candidate group with one torch thread; leave \
             --threads at 1 (got {}): libtorch's intra-op pool is shared by the process",
            args.rollout_threads,
            args.threads
        );
    }
    tch::set_num_threads(args.threads);
    let energy = match &args.energy {
        Some(text) => zplan_planner::EnergyConfig::from_ron_str(text)
            .with_context(|| format!("--energy `{text}`"))?,
        None => zplan_planner::EnergyConfig::default(),
    };
    let settings = PlanBenchSettings {
        planner: args.planner,
        samples: args.samples,
        elites: args.elites,
        horizon: args.horizon,
        iterations: args.iters,
        repeats: args.repeats,
        warmup: args.warmup,
        seed: args.seed,
        energy,
        matmul_size: args.matmul_size,
        clock: args.clock,
        backend: args.backend,
    };
    settings.planner_config()?;
    let setup = plan::load_setup(args)?;
    if let Some(w) = crate::info::bf16_emulation_warning([setup.model.as_ref()]) {
        eprintln!("{w}");
    }
    let report = run_plan_bench(&setup, &settings)?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{report}");
    Ok(())
}

/// `zplan bench`: runs the suite closed loop (through [`crate::runner::run_suite`], so the
/// output directory also holds the usual run report), then writes per scenario
/// `pareto_<scenario>.png|svg` and `bench.md` / `bench.csv`, and prints the table.
///
/// # Errors
/// Suite, model and I/O errors.
pub fn bench_suite(args: &BenchArgs) -> Result<()> {
    let suite = crate::suite::LoadedSuite::load(&args.suite)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::runner::default_out_dir(&format!("bench-{}", suite.suite.name)));
    let opts = crate::runner::RunOptions {
        out: out.clone(),
        shard: crate::shard::Shard::ALL,
        device: args.device,
        workers: args.workers,
        torch_threads: None,
        progress: !args.no_progress,
        filmstrips: false,
    };
    eprintln!(
        "zplan bench: suite {} -> {}",
        args.suite.display(),
        out.display()
    );
    let outcome = crate::runner::run_suite(&suite, &opts)?;
    let rows = pareto::bench_rows(&suite, &outcome.records);
    let written = pareto::write_bench_report(&out, &rows)?;
    println!("{}", pareto::to_markdown(&rows));
    let errors = outcome.records.iter().filter(|r| r.error.is_some()).count();
    println!(
        "{} episodes ({} errors); Pareto plots: {}; tables: bench.md, bench.csv in {}",
        outcome.records.len(),
        errors,
        written.join(", "),
        out.display()
    );
    Ok(())
}
