//! The one sampling planner: [`SamplingPlanner`] owns what every planner needs (seed, random
//! stream, energy, bounds, scratch buffers) and runs the shared preamble and the anytime loop
//! ([`drive`]); a [`Strategy`] (CEM, iCEM, MPPI, gradient descent) supplies only its
//! algorithm.
//!
//! Candidates live on the host in the normalised action space `u ∈ [-1, 1]` (see
//! [`ActionBounds`]); each iteration draws them from a seeded [`NormalStream`], denormalises them
//! into one upload buffer, rolls all of them out in a single `model.rollout` call with `z0`
//! expanded (not copied) to the batch, and scores them: on the host for CPU models (in place
//! when the model vouches for its result with [`Rollout::exclusive`], else from a copy in a
//! reused buffer), else on the device, reading back only the `[S]` energies. The refits (elite
//! mean/std, MPPI weights) are `O(S·H·A)` host loops, small next to any rollout, which is at
//! least `O(S·H·A·latent)`.

use crate::bounds::ActionBounds;
use crate::energy::{self, Energy, EnergyConfig};
use crate::error::{PlannerError, Result};
use crate::normal::NormalStream;
use crate::plan::{Budget, Plan, PlanOutput};
use crate::planner::Planner;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use zplan_models::{Rollout, WorldModel};

/// One planning problem: model, start and goal latents on the model's device.
pub(crate) struct Problem<'a> {
    pub model: &'a dyn WorldModel,
    pub z0: Tensor,
    pub goal: Tensor,
    pub latent: Vec<i64>,
    pub device: Device,
    pub horizon: usize,
    pub action_dim: usize,
    /// The goal latent flattened on the host (CPU models: energies are scored on the host).
    goal_host: Option<Vec<f32>>,
}

impl<'a> Problem<'a> {
    /// Checks shapes and moves `z0`/`z_goal` to the model's device (no-ops when already there).
    pub fn new(
        model: &'a dyn WorldModel,
        z0: &Tensor,
        z_goal: &Tensor,
        horizon: usize,
        bounds: &ActionBounds,
    ) -> Result<Self> {
        let zs = z0.size();
        if zs.len() < 2 || zs[0] != 1 {
            return Err(PlannerError::Shape(format!(
                "z0 must be [1, *latent], got {zs:?}"
            )));
        }
        if z_goal.size() != zs {
            return Err(PlannerError::Shape(format!(
                "z_goal {:?} must have z0's shape {zs:?}",
                z_goal.size()
            )));
        }
        if model.action_dim() != bounds.dim() as i64 {
            return Err(PlannerError::Shape(format!(
                "model `{}` takes {} action entries but the bounds have {}",
                model.name(),
                model.action_dim(),
                bounds.dim()
            )));
        }
        let device = model.device();
        let prep = |t: &Tensor| -> Result<Tensor> {
            Ok(t.f_detach()?.f_to_kind(Kind::Float)?.f_to_device(device)?)
        };
        let goal = prep(z_goal)?;
        let goal_host = if device == Device::Cpu {
            Some(download(&goal)?)
        } else {
            None
        };
        Ok(Self {
            model,
            z0: prep(z0)?,
            goal,
            goal_host,
            latent: zs[1..].to_vec(),
            device,
            horizon,
            action_dim: bounds.dim(),
        })
    }

    /// `z0` viewed as `s` rows (stride 0, no copy).
    pub fn z0_batch(&self, s: usize) -> Result<Tensor> {
        let mut shape = Vec::with_capacity(self.latent.len() + 1);
        shape.push(s as i64);
        shape.extend_from_slice(&self.latent);
        Ok(self.z0.f_expand(shape.as_slice(), false)?)
    }

    /// Values in `s` row-major sequences of this problem's shape.
    fn len(&self, s: usize) -> usize {
        s * self.horizon * self.action_dim
    }

    /// Uploads `s` row-major action sequences as `[s, H, A]` on the model's device.
    pub fn upload(&self, actions: &[f32], s: usize) -> Result<Tensor> {
        let values = actions.get(..self.len(s)).ok_or_else(|| {
            PlannerError::Shape(format!(
                "{} values cannot be {s} sequences of {} × {}",
                actions.len(),
                self.horizon,
                self.action_dim
            ))
        })?;
        let t = Tensor::f_from_slice(values)?.f_view([
            s as i64,
            self.horizon as i64,
            self.action_dim as i64,
        ])?;
        Ok(if self.device == Device::Cpu {
            t
        } else {
            t.f_to_device(self.device)?
        })
    }

    /// Energies of `s` candidates (`actions`: `s·H·A` denormalised values): one upload, one
    /// batched rollout, then on an accelerator one batched energy and one `[s]` download; on
    /// CPU the energies are scored on the host ([`Energy::compute_host`]), which saves the
    /// energy kernels' dispatch: straight from the rollout's memory when the model vouches
    /// that nothing else holds it ([`Rollout::host_f32`]), else from a copy in `pred_buf`.
    pub fn evaluate(
        &self,
        energy: &Energy,
        actions: &[f32],
        s: usize,
        pred_buf: &mut Vec<f32>,
    ) -> Result<Vec<f32>> {
        let _guard = tch::no_grad_guard();
        let act = self.upload(actions, s)?;
        let pred: Rollout = self.model.rollout_owned(&self.z0_batch(s)?, &act)?;
        let (Some(goal), true) = (&self.goal_host, pred.device() == Device::Cpu) else {
            let e = energy.compute(&pred.into_tensor(), &self.goal, &act)?;
            return download(&e);
        };
        energy::check_shapes(&pred.size(), &self.goal.size(), &act.size())?;
        let values = match pred.host_f32() {
            Some(values) => values,
            None => {
                pred.copy_f32_into(pred_buf)?;
                pred_buf.as_slice()
            }
        };
        let mut out = Vec::with_capacity(s);
        energy.compute_host(
            values,
            goal,
            actions.get(..self.len(s)).unwrap_or_default(),
            s,
            self.horizon,
            &mut out,
        )?;
        Ok(out)
    }
}

/// Copies a 1-D tensor to a host vector (the one synchronising read per iteration).
pub(crate) fn download(t: &Tensor) -> Result<Vec<f32>> {
    let t = t.f_to_kind(Kind::Float)?;
    let t = if t.device() == Device::Cpu {
        t
    } else {
        t.f_to_device(Device::Cpu)?
    };
    Ok(Vec::<f32>::try_from(&t.f_reshape([-1])?)?)
}

/// `n` zeros, or an error instead of an allocation failure (which would abort the process).
pub(crate) fn zeros(n: usize, what: &str) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| PlannerError::InvalidConfig {
            field: what.into(),
            message: format!("{n} values do not fit in memory"),
        })?;
    v.resize(n, 0.0);
    Ok(v)
}

/// `horizon · bounds.dim()`, the values of one sequence, or an error if that overflows.
pub(crate) fn sequence_len(horizon: usize, bounds: &ActionBounds) -> Result<usize> {
    horizon
        .checked_mul(bounds.dim())
        .ok_or_else(|| PlannerError::InvalidConfig {
            field: "horizon".into(),
            message: format!(
                "{horizon} actions of {} entries overflow the address space",
                bounds.dim()
            ),
        })
}

/// A normalised warm start handed to [`Strategy::begin`].
pub(crate) struct Warm {
    /// `H·A` values in `[-1, 1]`, resized to the planner's horizon.
    pub u: Vec<f32>,
    /// Steps the plan was shifted by since a planner produced it ([`Plan::shift`]).
    pub shift: usize,
}

/// Normalises a warm start (resized to `horizon`) into `u` space.
pub(crate) fn normalised_warm_start(
    bounds: &ActionBounds,
    warm: &Plan,
    horizon: usize,
) -> Result<Warm> {
    if warm.action_dim() != bounds.dim() {
        return Err(PlannerError::Shape(format!(
            "warm start has {} action entries, the bounds {}",
            warm.action_dim(),
            bounds.dim()
        )));
    }
    let shift = warm.shift();
    let warm = warm.resized(horizon)?;
    Ok(Warm {
        u: normalise(bounds, warm.actions()),
        shift,
    })
}

/// Row-major actions (whole actions of `bounds.dim()` entries) in `u` space.
pub(crate) fn normalise(bounds: &ActionBounds, actions: &[f32]) -> Vec<f32> {
    let a = bounds.dim();
    actions
        .iter()
        .enumerate()
        .map(|(j, &x)| bounds.normalise(j % a, x))
        .collect()
}

/// The best candidate evaluated so far in a plan (normalised) and its energy.
pub(crate) struct Best {
    pub u: Vec<f32>,
    pub energy: f32,
}

/// Reused host buffers of a planner.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The candidates of the current iteration, normalised (`population·H·A`).
    pub u: Vec<f32>,
    /// The same, denormalised: what the model rolls out.
    pub actions: Vec<f32>,
    /// A host copy of a rollout that the model shares ([`Rollout::shared`]).
    pub pred: Vec<f32>,
}

/// What one iteration of a [`Strategy`] works with.
pub(crate) struct Ctx<'a, 'm> {
    pub problem: &'a Problem<'m>,
    pub energy: &'a Energy,
    pub bounds: &'a ActionBounds,
    /// The planner's random stream (seeded, rewound by `reset`).
    pub rng: &'a mut NormalStream,
    pub scratch: &'a mut Scratch,
    /// Best so far; a strategy offers each iteration's best candidate to it.
    pub best: Best,
}

impl Ctx<'_, '_> {
    /// Denormalises the `s` candidates in `scratch.u` and returns their energies.
    pub fn evaluate_u(&mut self, s: usize) -> Result<Vec<f32>> {
        to_actions(self.bounds, &self.scratch.u, &mut self.scratch.actions);
        self.problem.evaluate(
            self.energy,
            &self.scratch.actions,
            s,
            &mut self.scratch.pred,
        )
    }
}

/// One planning algorithm inside a [`SamplingPlanner`]. The planner does the rest: checking
/// and moving the inputs, preparing the energy, normalising the warm start, the random
/// stream and its seed, the anytime loop under a [`Budget`], the fallback when no iteration
/// fits, and the returned [`PlanOutput`].
///
/// Required: every method except the defaulted [`Strategy::return_mean`],
/// [`Strategy::check_model`], [`Strategy::max_iterations`] and [`Strategy::end`].
pub(crate) trait Strategy: Send + Sized {
    /// The validated settings.
    type Config: Clone;
    /// Short identity (`"cem"`), as [`Planner::name`].
    const NAME: &'static str;
    /// A strategy for validated `config` and `bounds`; `seed` seeds any stream of its own.
    fn new(config: Self::Config, bounds: &ActionBounds, seed: u64) -> Result<Self>;
    /// The settings.
    fn config(&self) -> &Self::Config;
    /// Planned actions.
    fn horizon(&self) -> usize;
    /// Configured iterations per plan.
    fn iterations(&self) -> u32;
    /// Iterations of one plan under `budget` (default: the budget's cap, else the configured
    /// count).
    fn max_iterations(&self, budget: &Budget) -> u32 {
        budget.max_iterations(self.iterations())
    }
    /// Whether the plan is the final [`Strategy::mean`] rather than the best candidate.
    fn return_mean(&self) -> bool {
        false
    }
    /// Refuses a model the strategy cannot use (default: any model will do).
    fn check_model(&self, _model: &dyn WorldModel) -> Result<()> {
        Ok(())
    }
    /// Starts a plan from a normalised warm start, or cold.
    fn begin(&mut self, warm: Option<Warm>) -> Result<()>;
    /// Candidates evaluated in iteration `i` (the rollouts it costs, and the scale of its
    /// predicted duration).
    fn population(&self, i: u32) -> usize;
    /// Iteration `i`: evaluate `population(i)` candidates through `ctx`, offer the best to
    /// `ctx.best`, refit.
    fn iterate(&mut self, i: u32, ctx: &mut Ctx<'_, '_>) -> Result<()>;
    /// The current centre of the search, normalised `H·A` (the cold fallback plan and the
    /// plan of [`Strategy::return_mean`] strategies).
    fn mean(&self) -> &[f32];
    /// After the last iteration of a plan that ran at least one: a strategy that kept its
    /// state off the host (CEM's device backend) brings back its mean, the best candidate
    /// (into `ctx.best`) and the best energy after each iteration (into `trace`).
    fn finish(&mut self, _ctx: &mut Ctx<'_, '_>, _trace: &mut [f32]) -> Result<()> {
        Ok(())
    }
    /// After a successful plan, with its best candidate (MPPI keeps its solution).
    fn end(&mut self, _best_u: &[f32]) {}
    /// Forgets warm state; `seed` reseeds any stream of the strategy's own.
    fn reset(&mut self, seed: u64);
}

/// A population-based strategy: sample around a distribution, refit it to ranked candidates.
/// [`sampling_round`] turns it into one iteration.
pub(crate) trait Sampler {
    /// Candidates in iteration `i`.
    fn population(&self, i: u32) -> usize;
    /// Writes the normalised candidates of iteration `i` into `out` (`population(i)·H·A`).
    fn sample(&mut self, i: u32, rng: &mut NormalStream, out: &mut Vec<f32>);
    /// Refits the sampling distribution from the evaluated candidates. `order` is best first
    /// and its first `finite` entries have finite energies (`finite >= 1`).
    fn refit(&mut self, i: u32, u: &[f32], energies: &[f32], order: &[usize], finite: usize);
}

/// One iteration of a [`Sampler`]: sample (from `rng`, or the planner's stream when `None`),
/// evaluate in one batched rollout, rank, offer the best, refit.
pub(crate) fn sampling_round(
    sampler: &mut impl Sampler,
    rng: Option<&mut NormalStream>,
    i: u32,
    ctx: &mut Ctx<'_, '_>,
) -> Result<()> {
    let pop = sampler.population(i);
    let ha = ctx.problem.len(1);
    sampler.sample(i, rng.unwrap_or(&mut *ctx.rng), &mut ctx.scratch.u);
    debug_assert_eq!(ctx.scratch.u.len(), pop * ha);
    let energies = ctx.evaluate_u(pop)?;
    let (order, finite) = rank(&energies);
    let top = match order.first() {
        Some(&top) if finite > 0 => top,
        _ => {
            return Err(PlannerError::AllNonFinite {
                candidates: pop,
                iteration: i,
            })
        }
    };
    let e = energies.get(top).copied().unwrap_or(f32::INFINITY);
    if e < ctx.best.energy {
        if let Some(row) = ctx.scratch.u.get(top * ha..(top + 1) * ha) {
            ctx.best.energy = e;
            ctx.best.u.clear();
            ctx.best.u.extend_from_slice(row);
        }
    }
    sampler.refit(i, &ctx.scratch.u, &energies, &order, finite);
    Ok(())
}

/// The anytime loop: deadline checks with per-iteration time prediction, one
/// [`Strategy::iterate`] per iteration, best-so-far tracking. If no iteration fits the
/// budget, the current mean is evaluated alone (the cheap valid result).
pub(crate) fn drive<S: Strategy>(
    strategy: &mut S,
    ctx: &mut Ctx<'_, '_>,
    budget: &Budget,
) -> Result<PlanOutput> {
    let max_iterations = strategy.max_iterations(budget);
    ctx.best = Best {
        u: strategy.mean().to_vec(),
        energy: f32::INFINITY,
    };
    // The trace grows one entry per iteration; a huge configured count is not reserved.
    let mut trace = Vec::with_capacity(max_iterations.min(1024) as usize);
    let mut rollouts = 0u64;
    let mut hit_deadline = false;
    let mut last: Option<(Duration, usize)> = None;
    for i in 0..max_iterations {
        let pop = strategy.population(i);
        if budget.deadline.is_some() {
            let overrun = match last {
                Some((d, p)) => budget.would_overrun(d.mul_f64(pop as f64 / p.max(1) as f64)),
                None => budget.expired(),
            };
            if overrun {
                hit_deadline = true;
                break;
            }
        }
        let started = Instant::now();
        strategy.iterate(i, ctx)?;
        rollouts += pop as u64;
        trace.push(ctx.best.energy);
        last = Some((started.elapsed(), pop));
    }
    if !trace.is_empty() {
        strategy.finish(ctx, &mut trace)?;
    }
    if trace.is_empty() {
        // Nothing fitted the budget: the cheap valid result is the current mean, scored once.
        ctx.best.u.clear();
        ctx.best.u.extend_from_slice(strategy.mean());
        to_actions(ctx.bounds, &ctx.best.u, &mut ctx.scratch.actions);
        let e = ctx
            .problem
            .evaluate(ctx.energy, &ctx.scratch.actions, 1, &mut ctx.scratch.pred)?;
        rollouts += 1;
        match e.first() {
            Some(&e) if e.is_finite() => ctx.best.energy = e,
            _ => {
                return Err(PlannerError::AllNonFinite {
                    candidates: 1,
                    iteration: 0,
                })
            }
        }
    }
    let chosen = if strategy.return_mean() && !trace.is_empty() {
        strategy.mean()
    } else {
        &ctx.best.u
    };
    let mut plan_actions = Vec::with_capacity(chosen.len());
    to_actions(ctx.bounds, chosen, &mut plan_actions);
    let output = PlanOutput {
        plan: Plan::new(plan_actions, ctx.problem.horizon, ctx.problem.action_dim)?,
        best_energy: ctx.best.energy,
        iterations: trace.len() as u32,
        energy_trace: trace,
        rollouts,
        hit_deadline,
    };
    strategy.end(&ctx.best.u);
    Ok(output)
}

/// The settings of one planner: what [`crate::PlannerConfig`] dispatches to. Implemented by
/// each planner's config ([`crate::CemConfig`], ...); see "Adding a planner" in the crate docs.
pub(crate) trait Settings: Clone {
    /// The algorithm these settings configure.
    type Strategy: Strategy<Config = Self>;
    /// Range checks naming the field; NaN fails.
    fn validate(&self) -> Result<()>;
    /// Planned actions.
    fn horizon(&self) -> usize;
    /// Candidates per iteration (the largest population).
    fn samples(&self) -> usize;
    /// Configured iterations.
    fn iterations(&self) -> u32;
    /// Peak memory of one candidate-step relative to a sampling planner's (gradient planners
    /// keep activations for the backward pass).
    fn memory_factor(&self) -> u64 {
        1
    }
    /// Bytes the planner holds whatever the population (iCEM's noise matrix).
    fn fixed_memory(&self) -> u64 {
        0
    }
}

/// Any planner of this crate: a [`Strategy`] with the state every planner shares. The public
/// planners ([`crate::Cem`], [`crate::ICem`], [`crate::Mppi`], [`crate::Gradient`]) are thin
/// wrappers around it, generated by the registry in `planner.rs`.
pub(crate) struct SamplingPlanner<S> {
    pub strategy: S,
    bounds: ActionBounds,
    energy: Energy,
    seed: u64,
    rng: NormalStream,
    scratch: Scratch,
}

impl<S: Strategy> SamplingPlanner<S>
where
    S::Config: Settings<Strategy = S>,
{
    /// Validates everything, then builds the strategy; `seed` fixes the random stream.
    pub fn new(
        config: S::Config,
        bounds: ActionBounds,
        energy: EnergyConfig,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        bounds.validate()?;
        let energy = Energy::new(energy)?;
        Ok(Self {
            strategy: S::new(config, &bounds, seed)?,
            bounds,
            energy,
            seed,
            rng: NormalStream::new(seed),
            scratch: Scratch::default(),
        })
    }
}

impl<S: Strategy> Planner for SamplingPlanner<S> {
    fn name(&self) -> &str {
        S::NAME
    }

    fn horizon(&self) -> usize {
        self.strategy.horizon()
    }

    fn bounds(&self) -> &ActionBounds {
        &self.bounds
    }

    /// The preamble every planner shares, then [`drive`].
    fn plan(
        &mut self,
        model: &dyn WorldModel,
        z0: &Tensor,
        z_goal: &Tensor,
        warm_start: Option<&Plan>,
        budget: &Budget,
    ) -> Result<PlanOutput> {
        self.strategy.check_model(model)?;
        let horizon = self.strategy.horizon();
        let problem = Problem::new(model, z0, z_goal, horizon, &self.bounds)?;
        self.energy.prepare(model, problem.device)?;
        let warm = warm_start
            .map(|w| normalised_warm_start(&self.bounds, w, horizon))
            .transpose()?;
        self.strategy.begin(warm)?;
        let mut ctx = Ctx {
            problem: &problem,
            energy: &self.energy,
            bounds: &self.bounds,
            rng: &mut self.rng,
            scratch: &mut self.scratch,
            best: Best {
                u: Vec::new(),
                energy: f32::INFINITY,
            },
        };
        drive(&mut self.strategy, &mut ctx, budget)
    }

    fn reset(&mut self) {
        self.rng = NormalStream::new(self.seed);
        self.strategy.reset(self.seed);
    }

    fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        self.reset();
    }
}

/// The Gaussian search distribution of CEM, iCEM and MPPI: per-entry mean and standard
/// deviation in normalised units, the deviation kept within `[min_std, max_std]` at all
/// times (also right after construction and reset).
pub(crate) struct Gaussian {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    init_std: f32,
    pub min_std: f32,
    pub max_std: f32,
}

impl Gaussian {
    /// `ha` entries, mean 0, std `init_std` clipped to `[min_std, max_std]` (validated,
    /// `min_std <= max_std`).
    pub fn new(ha: usize, init_std: f32, min_std: f32, max_std: f32) -> Result<Self> {
        let mut g = Self {
            mean: zeros(ha, "horizon")?,
            std: zeros(ha, "horizon")?,
            init_std,
            min_std,
            max_std,
        };
        let s = g.start_std();
        g.std.fill(s);
        Ok(g)
    }

    /// The standard deviation every plan starts from.
    fn start_std(&self) -> f32 {
        clip(self.init_std, self.min_std, self.max_std)
    }

    /// Starts a plan at `mean` (`None`: the centre), with the initial deviation.
    pub fn begin(&mut self, mean: Option<Vec<f32>>) {
        let ha = self.std.len();
        self.mean = mean.unwrap_or_else(|| vec![0.0; ha]);
        self.std = vec![self.start_std(); ha];
    }

    /// Back to the state after construction.
    pub fn reset(&mut self) {
        self.begin(None);
    }

    /// `new = momentum · old + (1 − momentum) · fit`, the mean clipped to `[-1, 1]` and the
    /// deviation to `[min_std, max_std]` (CEM and iCEM).
    pub fn blend(&mut self, fit_mean: &[f32], fit_std: &[f32], momentum: f32) {
        let m = momentum;
        for (x, f) in self.mean.iter_mut().zip(fit_mean) {
            *x = (m * *x + (1.0 - m) * f).clamp(-1.0, 1.0);
        }
        for (s, f) in self.std.iter_mut().zip(fit_std) {
            *s = clip(m * *s + (1.0 - m) * f, self.min_std, self.max_std);
        }
    }
}

/// Indices sorted by energy, best first; NaN and ±Inf rank last (ties by index, so the order
/// is deterministic). Returns the order and how many energies are finite.
///
/// Each energy becomes one `u64` key, its order-preserving bits above its index, so one
/// unstable integer sort gives the stable order (3× faster than comparing through indices).
pub(crate) fn rank(energies: &[f32]) -> (Vec<usize>, usize) {
    debug_assert!(
        energies.len() <= u32::MAX as usize,
        "indices are packed into 32 bits"
    );
    let mut keys: Vec<u64> = energies
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            let bits = if e.is_finite() { e } else { f32::INFINITY }.to_bits();
            // The order of `f32::total_cmp`: negatives reversed below the positives.
            let ordered = if bits >> 31 == 1 {
                !bits
            } else {
                bits | 0x8000_0000
            };
            (u64::from(ordered) << 32) | i as u64
        })
        .collect();
    keys.sort_unstable();
    let order = keys.iter().map(|k| (k & 0xffff_ffff) as usize).collect();
    let finite = energies.iter().filter(|e| e.is_finite()).count();
    (order, finite)
}

/// `v.clamp(lo, hi)` without `clamp`'s check of the bounds, so that loops over it vectorise
/// (≈3× faster for the planners' clipping passes). The same value as `f32::clamp` for every
/// `v` (NaN stays NaN) when `lo <= hi`.
#[inline(always)]
pub(crate) fn clip(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

/// Denormalises `u` (row-major `[.., A]`) into `out`: [`ActionBounds::denormalise`] per entry,
/// bit for bit, over tiles of 8 actions with the per-entry constants laid out alongside, a
/// loop the compiler vectorises.
pub(crate) fn to_actions(bounds: &ActionBounds, u: &[f32], out: &mut Vec<f32>) {
    const ROWS: usize = 8;
    let a = bounds.dim();
    out.clear();
    if a == 0 {
        return;
    }
    debug_assert_eq!(u.len() % a, 0, "u holds whole actions");
    let tile = ROWS * a;
    let per_entry =
        |f: &dyn Fn(usize) -> f32| -> Vec<f32> { (0..tile).map(|j| f(j % a)).collect() };
    let centre = per_entry(&|i| bounds.centre_at(i));
    let half = per_entry(&|i| bounds.half_range_at(i));
    let low = per_entry(&|i| bounds.low()[i]);
    let high = per_entry(&|i| bounds.high()[i]);
    out.resize(u.len(), 0.0);
    let body = u.len() / tile * tile;
    for (o, x) in out[..body]
        .chunks_exact_mut(tile)
        .zip(u[..body].chunks_exact(tile))
    {
        for (j, (o, &x)) in o.iter_mut().zip(x).enumerate() {
            *o = clip(centre[j] + half[j] * x, low[j], high[j]);
        }
    }
    for (j, (o, &x)) in out[body..].iter_mut().zip(&u[body..]).enumerate() {
        *o = bounds.denormalise(j % a, x);
    }
}

/// Drops the first `k` steps of a normalised sequence and repeats its last step.
pub(crate) fn shift_u(u: &mut [f32], k: usize, action_dim: usize) {
    let h = u.len() / action_dim;
    if k == 0 || h == 0 {
        return;
    }
    let k = k.min(h - 1);
    u.copy_within(k * action_dim.., 0);
    let last = (h - 1 - k) * action_dim;
    for t in h - k..h {
        u.copy_within(last..last + action_dim, t * action_dim);
    }
}

/// Gaussian sampling around `mean` with per-entry `std`, clipped to `[-1, 1]`; writes `count`
/// sequences, the first being the mean itself when `include_mean`.
///
/// Two passes: the standard normals in stream order, then `mean + std · n` clipped in a loop
/// the compiler vectorises ([`clip`]; `clamp` in the same loop as the draws branched and
/// mispredicted about once per clipped entry).
pub(crate) fn sample_gaussian(
    rng: &mut NormalStream,
    mean: &[f32],
    std: &[f32],
    count: usize,
    include_mean: bool,
    out: &mut Vec<f32>,
) {
    let ha = mean.len();
    out.clear();
    out.resize(count * ha, 0.0);
    let start = if include_mean && count > 0 {
        out[..ha].copy_from_slice(mean);
        ha
    } else {
        0
    };
    let noise = &mut out[start..];
    rng.fill(noise);
    for row in noise.chunks_exact_mut(ha.max(1)) {
        for ((x, m), s) in row.iter_mut().zip(mean).zip(std) {
            *x = clip(m + s * *x, -1.0, 1.0);
        }
    }
}

/// Mean and standard deviation (unbiased when `k > 1`) of the first `k` ranked candidates.
pub(crate) fn elite_stats(
    u: &[f32],
    order: &[usize],
    k: usize,
    ha: usize,
    mean: &mut [f32],
    std: &mut [f32],
) {
    mean.fill(0.0);
    for &i in &order[..k] {
        for (m, x) in mean.iter_mut().zip(&u[i * ha..(i + 1) * ha]) {
            *m += x;
        }
    }
    let inv = 1.0 / k as f32;
    mean.iter_mut().for_each(|m| *m *= inv);
    std.fill(0.0);
    for &i in &order[..k] {
        for ((s, m), x) in std
            .iter_mut()
            .zip(mean.iter())
            .zip(&u[i * ha..(i + 1) * ha])
        {
            let d = x - m;
            *s += d * d;
        }
    }
    let denom = if k > 1 { (k - 1) as f32 } else { 1.0 };
    std.iter_mut().for_each(|s| *s = (*s / denom).sqrt());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn energy() -> impl proptest::strategy::Strategy<Value = f32> {
        prop_oneof![
            8 => -10.0f32..10.0,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
            1 => Just(0.5f32),
        ]
    }

    proptest! {
        /// The two-pass sampler draws exactly what one `clamp(mean + std · n)` per entry in
        /// stream order draws: seeded plans are unchanged by the rewrite.
        #[test]
        fn sample_gaussian_matches_the_one_pass_definition(
            ha in 1usize..12,
            count in 0usize..20,
            include_mean in any::<bool>(),
            seed in any::<u64>(),
            spread in 0.05f32..3.0,
        ) {
            let mean: Vec<f32> = (0..ha).map(|j| ((j * 37 % 11) as f32 / 5.0 - 1.0).clamp(-1.0, 1.0)).collect();
            let std: Vec<f32> = (0..ha).map(|j| spread * (1.0 + j as f32 / 7.0)).collect();
            let mut rng = NormalStream::new(seed);
            let mut got = vec![9.0];
            sample_gaussian(&mut rng, &mean, &std, count, include_mean, &mut got);
            let mut rng = NormalStream::new(seed);
            let mut want = Vec::new();
            for c in 0..count {
                for (m, s) in mean.iter().zip(&std) {
                    want.push(if c == 0 && include_mean {
                        *m
                    } else {
                        let n = rng.next_normal();
                        (m + s * n).clamp(-1.0, 1.0)
                    });
                }
            }
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(g.to_bits(), w.to_bits());
            }
        }

        /// Best first, non-finite last, ties by index: the same order as a stable sort on the
        /// finite-or-infinity key.
        #[test]
        fn rank_is_the_stable_order_with_non_finite_last(e in prop::collection::vec(energy(), 0..200)) {
            let key = |x: f32| if x.is_finite() { x } else { f32::INFINITY };
            let mut expected: Vec<usize> = (0..e.len()).collect();
            expected.sort_by(|&a, &b| key(e[a]).total_cmp(&key(e[b])));
            let (order, finite) = rank(&e);
            prop_assert_eq!(order, expected);
            prop_assert_eq!(finite, e.iter().filter(|x| x.is_finite()).count());
        }

        /// `to_actions` is `ActionBounds::denormalise` entry by entry, bit for bit.
        #[test]
        fn to_actions_matches_denormalise(
            rows in 0usize..20,
            low in prop::collection::vec(-3.0f32..0.0, 1..4),
            seed in any::<u64>(),
        ) {
            let a = low.len();
            let high: Vec<f32> = low.iter().map(|l| l + 0.5 + (seed % 7) as f32).collect();
            let bounds = ActionBounds::new(low, high).unwrap();
            let u: Vec<f32> = (0..rows * a)
                .map(|j| ((j as u64 * 2654435761 + seed) % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let mut out = vec![7.0];
            to_actions(&bounds, &u, &mut out);
            let expected: Vec<f32> = u.iter().enumerate().map(|(j, &x)| bounds.denormalise(j % a, x)).collect();
            prop_assert_eq!(out.len(), expected.len());
            for (x, y) in out.iter().zip(&expected) {
                prop_assert_eq!(x.to_bits(), y.to_bits());
            }
        }
    }
}
