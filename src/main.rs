//! The `zplan` command line.
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use zplan::runner::{self, RunOptions};
use zplan::shard::Shard;
use zplan::suite::LoadedSuite;
use zplan_models::{DeviceChoice, Precision};

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
    /// Collect exploration data (colored-noise random actions) from a scenario for training.
    Collect(CollectArgs),
    /// Train a JEPA world model on collected data.
    Train(Box<TrainArgs>),
    /// Time one plan on any model against the same rollouts done alone (planner overhead).
    BenchPlan(zplan::bench::BenchPlanArgs),
    /// Run a bench suite (planners x budgets x scenarios) closed loop; Pareto plots and table.
    Bench(zplan::bench::BenchArgs),
}

#[derive(Args, Debug)]
struct CollectArgs {
    /// Scenario file.
    scenario: PathBuf,
    /// Episodes to collect.
    #[arg(long)]
    episodes: u64,
    /// Output directory (data.safetensors + meta.json).
    #[arg(long)]
    out: PathBuf,
    /// Control steps per episode (default: the scenario's step limit).
    #[arg(long)]
    steps: Option<u32>,
    /// Base seed (episode seeds are drawn from the collection range).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Colored-noise exponent (0 white, 1 pink, 2 brown).
    #[arg(long, default_value_t = 1.0)]
    beta: f32,
    /// Noise scale as a fraction of the action half-range.
    #[arg(long, default_value_t = 1.0)]
    scale: f32,
    /// Control steps each sampled action is held.
    #[arg(long, default_value_t = 1)]
    action_repeat: u32,
    /// Worker threads (default: CPU cores).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    workers: Option<usize>,
    /// Fraction of episodes driven by MPC with the simulator-backed model (evenly spread).
    #[arg(long, default_value_t = 0.0)]
    planner_fraction: f32,
    /// Planner of the planner-driven episodes (RON).
    #[arg(
        long,
        default_value = "Cem(samples: 100, elites: 10, iterations: 3, horizon: 10)"
    )]
    planner: String,
    /// Energy of the planner-driven episodes (RON).
    #[arg(long, default_value = "(metric: L2, reduction: Sum)")]
    energy: String,
    /// Receding-horizon settings of the planner-driven episodes (RON).
    #[arg(long, default_value = "(replan_every: 2, action_block: 2)")]
    mpc: String,
    /// Noise added to planned actions (fraction of the half range).
    #[arg(long, default_value_t = 0.2)]
    planner_noise: f32,
    /// World model of the planner-driven episodes: `sim` (default: the simulator-backed model,
    /// planning from the true state) or a learned model (`jepa:PATH`, a `.safetensors` JEPA or
    /// a TorchScript file) planning from observations, as in evaluation: on-policy data on the
    /// states its own plans reach, for `zplan train --refit-predictor`.
    #[arg(long)]
    planner_model: Option<String>,
    /// Episodes per chunk file (default: as many as fit in about 64 MiB). Collection holds
    /// one chunk in memory at a time.
    #[arg(long)]
    chunk_episodes: Option<u64>,
}

impl CollectArgs {
    fn planner_driven(&self) -> Result<Option<zplan::collect::PlannerDriven>> {
        if self.planner_fraction <= 0.0 {
            return Ok(None);
        }
        Ok(Some(zplan::collect::PlannerDriven {
            planner: zplan_planner::PlannerConfig::from_ron_str(&self.planner)
                .with_context(|| format!("--planner `{}`", self.planner))?,
            energy: zplan_planner::EnergyConfig::from_ron_str(&self.energy)
                .with_context(|| format!("--energy `{}`", self.energy))?,
            mpc: zplan_planner::MpcConfig::from_ron_str(&self.mpc)
                .with_context(|| format!("--mpc `{}`", self.mpc))?,
            noise: self.planner_noise,
            model: self
                .planner_model
                .as_deref()
                .map(|m| {
                    m.parse::<zplan_models::ModelSpec>()
                        .with_context(|| format!("--planner-model `{m}`"))
                })
                .transpose()?,
        }))
    }
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Dataset directory written by `zplan collect`. With --refit-predictor it may be
    /// repeated (`--data A --data B`): the episodes of every directory, which must come from
    /// one scenario (e.g. exploration data and on-policy data from `collect --planner-model`)
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// Output model path (`NAME.safetensors`; the sidecar `NAME.json` is written beside it).
    #[arg(long)]
    out: PathBuf,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// torch intra-op threads. Default 1: the networks are small, and OpenMP workers that
    /// spin-wait on a busy machine made training 10x slower in our measurements.
    #[arg(long, default_value_t = 1)]
    threads: i32,
    /// Latent size.
    #[arg(long)]
    latent_dim: Option<i64>,
    /// Hidden width of encoder and predictor.
    #[arg(long)]
    hidden: Option<i64>,
    /// Hidden layers of the predictor.
    #[arg(long)]
    layers: Option<usize>,
    /// Hidden layers of the encoder (0 = linear encoder).
    #[arg(long)]
    enc_layers: Option<usize>,
    /// Prediction steps per training window.
    #[arg(long)]
    rollout_steps: Option<usize>,
    /// Windows per batch.
    #[arg(long)]
    batch: Option<usize>,
    /// Optimiser steps.
    #[arg(long)]
    steps: Option<usize>,
    /// AdamW learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// AdamW weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// EMA decay of the target encoder.
    #[arg(long)]
    ema: Option<f64>,
    /// VICReg variance weight.
    #[arg(long)]
    var_weight: Option<f64>,
    /// VICReg covariance weight.
    #[arg(long)]
    cov_weight: Option<f64>,
    /// Inverse-dynamics weight (0 disables the head).
    #[arg(long)]
    inverse_weight: Option<f64>,
    /// Validation fraction of episodes.
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Validate and checkpoint every N steps.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Wall-clock limit in minutes (the best checkpoint is kept).
    #[arg(long)]
    time_limit_min: Option<f64>,
    /// Observation fields of the agent's own state (comma-separated names, e.g.
    /// `pusher_x,pusher_y`), encoded apart into the last `--proprio-latent-dim` latent entries
    /// so an energy can weight them (`proprio_weight`)
    #[arg(long, value_delimiter = ',')]
    proprio: Vec<String>,
    /// Latent entries of the proprio encoder (with --proprio; pixel datasets with a proprio
    /// field always have one)
    #[arg(long)]
    proprio_latent_dim: Option<i64>,
    /// Pixel datasets: output channels of the image encoder's 3x3 convolutions (default
    /// 16,32,32)
    #[arg(long, value_delimiter = ',')]
    conv_widths: Vec<i64>,
    /// Pixel datasets: stride (1 or 2) of each --conv-widths convolution (default 2 for
    /// each); 1 keeps the full resolution, where keypoint maps can resolve a small body's shape
    #[arg(long, value_delimiter = ',', requires = "conv_widths")]
    conv_strides: Vec<i64>,
    /// Pixel datasets: layer-normalise the image latent (default true; small latents train
    /// better without)
    #[arg(long)]
    image_layer_norm: Option<bool>,
    /// Pixel datasets: a spatial soft-argmax head of K keypoints instead of the linear one;
    /// the scene latent is then the 2K keypoint coordinates (so --latent-dim is not given:
    /// the latent is 2K plus the proprio entries)
    #[arg(long, conflicts_with = "latent_dim")]
    keypoints: Option<i64>,
    /// Pixel datasets with --keypoints: the VICReg variance floor of each keypoint's spread
    /// sqrt(var x + var y) in image coordinates [-1, 1] (default: a unit floor on every
    /// coordinate). A small floor (0.1) lets a keypoint track a body that moves little or
    /// along one axis, such as two_rooms_doors' door
    #[arg(long, requires = "keypoints")]
    keypoint_std: Option<f64>,
    /// Pixel datasets with --keypoints: C linear features of the whole feature map after the
    /// keypoint coordinates (latent 2K + C + proprio), for what is not a point: where
    /// two_rooms_doors' door is
    #[arg(long, requires = "keypoints")]
    keypoint_context: Option<i64>,
    /// Pixel datasets with --keypoints: each keypoint also writes the orientation of its
    /// attention map, the normalised complex moment of order N (real, imaginary; latent
    /// 4K + C + proprio): a body's yaw with period 2π/N, which a point cannot hold. 4 for a
    /// square (push_pixels' block), 2 for an elongated body
    #[arg(long, requires = "keypoints")]
    keypoint_moment: Option<i64>,
    /// Pixel datasets with --keypoints: gain on the keypoint maps' logits before the softmax
    /// (default 1). Full-resolution maps (--conv-strides 1: 4096 cells at 64 x 64) need large
    /// logits to concentrate on a small body; a gain of 10 gets there in hundreds of steps
    #[arg(long, requires = "keypoints")]
    keypoint_gain: Option<f64>,
    /// Pixel datasets with --keypoint-moment: the moment reads the sigmoid of the keypoint
    /// map's logits (every cell it scores high, alike) inside a Gaussian window of radius R
    /// (image coordinates in [-1, 1]) around the keypoint, about that mask's centroid, instead
    /// of the softmax (default 0: the softmax). A keypoint on a few pixels of a body's edge
    /// then still writes the whole body's shape; about the body's half diagonal
    #[arg(long, requires = "keypoint_moment")]
    keypoint_moment_radius: Option<f64>,
    /// Pixel datasets with --keypoints: read each keypoint map as a sigmoid mask over the whole
    /// image instead of a softmax: the keypoint is the mask's centroid and the moment
    /// (--keypoint-moment) and spread are the mask's. A softmax keeps the few cells it scores
    /// highest (one edge of a body); a mask scores every cell that looks like the body alike,
    /// so its moment is the body's silhouette's: push_pixels' block yaw. Pair it with
    /// --image-norm channel and --keypoint-moment-radius (the moment in a window about the
    /// mask's centroid: the mask's faint tails over the background swamp a whole-image moment)
    #[arg(long, requires = "keypoints")]
    keypoint_mask: bool,
    /// Pixel datasets: normalise input images per pixel (`pixel`, the default: a static
    /// background becomes 0) or per colour channel over all pixels (`channel`: a body looks
    /// the same wherever it is, which a --keypoint-mask map needs)
    #[arg(long, value_parser = ["pixel", "channel"])]
    image_norm: Option<String>,
    /// Pixel datasets with --keypoints 2 or more: weight of a penalty on the correlation
    /// between coordinates of different keypoints (default 0). Scale-free, unlike
    /// --cov-weight: a second keypoint cannot follow the first at a small spread, and finds
    /// what else varies (two_rooms_doors' door)
    #[arg(long, requires = "keypoints")]
    keypoint_decorrelation: Option<f64>,
    /// Pixel datasets with --keypoints: the last N keypoints are static: a penalty keeps them
    /// still within each training window while the variance floor makes them differ between
    /// episodes, so they track what is fixed per episode but drawn per episode (two_rooms_doors'
    /// door) (default 0)
    #[arg(long, requires = "keypoints")]
    static_keypoints: Option<i64>,
    /// Pixel datasets with --keypoints and proprio fields: weight of a penalty on the
    /// correlation between keypoint coordinates and the proprio fields (default 0). Proprio
    /// already tells where the agent is, so the keypoints track what it moves instead
    /// (push_pixels' block, not its pusher)
    #[arg(long, requires = "keypoints")]
    proprio_decorrelation: Option<f64>,
    /// Pixel datasets with --keypoints: the largest spread E[|dz|^2] of each keypoint's map
    /// about the keypoint (image coordinates in [-1, 1]; default: free), by a penalty on the
    /// excess. Keeps each map on one body rather than a haze over
    /// the background; about the body's silhouette (2a²/3 for a square of half side a)
    #[arg(long, requires = "keypoints")]
    keypoint_spread: Option<f64>,
    /// Weight of the --keypoint-spread penalty (default 1)
    #[arg(long, requires = "keypoint_spread")]
    keypoint_spread_weight: Option<f64>,
    /// Weight of the --static-keypoints penalty (default 10)
    #[arg(long, requires = "static_keypoints")]
    static_weight: Option<f64>,
    /// Pixel datasets: keep the encoder of this trained pixel JEPA and retrain only its
    /// predictor on the frozen latents of --data (every frame encoded once), with half of
    /// each batch drawn in proportion to how badly a window is predicted (--priority). The
    /// predictor continues from MODEL's weights, or starts fresh when --hidden or --layers
    /// differs from MODEL's. Encoder options (--keypoints, --conv-widths, ...) do not apply
    #[arg(long, value_name = "MODEL", conflicts_with_all = ["keypoints", "conv_widths", "conv_strides", "latent_dim", "proprio_latent_dim", "enc_layers", "image_norm"])]
    refit_predictor: Option<PathBuf>,
    /// With --refit-predictor: exponent of the loss-proportional half of each batch (default
    /// 2; 0 draws every window uniformly)
    #[arg(long, requires = "refit_predictor")]
    priority: Option<f64>,
    /// With --refit-predictor: steps between recomputations of every window's loss for the
    /// prioritised draws (default 1000; on two_rooms_doors 250 steps planned worse: 73 %
    /// against 92-98 %, see models/trained/README.md)
    #[arg(long, requires = "refit_predictor")]
    priority_refresh: Option<usize>,
    /// With --refit-predictor: weigh each latent entry's prediction error by the inverse of
    /// its variance over the training frames (the loss in standardised units). Without it,
    /// entries count by their raw scale: push_pixels' proprio latent (std ~1) would outweigh
    /// the block's keypoint and moment (std ~0.15) 40 to 1
    #[arg(long, requires = "refit_predictor")]
    normalize_latent: bool,
    /// With --refit-predictor: train the predictor on standardised latents (each entry's
    /// mean and std over the training frames): the residual MLP reads and writes unit-scale
    /// entries, and the loss is in standardised units (as --normalize-latent). The scaling is
    /// folded into the first and last layers when saving, so the model's format and speed are
    /// unchanged
    #[arg(long, requires = "refit_predictor")]
    standardize_predictor: bool,
    /// With --refit-predictor: control steps per predictor step (DINO-WM's frameskip; default:
    /// MODEL's own, 1 for every model `zplan train` writes). The predictor learns `z_t →
    /// z_{t+K}` under the mean of the K actions; plans with an action block that is a
    /// multiple of K call it K times less often (see the sidecar's `config.frameskip`)
    #[arg(long, value_name = "K", requires = "refit_predictor")]
    frameskip: Option<usize>,
}

impl TrainArgs {
    fn config(&self) -> zplan::train::TrainConfig {
        let mut c = zplan::train::TrainConfig::default();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { c.$f = v; } )* };
        }
        set!(
            latent_dim,
            hidden,
            layers,
            enc_layers,
            rollout_steps,
            batch,
            steps,
            lr,
            weight_decay,
            ema,
            var_weight,
            cov_weight,
            inverse_weight,
            val_fraction,
            seed,
            eval_every,
            time_limit_min,
            proprio_latent_dim
        );
        c.proprio = self.proprio.clone();
        c.conv_widths = self.conv_widths.clone();
        c.conv_strides = self.conv_strides.clone();
        if let Some(v) = self.image_layer_norm {
            c.image_layer_norm = v;
        }
        c.keypoints = self.keypoints.unwrap_or(0);
        c.keypoint_std = self.keypoint_std.unwrap_or(0.0);
        c.keypoint_context = self.keypoint_context.unwrap_or(0);
        c.keypoint_moment = self.keypoint_moment.unwrap_or(0);
        if let Some(g) = self.keypoint_gain {
            c.keypoint_gain = g;
        }
        c.keypoint_decorrelation = self.keypoint_decorrelation.unwrap_or(0.0);
        c.static_keypoints = self.static_keypoints.unwrap_or(0);
        c.proprio_decorrelation = self.proprio_decorrelation.unwrap_or(0.0);
        c.keypoint_spread = self.keypoint_spread.unwrap_or(0.0);
        c.keypoint_moment_radius = self.keypoint_moment_radius.unwrap_or(0.0);
        c.keypoint_mask = self.keypoint_mask;
        if self.image_norm.as_deref() == Some("channel") {
            c.image_norm = zplan_models::jepa::ImageNorm::Channel;
        }
        if let Some(w) = self.keypoint_spread_weight {
            c.keypoint_spread_weight = w;
        }
        if let Some(w) = self.static_weight {
            c.static_weight = w;
        }
        c
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Suite file (default: scenarios/default.ron). With --resume it may be given only if it
    /// is the run's own suite.
    suite: Option<PathBuf>,
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
    /// Precision override of every learned model: fp32, or bf16 (bfloat16 weights and
    /// latents, float32 energies). Simulator-backed entries stay fp32. Recorded in run.json:
    /// --resume repeats it.
    #[arg(long)]
    precision: Option<Precision>,
    /// Parallel episode workers (default: CPU cores; at least 1).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    workers: Option<usize>,
    /// libtorch intra-op threads per worker (default: cores / workers). One is faster for
    /// small models: reach_pixels planned in 8.4 ms p50 on one thread and 32.6 ms on two
    /// (2 vCPUs, 1 worker), where OpenMP's thread wake-ups dominate
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    torch_threads: Option<usize>,
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
        /// Precision: fp32, or bf16 (also reports how far bf16 latents and predictions are
        /// from fp32's on the same batch).
        #[arg(long, default_value = "fp32")]
        precision: Precision,
        /// Batch size of the timed calls.
        #[arg(long, default_value_t = 256)]
        batch: i64,
        /// Horizon of the timed rollout.
        #[arg(long, default_value_t = 16)]
        horizon: i64,
    },
}

fn looks_like_suite(path: &Path) -> Result<bool> {
    let text = zplan_io::read_text(path, "a scenario or suite file", zplan_io::MAX_CONFIG_BYTES)?;
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
        let models = runner::check_models(&suite, device, 1)?;
        println!(
            "suite `{}` ({}): {} entries, seed {}",
            suite.suite.name,
            file.display(),
            suite.suite.entries.len(),
            suite.suite.seed
        );
        for (i, e) in suite.suite.entries.iter().enumerate() {
            let m = &models[i];
            println!(
                "  {}: scenario {} ({}), model {}{} latent {:?}, planner {}, {} episodes",
                e.name,
                suite.scenarios[i].0,
                suite.scenarios[i].1.kind(),
                m.name(),
                match m.precision() {
                    Precision::Fp32 => String::new(),
                    p => format!(" in {p}"),
                },
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
        println!(
            "  observation ({} fields):",
            spec.observation.fields().len()
        );
        for f in spec.observation.fields() {
            println!("    {f}");
        }
        println!(
            "  true state ({}, simulator-backed model and dataset labels only): {}",
            spec.state_dim(),
            spec.state_names.join(", ")
        );
        println!(
            "  action ({}): low {:?} high {:?}",
            spec.action_dim(),
            spec.action_low,
            spec.action_high
        );
        println!(
            "  control dt {} s = {} substeps x {} s, step limit {}",
            spec.control_dt, spec.substeps, spec.physics_dt, spec.max_steps
        );
        println!("ok");
    }
    Ok(())
}

fn cmd_run(args: RunArgs) -> Result<()> {
    let (suite_path, out, shard, device, precision) = if let Some(dir) = &args.resume {
        let m: runner::Manifest =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).with_context(
                || format!("{}: no run.json; not a zplan run directory", dir.display()),
            )?)
            .with_context(|| format!("{}/run.json is not a zplan run manifest", dir.display()))?;
        let dev = match (&args.device, &m.device) {
            (Some(d), _) => Some(*d),
            (None, Some(s)) => Some(s.parse().map_err(|e| anyhow::anyhow!("{e}"))?),
            (None, None) => None,
        };
        if let Some(given) = &args.suite {
            let theirs = LoadedSuite::load(given)?;
            if theirs.text_hash() != m.suite_hash {
                bail!(
                    "{} is a run of suite {}, not of {}: resume it without a suite argument, or give another --out",
                    dir.display(),
                    m.suite_path.display(),
                    given.display()
                );
            }
        }
        let precision = args.precision.or(m.precision);
        (m.suite_path.clone(), dir.clone(), m.shard, dev, precision)
    } else {
        let suite_arg = args
            .suite
            .clone()
            .unwrap_or_else(|| PathBuf::from("scenarios/default.ron"));
        let shard = match args.shard {
            Some(s) => s,
            None => Shard::from_env(args.shard_count)?.unwrap_or(Shard::ALL),
        };
        let suite = LoadedSuite::load(&suite_arg)?;
        let out = args.out.clone().unwrap_or_else(|| {
            let mut d = runner::default_out_dir(&suite.suite.name);
            if shard.count > 1 {
                d = PathBuf::from(format!(
                    "{}-shard{}of{}",
                    d.display(),
                    shard.index,
                    shard.count
                ));
            }
            d
        });
        (suite_arg, out, shard, args.device, args.precision)
    };
    let suite = LoadedSuite::load(&suite_path)?.with_precision(precision);
    if let Some(p) = precision {
        let sims = suite
            .models
            .iter()
            .filter(|m| **m == zplan_models::ModelSpec::Sim)
            .count();
        if p != Precision::Fp32 && sims > 0 {
            eprintln!(
                "zplan run: --precision {p} applies to the learned models; the {sims} simulator-backed entries have no weights and stay fp32"
            );
        }
    }
    let opts = RunOptions {
        out: out.clone(),
        shard,
        device,
        workers: args.workers,
        torch_threads: args.torch_threads,
        progress: !args.no_progress,
        filmstrips: true,
    };
    eprintln!(
        "zplan run: suite {} shard {}{} -> {}",
        suite_path.display(),
        shard,
        precision.map_or(String::new(), |p| format!(" precision {p}")),
        out.display()
    );
    zplan::interrupt::install();
    let outcome = runner::run_suite(&suite, &opts)?;
    let errors = outcome.records.iter().filter(|r| r.error.is_some()).count();
    if outcome.interrupted {
        println!("\n{}", outcome.summary_md);
        eprintln!(
            "zplan run: interrupted; {} episodes are recorded in {} ({} of them now). Finish the run with: zplan run --resume {}",
            outcome.records.len(),
            out.display(),
            outcome.ran,
            out.display()
        );
        std::process::exit(130);
    }
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

/// Keeps glibc from returning large temporary buffers to the kernel after every planner
/// iteration (and faulting them in again on the next): measured as 16 % of a tiny model's plan
/// time, 10-20 % faster plans with these thresholds. Pixel training allocates tensors above
/// any mmap threshold (a batch of 256 seven-frame windows is 88 MB of images, its first feature
/// maps 117 MB), so mmap is off altogether (`M_MMAP_MAX` 0): 30 steps of a pixel JEPA took 53 s
/// instead of 75 s, the difference being page faults on freshly mapped pages.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 0);
    }
}

/// The model loaded with `opts`, and, when `opts` asks for another precision than float32, the
/// same model in float32 to compare against (`model inspect --precision`).
fn with_fp32_reference<M>(
    opts: zplan_models::LoadOptions,
    load: impl Fn(zplan_models::LoadOptions) -> zplan_models::Result<M>,
) -> Result<(M, Option<M>)> {
    let m = load(opts)?;
    let reference = (opts.precision != Precision::Fp32)
        .then(|| {
            load(zplan_models::LoadOptions {
                precision: Precision::Fp32,
                ..opts
            })
        })
        .transpose()?;
    Ok((m, reference))
}

fn main() -> Result<()> {
    tune_allocator();
    // Before any thread starts: every worker and libtorch's pool inherit it.
    zplan_models::flush_denormals();
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
        Command::Collect(a) => {
            let sc = zplan_sim::ScenarioConfig::load(&a.scenario)?;
            let cfg = zplan::collect::CollectConfig {
                episodes: a.episodes,
                steps: a.steps.unwrap_or(sc.spec().max_steps),
                seed: a.seed,
                beta: a.beta,
                scale: a.scale,
                action_repeat: a.action_repeat,
                planner_fraction: a.planner_fraction,
                chunk_episodes: a.chunk_episodes,
                planner: a.planner_driven()?,
                workers: a.workers.unwrap_or_else(|| {
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(1)
                }),
            };
            eprintln!(
                "zplan collect: {} episodes x {} steps of {} -> {}",
                cfg.episodes,
                cfg.steps,
                a.scenario.display(),
                a.out.display()
            );
            let meta = zplan::collect::collect(&sc, &cfg, &a.out, true)?;
            println!(
                "wrote {} episodes x {} steps ({}; {} actions) in {} chunks to {}",
                meta.episodes,
                meta.steps,
                meta.observation
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_default(),
                meta.action_low.len(),
                meta.chunks.len(),
                a.out.display()
            );
            if let Some(mib) = meta.peak_rss_mib {
                println!("peak memory: {mib:.0} MiB");
            }
        }
        Command::Train(a) => {
            let cfg = a.config();
            tch::set_num_threads(a.threads.max(1));
            let device = a.device.resolve()?;
            if a.data.len() > 1 && a.refit_predictor.is_none() {
                anyhow::bail!(
                    "--data is given {} times: several datasets are read only with --refit-predictor",
                    a.data.len()
                );
            }
            let meta = zplan::train::read_metas(&a.data)?;
            let data = &a.data[0];
            let pixel = zplan::train::is_pixel_dataset(&meta);
            eprintln!(
                "zplan train: {} episodes of {} ({}) on {} -> {}",
                meta.episodes,
                meta.scenario.kind(),
                if pixel { "pixel JEPA" } else { "state JEPA" },
                zplan_models::device_name(device),
                a.out.display()
            );
            let r = if let Some(base) = &a.refit_predictor {
                if !pixel {
                    anyhow::bail!(
                        "--refit-predictor needs a pixel dataset; {} holds state vectors",
                        data.display()
                    );
                }
                let opts = zplan::refit::RefitOptions {
                    base: base.clone(),
                    priority: a.priority.unwrap_or(2.0),
                    refresh: a.priority_refresh.unwrap_or(1000),
                    hidden: a.hidden,
                    layers: a.layers,
                    normalize: a.normalize_latent,
                    standardize: a.standardize_predictor,
                    frameskip: a.frameskip,
                };
                zplan::refit::refit_predictor(data, &meta, &cfg, &opts, &a.out, device, true)?
            } else if pixel {
                zplan::train_pixels::train_pixels(data, &meta, &cfg, &a.out, device, true)?
            } else {
                let data = zplan::train::load_dataset(data)?;
                zplan::train::train(&data, &cfg, &a.out, device, true)?
            };
            println!("trained {} steps in {:.0} s", r.steps, r.seconds);
            println!(
                "validation prediction loss: {:.5} at start, best {:.5} at step {}",
                r.initial_val_loss, r.best_val_loss, r.best_step
            );
            println!(
                "latent health: per-dim std min {:.3} mean {:.3}, collapsed dims {}, linear probe R² {:.3}",
                r.health.min_std, r.health.mean_std, r.health.collapsed_dims, r.health.probe_r2
            );
            println!(
                "saved {} (+ sidecar .json, loss curve .loss.png, report .train.json)",
                a.out.display()
            );
        }
        Command::Run(args) => cmd_run(args)?,
        Command::BenchPlan(args) => zplan::bench::bench_plan(&args)?,
        Command::Bench(args) => zplan::bench::bench_suite(&args)?,
        Command::Merge { dirs, out } => {
            let out = out.unwrap_or_else(|| runner::default_out_dir("merged"));
            let outcome = runner::merge(&dirs, &out)?;
            println!("{}", outcome.summary_md);
            println!(
                "{} episodes merged into {}",
                outcome.records.len(),
                out.display()
            );
        }
        Command::Model(ModelCmd::Inspect {
            model,
            scenario,
            obs_shape,
            action_dim,
            device,
            precision,
            batch,
            horizon,
        }) => {
            let spec: zplan_models::ModelSpec = model.parse()?;
            spec.check_precision(precision)?;
            let opts = zplan_models::LoadOptions {
                device,
                precision,
                ..Default::default()
            };
            // Loads the model in `opts`' precision (and in fp32 for the comparison) and
            // gives the observations to time it on.
            let (m, reference, b) = match (scenario, obs_shape, action_dim) {
                (Some(p), _, _) => {
                    let sc = zplan_sim::ScenarioConfig::load(&p)?;
                    let (m, reference) = with_fp32_reference(opts, |o| {
                        zplan_models::load_model_with(&spec, &sc, &o)
                    })?;
                    // Real observations of the scenario (the true state attached for the
                    // simulator-backed model, which encodes it).
                    let mut env = sc.build()?;
                    let mut obs = Vec::with_capacity(batch.max(0) as usize);
                    for seed in 0..batch.max(0) as u64 {
                        env.reset(seed)?;
                        let o = env.observe();
                        obs.push(if m.needs_true_state() {
                            o.with_true_state(env.state())
                        } else {
                            o
                        });
                    }
                    let refs: Vec<&zplan_sim::Observation> = obs.iter().collect();
                    let b = zplan_models::ObsBatch::from_observations(
                        m.obs_spec(),
                        &refs,
                        tch::Device::Cpu,
                    )?;
                    (m, reference, b)
                }
                (None, Some(o), Some(a)) => {
                    let obs = zplan_models::state_shape_spec(&o)?;
                    let (m, reference) = with_fp32_reference(opts, |o| {
                        zplan_models::load_model_for_with(&spec, &obs, a, &o)
                    })?;
                    if batch < 1 {
                        bail!("--batch must be at least 1, got {batch}");
                    }
                    let b = zplan_models::inspect::random_batch(m.as_ref(), batch)?;
                    (m, reference, b)
                }
                _ => bail!("give --scenario FILE, or --obs-shape D[,D...] and --action-dim A"),
            };
            if let Some(w) = zplan::info::bf16_emulation_warning([m.as_ref()]) {
                eprintln!("{w}");
            }
            let mut r = zplan_models::inspect_with(m.as_ref(), &b, horizon)?;
            if let Some(fp32) = &reference {
                r.vs_fp32 = Some(zplan_models::compare_precision(
                    fp32.as_ref(),
                    m.as_ref(),
                    &b,
                    horizon,
                )?);
            }
            println!("{r}");
        }
    }
    Ok(())
}
