//! `zplan bench-plan`: one plan against the same batched rollouts done alone.
//!
//! Method:
//! 1. One untimed plan runs through a recording proxy of the model, which notes the batch size,
//!    horizon and kind (plain or with gradients) of every rollout the planner asks for: the
//!    *same rollouts* for any planner, including iCEM's shrinking populations and the
//!    gradient planner's differentiable rollouts.
//! 2. After `warmup` untimed rounds, each of `repeats` rounds times one plan (encode the start
//!    observation, then plan from a reset planner with no warm start, exactly what an MPC step
//!    does) and then replays the recorded rollouts alone: the start latent expanded (not
//!    copied) to the batch, as planners pass it, and pre-generated actions within the bounds;
//!    gradient rollouts are followed by a backward pass to the actions. Interleaving keeps the
//!    ratio of the two honest when the machine's load drifts.
//! 3. `overhead = plan median / rollout median`: what the planner adds (sampling, refit,
//!    energy, host transfers, encoding the start) on top of the model's own work.
//!
//! On CUDA every timed section ends with `tch::Cuda::synchronize`; the replay synchronises
//! after each call, as a planner must before it can rank the candidates.
//!
//! For native JEPA networks the plan's arithmetic is counted from the network sizes (the MLP
//! matmuls, `2·in·out` FLOPs per layer and row: predictor steps × batch × horizon summed over
//! the recorded calls, twice that for gradient rollouts (forward plus the backward pass to the
//! inputs; the weights are frozen), plus encoding the start observation) and its rate compared
//! with a square matmul timed in the same process at the same thread count, in the model's
//! precision (float32, or bfloat16 with `--precision bf16`).

use super::BenchPlanArgs;
use crate::stats::percentile;
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use zplan_models::{Dtype, FieldSpec, ObsBatch, ObsSpec, Observation};
use zplan_models::{JepaConfig, JepaModel, LoadOptions, ModelSpec, Precision, WorldModel};
use zplan_obs::STATE;
use zplan_planner::{
    ActionBounds, Backend, Budget, CemConfig, EnergyConfig, GradientConfig, ICemConfig, MppiConfig,
    PlannerConfig,
};

/// Which planner `bench-plan` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlannerKind {
    /// Cross-entropy method.
    Cem,
    /// Improved CEM (colored noise, kept elites, population decay).
    Icem,
    /// Model predictive path integral.
    Mppi,
    /// Adam through the model's gradients.
    Grad,
}

/// Where `bench-plan`'s CEM keeps its population (`--backend`; CEM only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Sample and refit on the host (the default).
    #[default]
    Host,
    /// Sample, score, rank and refit on the model's device; one download per plan.
    Device,
}

/// Which clock times the sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// Wall-clock time: what a robot waits for. Inflated when the machine is oversubscribed.
    Wall,
    /// CPU time of the whole process (all threads; Linux only): robust to other processes
    /// competing for the cores, but it counts OpenMP workers' spin-waiting as work, so use it
    /// with `--threads 1`, and never on CUDA (the host waits while the device works).
    Cpu,
}

impl Clock {
    /// Seconds on this clock since an arbitrary origin.
    ///
    /// # Errors
    /// When the CPU clock is unavailable on this platform.
    pub fn now(self) -> Result<f64> {
        match self {
            Clock::Wall => {
                static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
                Ok(ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64())
            }
            Clock::Cpu => process_cpu_seconds()
                .ok_or_else(|| anyhow::anyhow!("the CPU clock is not available on this platform")),
        }
    }
}

/// CPU time of this process (`CLOCK_PROCESS_CPUTIME_ID`).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn process_cpu_seconds() -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: on 64-bit Linux `struct timespec` is two 64-bit integers; clock_gettime writes
    // one into memory we own and touches nothing else.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn process_cpu_seconds() -> Option<f64> {
    None
}

/// What to time: the planner's budget and the measurement's repetitions.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanBenchSettings {
    /// Planner.
    pub planner: PlannerKind,
    /// Candidates per iteration (gradient: sequences optimised side by side).
    pub samples: usize,
    /// Elites; `None`: `samples / 10`, at least 1.
    pub elites: Option<usize>,
    /// Planned actions.
    pub horizon: usize,
    /// Iterations per plan (gradient: Adam steps).
    pub iterations: u32,
    /// Timed rounds.
    pub repeats: usize,
    /// Untimed rounds before them.
    pub warmup: usize,
    /// Planner seed (and seed of the replayed actions).
    pub seed: u64,
    /// The energy the planner minimises.
    pub energy: EnergyConfig,
    /// Side of the reference matmul (JEPA models only).
    pub matmul_size: i64,
    /// Clock of every timed section.
    pub clock: Clock,
    /// Where CEM keeps its population (other planners: host only).
    pub backend: BackendKind,
}

impl PlanBenchSettings {
    /// The planner configuration these settings describe: the planner's defaults with the
    /// samples, elites, horizon and iterations replaced, validated.
    ///
    /// # Errors
    /// Invalid combinations (elites > samples, horizon 0, ...), naming the field.
    pub fn planner_config(&self) -> Result<PlannerConfig> {
        if self.repeats == 0 {
            bail!("--repeats must be at least 1");
        }
        if self.backend == BackendKind::Device && self.planner != PlannerKind::Cem {
            bail!(
                "--backend device is a CEM backend; {:?} keeps its population on the host \
                 (use --planner cem, or leave --backend at host)",
                self.planner
            );
        }
        let elites = self.elites.unwrap_or((self.samples / 10).max(1));
        let (samples, iterations, horizon) = (self.samples, self.iterations, self.horizon);
        let cfg = match self.planner {
            PlannerKind::Cem => PlannerConfig::Cem(CemConfig {
                samples,
                elites,
                iterations,
                horizon,
                backend: match self.backend {
                    BackendKind::Host => Backend::Host,
                    BackendKind::Device => Backend::Device,
                },
                ..CemConfig::default()
            }),
            PlannerKind::Icem => PlannerConfig::ICem(ICemConfig {
                samples,
                elites,
                iterations,
                horizon,
                ..ICemConfig::default()
            }),
            PlannerKind::Mppi => PlannerConfig::Mppi(MppiConfig {
                samples,
                elites,
                iterations,
                horizon,
                ..MppiConfig::default()
            }),
            PlannerKind::Grad => PlannerConfig::Gradient(GradientConfig {
                steps: iterations,
                horizon,
                samples,
                ..GradientConfig::default()
            }),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The model and the problem a plan is timed on.
pub struct PlanSetup {
    /// The world model.
    pub model: Arc<dyn WorldModel>,
    /// The network sizes when the model is a native JEPA model (enables FLOP counting).
    pub jepa: Option<JepaConfig>,
    /// Start observation (a batch of one), encoded inside every timed plan.
    pub start_obs: ObsBatch,
    /// Goal observation (a batch of one), encoded once.
    pub goal_obs: ObsBatch,
    /// Action bounds.
    pub bounds: ActionBounds,
    /// Threads rolling out candidate groups in parallel (`model` is then a
    /// [`zplan_models::ParallelRollout`]); 1 = off.
    pub rollout_threads: usize,
}

/// One rollout the planner asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RolloutCall {
    /// Candidates rolled out together.
    pub batch: i64,
    /// Steps.
    pub horizon: i64,
    /// Whether it recorded autograd (`rollout_grad`, gradient planner).
    pub grad: bool,
}

/// Latencies of one timed section over the repeats.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Timing {
    /// Median, milliseconds.
    pub median_ms: f64,
    /// 99th percentile (interpolated), milliseconds.
    pub p99_ms: f64,
    /// Every repeat, milliseconds, in order.
    pub all_ms: Vec<f64>,
}

impl Timing {
    fn of(all_ms: Vec<f64>) -> Self {
        Timing {
            median_ms: percentile(&all_ms, 50.0).unwrap_or(f64::NAN),
            p99_ms: percentile(&all_ms, 99.0).unwrap_or(f64::NAN),
            all_ms,
        }
    }
}

/// The arithmetic of a plan on native JEPA networks and its rate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Arithmetic {
    /// FLOPs of one plan (MLP matmuls only).
    pub flops_per_plan: f64,
    /// `flops_per_plan / plan median`, GFLOP/s.
    pub gflops: f64,
    /// Side of the reference matmul.
    pub matmul_size: i64,
    /// Median rate of the reference matmul, GFLOP/s.
    pub matmul_gflops: f64,
    /// `gflops / matmul_gflops`.
    pub efficiency: f64,
}

/// What `bench-plan` measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlanBenchReport {
    /// The model's name.
    pub model: String,
    /// Latent shape.
    pub latent_shape: Vec<i64>,
    /// Device.
    pub device: String,
    /// The precision the model computes in.
    pub precision: Precision,
    /// torch intra-op threads during the measurement.
    pub threads: i32,
    /// Threads rolling out candidate groups in parallel (1 = off).
    pub rollout_threads: usize,
    /// Clock of the timed sections.
    pub clock: Clock,
    /// The planner configuration, as RON.
    pub planner: String,
    /// Timed rounds.
    pub repeats: usize,
    /// Untimed rounds.
    pub warmup: usize,
    /// Iterations one plan completed.
    pub iterations: u32,
    /// Candidates one plan rolled out.
    pub rollouts: u64,
    /// The rollouts one plan asked for, in order.
    pub calls: Vec<RolloutCall>,
    /// One plan (encoding the start observation included).
    pub plan: Timing,
    /// Encoding the start observation alone (part of `plan`).
    pub encode: Timing,
    /// The recorded rollouts done alone.
    pub rollout: Timing,
    /// `plan.median_ms / rollout.median_ms`.
    pub overhead: f64,
    /// FLOPs and their rate (native JEPA models only).
    pub arithmetic: Option<Arithmetic>,
}

impl PlanBenchReport {
    /// The machine-readable summary (`key=value`, space separated): `plan_ms_median`,
    /// `plan_ms_p99`, `rollout_ms_median`, `overhead`, and for JEPA models `gflops`,
    /// `matmul_gflops`, `efficiency` (a fraction).
    pub fn machine_line(&self) -> String {
        let mut s = format!(
            "plan_ms_median={:.4} plan_ms_p99={:.4} rollout_ms_median={:.4} overhead={:.4}",
            self.plan.median_ms, self.plan.p99_ms, self.rollout.median_ms, self.overhead
        );
        if let Some(a) = &self.arithmetic {
            s.push_str(&format!(
                " gflops={:.3} matmul_gflops={:.3} efficiency={:.4}",
                a.gflops, a.matmul_gflops, a.efficiency
            ));
        }
        s
    }
}

/// Run-length summary of the calls: `10 x [300, 16]`, `[300, 30] + [240, 30] + …`.
fn describe_calls(calls: &[RolloutCall]) -> String {
    let mut parts: Vec<(usize, RolloutCall)> = Vec::new();
    for c in calls {
        match parts.last_mut() {
            Some((n, last)) if last == c => *n += 1,
            _ => parts.push((1, *c)),
        }
    }
    parts
        .iter()
        .map(|(n, c)| {
            let g = if c.grad { " with grad" } else { "" };
            if *n == 1 {
                format!("[{}, {}]{g}", c.batch, c.horizon)
            } else {
                format!("{n} x [{}, {}]{g}", c.batch, c.horizon)
            }
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

impl fmt::Display for PlanBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model       {} (latent {:?}) on {} in {}, {} torch thread(s){}, {:?} clock",
            self.model,
            self.latent_shape,
            self.device,
            self.precision,
            self.threads,
            if self.rollout_threads > 1 {
                format!(" × {} candidate groups in parallel", self.rollout_threads)
            } else {
                String::new()
            },
            self.clock
        )?;
        writeln!(f, "planner     {}", self.planner)?;
        writeln!(
            f,
            "work        {} iterations, {} candidate rollouts per plan: {}",
            self.iterations,
            self.rollouts,
            describe_calls(&self.calls)
        )?;
        writeln!(
            f,
            "plan        median {:.3} ms  p99 {:.3} ms  (of which encoding the start: median {:.3} ms)",
            self.plan.median_ms, self.plan.p99_ms, self.encode.median_ms
        )?;
        writeln!(
            f,
            "rollouts    median {:.3} ms  p99 {:.3} ms  (the same rollouts done alone)",
            self.rollout.median_ms, self.rollout.p99_ms
        )?;
        writeln!(
            f,
            "overhead    {:.3}x  (plan / rollouts, medians of {} interleaved repeats after {} warm-up)",
            self.overhead, self.repeats, self.warmup
        )?;
        if let Some(a) = &self.arithmetic {
            writeln!(
                f,
                "arithmetic  {:.4} GFLOP per plan -> {:.2} GFLOP/s; {n}x{n} {} matmul {:.2} GFLOP/s; efficiency {:.1} %",
                a.flops_per_plan / 1e9,
                a.gflops,
                self.precision,
                a.matmul_gflops,
                100.0 * a.efficiency,
                n = a.matmul_size
            )?;
        }
        write!(f, "{}", self.machine_line())
    }
}

/// Loads the model and builds the problem `bench-plan` was asked for.
///
/// # Errors
/// Unloadable models, missing or inconsistent sizes.
pub fn load_setup(args: &BenchPlanArgs) -> Result<PlanSetup> {
    let device = args.device;
    let precision = args.precision;
    let opts = LoadOptions {
        device,
        precision,
        ..LoadOptions::default()
    };
    let (obs_spec, action_dim, scenario) = match (&args.scenario, &args.obs_shape, args.action_dim)
    {
        (Some(path), _, _) => {
            let sc = zplan_sim::ScenarioConfig::load(path)
                .with_context(|| format!("loading scenario {}", path.display()))?;
            let spec = sc.spec();
            (spec.observation.clone(), spec.action_dim() as i64, Some(sc))
        }
        (None, Some(o), Some(a)) => {
            if o.iter().any(|&d| d < 1) || a < 1 {
                bail!("observation sizes and the action size must be positive");
            }
            let field = FieldSpec {
                name: STATE.to_string(),
                dtype: Dtype::F32,
                shape: o.iter().map(|&d| d as usize).collect(),
                names: Vec::new(),
            };
            (ObsSpec::new(vec![field])?, a, None)
        }
        _ => bail!("give --scenario FILE, or --obs-shape D[,D...] and --action-dim A"),
    };
    if action_dim < 1 {
        bail!("the action size must be positive");
    }
    let context = || format!("loading model `{}`", args.model);
    let mut jepa = None;
    let model: Arc<dyn WorldModel> = if args.model == "jepa-new" {
        let dim = match obs_spec.field(STATE) {
            Some(f) if f.shape.len() == 1 => f.shape[0] as i64,
            _ => bail!("jepa-new takes a state vector observation; this one is {obs_spec}"),
        };
        let mut cfg = JepaConfig::new(dim, action_dim);
        if let Some(l) = args.latent_dim {
            cfg.latent_dim = l;
        }
        if let Some(h) = args.hidden {
            cfg.enc_hidden = h;
            cfg.pred_hidden = h;
        }
        if let Some(n) = args.layers {
            cfg.enc_layers = n;
            cfg.pred_layers = n;
        }
        cfg.seed = args.seed;
        let m = JepaModel::new(cfg, device.resolve()?)
            .and_then(|m| m.with_precision(precision))
            .with_context(context)?;
        jepa = Some(m.config());
        Arc::new(m)
    } else {
        let spec: ModelSpec = args.model.parse().with_context(context)?;
        match (&spec, &scenario) {
            (ModelSpec::Jepa(path), _) => {
                let m = JepaModel::load_with_precision(path, device.resolve()?, precision)
                    .with_context(context)?;
                zplan_models::check_fits(&m, &obs_spec, action_dim, "the benchmark's sizes")
                    .with_context(context)?;
                jepa = Some(m.config());
                Arc::new(m)
            }
            (_, Some(sc)) => {
                zplan_models::load_model_with(&spec, sc, &opts).with_context(context)?
            }
            (_, None) => zplan_models::load_model_for_with(&spec, &obs_spec, action_dim, &opts)
                .with_context(context)?,
        }
    };
    let model: Arc<dyn WorldModel> = if args.rollout_threads > 1 {
        Arc::new(zplan_models::ParallelRollout::new(
            model,
            args.rollout_threads,
        )?)
    } else {
        model
    };
    let (start, goal, bounds) = match &scenario {
        Some(sc) => {
            let mut env = sc.build()?;
            env.reset(args.seed)?;
            let spec = env.spec().clone();
            let (mut start, mut goal) = (env.observe(), env.goal_observation());
            if model.needs_true_state() {
                start = start.with_true_state(env.state());
                goal = goal.with_true_state(env.goal_state());
            }
            (
                start,
                goal,
                ActionBounds::new(spec.action_low, spec.action_high)?,
            )
        }
        None => {
            let n: usize = obs_spec.fields()[0].numel();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed ^ 0x0b5e_55ed);
            let mut draw =
                || Observation::state((0..n).map(|_| rng.random_range(-1.0..1.0)).collect());
            (
                draw(),
                draw(),
                ActionBounds::symmetric(action_dim as usize, 1.0)?,
            )
        }
    };
    // Observations stay on the host (u8 images as u8): moving them is part of every plan.
    let batch = |o: &Observation| -> Result<ObsBatch> {
        Ok(ObsBatch::from_observations(
            model.obs_spec(),
            &[o],
            tch::Device::Cpu,
        )?)
    };
    Ok(PlanSetup {
        jepa,
        start_obs: batch(&start)?,
        goal_obs: batch(&goal)?,
        model,
        bounds,
        rollout_threads: args.rollout_threads.max(1),
    })
}

/// A proxy that records the rollouts asked of a model.
struct Recorder<'a> {
    inner: &'a dyn WorldModel,
    calls: Mutex<Vec<RolloutCall>>,
}

impl Recorder<'_> {
    fn note(&self, z0: &Tensor, actions: &Tensor, grad: bool) {
        let call = RolloutCall {
            batch: z0.size().first().copied().unwrap_or(0),
            horizon: actions.size().get(1).copied().unwrap_or(0),
            grad,
        };
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
    }
}

impl WorldModel for Recorder<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
    fn obs_spec(&self) -> &ObsSpec {
        self.inner.obs_spec()
    }
    fn needs_true_state(&self) -> bool {
        self.inner.needs_true_state()
    }
    fn action_dim(&self) -> i64 {
        self.inner.action_dim()
    }
    fn latent_shape(&self) -> &[i64] {
        self.inner.latent_shape()
    }
    fn proprio_latent(&self) -> Option<std::ops::Range<usize>> {
        self.inner.proprio_latent()
    }
    fn precision(&self) -> zplan_models::Precision {
        self.inner.precision()
    }
    fn frameskip(&self) -> usize {
        self.inner.frameskip()
    }
    fn encode(&self, obs: &ObsBatch) -> zplan_models::Result<Tensor> {
        self.inner.encode(obs)
    }
    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
        self.note(z0, actions, false);
        self.inner.rollout(z0, actions)
    }
    fn supports_grad(&self) -> bool {
        self.inner.supports_grad()
    }
    fn rollout_grad(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
        self.note(z0, actions, true);
        self.inner.rollout_grad(z0, actions)
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The recorded rollouts with their inputs prepared ahead of time.
struct Replay {
    inputs: Vec<(Tensor, Tensor, bool)>,
    device: Device,
}

impl Replay {
    fn new(
        model: &dyn WorldModel,
        z0: &Tensor,
        calls: &[RolloutCall],
        bounds: &ActionBounds,
        seed: u64,
    ) -> Result<Self> {
        let device = model.device();
        let a = bounds.dim() as i64;
        let low = Tensor::f_from_slice(bounds.low())?.f_to_device(device)?;
        let high = Tensor::f_from_slice(bounds.high())?.f_to_device(device)?;
        let range = high.f_sub(&low)?;
        tch::manual_seed(seed as i64);
        let latent = model.latent_shape().to_vec();
        let mut inputs = Vec::with_capacity(calls.len());
        for c in calls {
            let actions = Tensor::f_rand([c.batch, c.horizon, a], (Kind::Float, device))?
                .f_mul(&range)?
                .f_add(&low)?;
            let mut size = vec![c.batch];
            size.extend_from_slice(&latent);
            let z = z0.f_expand(size.as_slice(), false)?;
            inputs.push((z, actions, c.grad));
        }
        Ok(Replay { inputs, device })
    }

    /// Runs every recorded rollout once, synchronising after each.
    fn run(&self, model: &dyn WorldModel) -> Result<()> {
        for (z, actions, grad) in &self.inputs {
            if *grad {
                tch::with_grad(|| -> Result<()> {
                    let leaf = actions.f_detach()?.f_set_requires_grad(true)?;
                    let out = model.rollout_grad(z, &leaf)?;
                    out.f_sum(Kind::Float)?.f_backward()?;
                    Ok(())
                })?;
            } else {
                let _ = model.rollout(z, actions)?;
            }
            sync(self.device);
        }
        Ok(())
    }
}

/// FLOPs of one row through an MLP of sizes `dims` (matmuls only: `2·in·out` per layer).
pub fn mlp_flops(dims: &[i64]) -> f64 {
    dims.windows(2)
        .map(|w| 2.0 * w[0] as f64 * w[1] as f64)
        .sum()
}

/// FLOPs of a plan that made `calls` on JEPA networks `c`, encoding one observation.
pub fn jepa_plan_flops(c: &JepaConfig, calls: &[RolloutCall]) -> f64 {
    let step = mlp_flops(&c.predictor_dims());
    // A frameskip-K predictor steps once per block of K control steps (a last, shorter
    // block counts as one step).
    let skip = c.frameskip.max(1) as u64;
    let rollouts: f64 = calls
        .iter()
        .map(|k| {
            let steps = (k.horizon as u64).div_ceil(skip) as f64;
            let f = k.batch as f64 * steps * step;
            if k.grad {
                2.0 * f
            } else {
                f
            }
        })
        .sum();
    let (scene, proprio) = c.encoder_dims();
    rollouts + mlp_flops(&scene) + proprio.map_or(0.0, |d| mlp_flops(&d))
}

/// Times `reps` square matmuls of side `n` in `kind` (float32, bfloat16) on `device` (after
/// one warm-up) on `clock` and returns their GFLOP/s, one value per repetition.
///
/// # Errors
/// Allocation failures.
pub fn matmul_gflops(
    n: i64,
    reps: usize,
    kind: Kind,
    device: Device,
    clock: Clock,
) -> Result<Vec<f64>> {
    if n < 1 {
        bail!("the reference matmul needs a positive size, got {n}");
    }
    let _guard = tch::no_grad_guard();
    let a = Tensor::f_randn([n, n], (kind, device))?;
    let b = Tensor::f_randn([n, n], (kind, device))?;
    let _ = a.f_matmul(&b)?;
    sync(device);
    let flops = 2.0 * (n as f64).powi(3);
    let mut out = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = clock.now()?;
        let _ = a.f_matmul(&b)?;
        sync(device);
        out.push(flops / (clock.now()? - t).max(1e-9) / 1e9);
    }
    Ok(out)
}

/// Runs the benchmark described in the module docs.
///
/// # Errors
/// Invalid settings, model and planner errors.
pub fn run_plan_bench(setup: &PlanSetup, s: &PlanBenchSettings) -> Result<PlanBenchReport> {
    let cfg = s.planner_config()?;
    let model = setup.model.as_ref();
    let device = model.device();
    if s.clock == Clock::Cpu && device != Device::Cpu {
        bail!("the CPU clock cannot time work on {device:?}; use the wall clock");
    }
    if s.clock == Clock::Cpu && setup.rollout_threads > 1 {
        bail!(
            "the CPU clock adds up the time of all {} rollout threads; use the wall clock \
             with --rollout-threads",
            setup.rollout_threads
        );
    }
    let clock = s.clock;
    let ms = |t0: f64| -> Result<f64> { Ok((clock.now()? - t0) * 1e3) };
    let _guard = tch::no_grad_guard();
    let mut planner = cfg.build(setup.bounds.clone(), s.energy.clone(), s.seed)?;
    let goal = model.encode(&setup.goal_obs).context("encoding the goal")?;
    let budget = Budget::iterations(s.iterations);

    // One plan through the recorder: what rollouts does this planner ask for?
    let recorder = Recorder {
        inner: model,
        calls: Mutex::new(Vec::new()),
    };
    let z0 = model
        .encode(&setup.start_obs)
        .context("encoding the start")?;
    planner.reset();
    let first = planner.plan(&recorder, &z0, &goal, None, &budget)?;
    let calls = recorder
        .calls
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let replay = Replay::new(model, &z0, &calls, &setup.bounds, s.seed)?;

    // With candidate groups on several threads, a one-thread matmul is no fair reference.
    let count_flops = setup.jepa.is_some() && setup.rollout_threads == 1;
    let mut matmul = Vec::new();
    // The machine's matmul rate, measured before and after the plans (it drifts under load).
    let measure_matmul = |matmul: &mut Vec<f64>| -> Result<()> {
        if count_flops {
            let kind = model.precision().kind();
            matmul.extend(matmul_gflops(s.matmul_size, 3, kind, device, clock)?);
        }
        Ok(())
    };
    measure_matmul(&mut matmul)?;

    let mut plan_once = || -> Result<(f64, f64)> {
        planner.reset();
        sync(device);
        let t0 = clock.now()?;
        let z0 = model.encode(&setup.start_obs)?;
        sync(device);
        let encode_ms = ms(t0)?;
        let _ = planner.plan(model, &z0, &goal, None, &budget)?;
        sync(device);
        Ok((ms(t0)?, encode_ms))
    };
    for _ in 0..s.warmup {
        plan_once()?;
        replay.run(model)?;
    }
    let mut plan_ms = Vec::with_capacity(s.repeats);
    let mut encode_ms = Vec::with_capacity(s.repeats);
    let mut rollout_ms = Vec::with_capacity(s.repeats);
    for _ in 0..s.repeats {
        let (p, e) = plan_once()?;
        plan_ms.push(p);
        encode_ms.push(e);
        sync(device);
        let t = clock.now()?;
        replay.run(model)?;
        rollout_ms.push(ms(t)?);
    }
    measure_matmul(&mut matmul)?;

    let plan = Timing::of(plan_ms);
    let rollout = Timing::of(rollout_ms);
    let arithmetic = setup.jepa.as_ref().filter(|_| count_flops).map(|c| {
        let flops_per_plan = jepa_plan_flops(c, &calls);
        let gflops = flops_per_plan / (plan.median_ms / 1e3) / 1e9;
        let matmul_gflops = percentile(&matmul, 50.0).unwrap_or(f64::NAN);
        Arithmetic {
            flops_per_plan,
            gflops,
            matmul_size: s.matmul_size,
            matmul_gflops,
            efficiency: gflops / matmul_gflops,
        }
    });
    Ok(PlanBenchReport {
        model: model.name().to_string(),
        latent_shape: model.latent_shape().to_vec(),
        device: zplan_models::device_name(device),
        precision: model.precision(),
        threads: tch::get_num_threads(),
        rollout_threads: setup.rollout_threads,
        clock,
        planner: cfg.to_ron_string(),
        repeats: s.repeats,
        warmup: s.warmup,
        iterations: first.iterations,
        rollouts: first.rollouts,
        calls,
        overhead: plan.median_ms / rollout.median_ms,
        plan,
        encode: Timing::of(encode_ms),
        rollout,
        arithmetic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_mlp_flops() {
        assert_eq!(mlp_flops(&[3, 4, 5]), 2.0 * (12.0 + 20.0));
        let c = JepaConfig {
            latent_dim: 8,
            pred_hidden: 16,
            pred_layers: 1,
            enc_hidden: 4,
            enc_layers: 1,
            ..JepaConfig::new(3, 2)
        };
        let calls = [
            RolloutCall {
                batch: 10,
                horizon: 5,
                grad: false,
            },
            RolloutCall {
                batch: 1,
                horizon: 5,
                grad: true,
            },
        ];
        let step = 2.0 * (10.0 * 16.0 + 16.0 * 8.0);
        let enc = 2.0 * (3.0 * 4.0 + 4.0 * 8.0);
        assert_eq!(jepa_plan_flops(&c, &calls), 50.0 * step + 10.0 * step + enc);
        // Frameskip 2: blocks of 2, 2 and 1 steps, three predictor steps per rollout.
        let skip = JepaConfig { frameskip: 2, ..c };
        assert_eq!(
            jepa_plan_flops(&skip, &calls),
            30.0 * step + 6.0 * step + enc
        );
    }

    #[test]
    fn describes_calls_run_length() {
        let c = |batch, grad| RolloutCall {
            batch,
            horizon: 16,
            grad,
        };
        assert_eq!(
            describe_calls(&[c(300, false), c(300, false), c(240, false), c(8, true)]),
            "2 x [300, 16] + [240, 16] + [8, 16] with grad"
        );
    }

    #[test]
    fn planner_configs_validate() {
        let mut s = PlanBenchSettings {
            planner: PlannerKind::Cem,
            samples: 300,
            elites: None,
            horizon: 16,
            iterations: 10,
            repeats: 1,
            warmup: 0,
            seed: 0,
            energy: EnergyConfig::default(),
            matmul_size: 64,
            clock: Clock::Wall,
            backend: BackendKind::Host,
        };
        match s.planner_config().unwrap() {
            PlannerConfig::Cem(c) => assert_eq!((c.samples, c.elites, c.horizon), (300, 30, 16)),
            other => panic!("{other:?}"),
        }
        s.elites = Some(400);
        assert!(s.planner_config().is_err());
        s.elites = None;
        for kind in [PlannerKind::Icem, PlannerKind::Mppi, PlannerKind::Grad] {
            s.planner = kind;
            assert!(s.planner_config().is_ok(), "{kind:?}");
        }
    }
}
