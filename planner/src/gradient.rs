//! Gradient descent (Adam) on the action sequence through a differentiable world model,
//! optionally after a few CEM iterations that find its start point. Both phases run in the
//! shared anytime loop ([`sampling::drive`]): the CEM iterations first, then one Adam step
//! per iteration, under one deadline.

use crate::bounds::ActionBounds;
use crate::cem::{CemConfig, CemStrategy};
use crate::error::{Check, PlannerError, Result};
use crate::normal::NormalStream;
use crate::plan::Budget;
use crate::sampling::{self, Ctx, Settings, Strategy, Warm};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};
use zplan_models::WorldModel;

/// Gradient planner settings. The step size is in half-range units per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradientConfig {
    /// Adam steps per plan (a [`Budget`] may cap it).
    pub steps: u32,
    /// Planned actions.
    pub horizon: usize,
    /// Adam learning rate.
    pub lr: f32,
    /// Adam first-moment decay.
    pub beta1: f32,
    /// Adam second-moment decay.
    pub beta2: f32,
    /// Sequences optimised side by side (one batched rollout per step); the first starts at
    /// the warm start (or CEM's result), the others at Gaussian perturbations of it.
    pub samples: usize,
    /// Standard deviation of those perturbations (half-range units).
    pub init_std: f32,
    /// Run this CEM first and start from its best candidate.
    pub init_cem: Option<CemConfig>,
}

impl Default for GradientConfig {
    fn default() -> Self {
        Self {
            steps: 50,
            horizon: 8,
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            samples: 8,
            init_std: 0.3,
            init_cem: None,
        }
    }
}

impl GradientConfig {
    /// Range checks naming the field; NaN fails.
    pub fn validate(&self) -> Result<()> {
        let c = Check::new("gradient");
        c.at_least_one("horizon", self.horizon)?;
        c.at_least_one("samples", self.samples)?;
        c.positive("lr", self.lr)?;
        c.in_half_open("beta1", self.beta1, 0.0, 1.0)?;
        c.in_half_open("beta2", self.beta2, 0.0, 1.0)?;
        c.non_negative("init_std", self.init_std)?;
        if let Some(cem) = &self.init_cem {
            cem.validate().map_err(|e| match e {
                PlannerError::InvalidConfig { field, message } => PlannerError::InvalidConfig {
                    field: format!("gradient.init_{field}"),
                    message,
                },
                e => e,
            })?;
            if cem.horizon != self.horizon {
                return c.fail(
                    "init_cem.horizon",
                    format!("{} must equal horizon ({})", cem.horizon, self.horizon),
                );
            }
        }
        Ok(())
    }
}

impl Settings for GradientConfig {
    type Strategy = GradientStrategy;
    fn validate(&self) -> Result<()> {
        GradientConfig::validate(self)
    }
    fn horizon(&self) -> usize {
        self.horizon
    }
    fn samples(&self) -> usize {
        self.samples
            .max(self.init_cem.as_ref().map_or(0, |c| c.samples))
    }
    /// Adam steps, without the CEM initialisation's iterations.
    fn iterations(&self) -> u32 {
        self.steps
    }
    /// Activations kept for the backward pass.
    fn memory_factor(&self) -> u64 {
        3
    }
}

/// The seed of the CEM initialisation's own stream, derived from the planner's seed (so the
/// Adam start perturbations draw the same numbers with and without `init_cem`).
fn cem_seed(seed: u64) -> u64 {
    seed ^ 0x9e37_79b9_7f4a_7c15
}

/// Adam's state during the gradient phase of one plan, on the model's device.
struct Adam {
    /// The `S` sequences being optimised, normalised `[S, H, A]`.
    u: Tensor,
    m: Tensor,
    v: Tensor,
    /// `z0` expanded to `S` rows.
    z: Tensor,
    /// Denormalisation constants `[1, 1, A]`.
    centre: Tensor,
    half: Tensor,
    /// Steps taken.
    steps: u32,
}

/// The gradient planner's algorithm inside a [`sampling::SamplingPlanner`] (the public
/// planner is [`crate::Gradient`]). Iterations `0..cem.iterations` are CEM's (with its own
/// stream), the rest Adam steps from CEM's best candidate, or from the warm start.
pub(crate) struct GradientStrategy {
    config: GradientConfig,
    bounds: ActionBounds,
    cem: Option<(CemStrategy, NormalStream)>,
    /// The start point without CEM: the warm start or the centre.
    start: Vec<f32>,
    adam: Option<Adam>,
}

impl GradientStrategy {
    /// Iterations of the CEM phase.
    fn cem_iterations(&self) -> u32 {
        self.cem.as_ref().map_or(0, |(c, _)| c.config().iterations)
    }

    /// The start point and Adam's state, at the first gradient step.
    fn start_adam(&self, ctx: &mut Ctx<'_, '_>) -> Result<Adam> {
        let init = match &self.cem {
            // CEM's best candidate, as the actions it plans (denormalised and normalised
            // again, as when CEM ran as a separate planner).
            Some(_) => {
                let mut actions = Vec::new();
                sampling::to_actions(&self.bounds, &ctx.best.u, &mut actions);
                sampling::normalise(&self.bounds, &actions)
            }
            None => self.start.clone(),
        };
        let s = self.config.samples;
        let mut u0 = Vec::with_capacity(s.saturating_mul(init.len()));
        u0.extend_from_slice(&init);
        let mut noise = vec![0.0f32; s.saturating_sub(1) * init.len()];
        ctx.rng.fill(&mut noise);
        for row in noise.chunks_exact(init.len().max(1)) {
            for (&m, &n) in init.iter().zip(row) {
                u0.push((m + self.config.init_std * n).clamp(-1.0, 1.0));
            }
        }
        let problem = ctx.problem;
        let (h, a) = (problem.horizon as i64, problem.action_dim as i64);
        let opts = (Kind::Float, problem.device);
        let constant = |v: Vec<f32>| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(&v)?
                .f_to_device(problem.device)?
                .f_view([1, 1, a])?)
        };
        let half = (0..self.bounds.dim())
            .map(|i| self.bounds.half_range_at(i))
            .collect();
        Ok(Adam {
            u: problem.upload(&u0, s)?,
            m: Tensor::f_zeros([s as i64, h, a], opts)?,
            v: Tensor::f_zeros([s as i64, h, a], opts)?,
            z: problem.z0_batch(s)?,
            centre: constant(self.bounds.centre_action())?,
            half: constant(half)?,
            steps: 0,
        })
    }

    /// One Adam step on all sequences; offers the best evaluated one.
    fn adam_step(&mut self, i: u32, ctx: &mut Ctx<'_, '_>) -> Result<()> {
        if self.adam.is_none() {
            self.adam = Some(self.start_adam(ctx)?);
        }
        let Some(adam) = self.adam.as_mut() else {
            return Err(PlannerError::Shape("gradient: no optimiser state".into()));
        };
        let s = self.config.samples;
        let problem = ctx.problem;
        let energy = ctx.energy;
        let leaf = adam.u.f_detach()?.f_set_requires_grad(true)?;
        let (energies, grad) = tch::with_grad(|| -> Result<(Vec<f32>, Tensor)> {
            let act = leaf.f_mul(&adam.half)?.f_add(&adam.centre)?;
            let pred = problem.model.rollout_grad(&adam.z, &act)?;
            let e = energy.compute(&pred, &problem.goal, &act)?;
            let host = sampling::download(&e.f_detach()?)?;
            if host.iter().any(|x| x.is_finite()) {
                let mask = e.f_isfinite()?.f_detach()?;
                e.f_where_scalarother(&mask, 0.0)?
                    .f_sum(Kind::Float)?
                    .f_backward()?;
            }
            Ok((host, leaf.grad()))
        })?;
        let (order, finite) = sampling::rank(&energies);
        let top = match order.first() {
            Some(&top) if finite > 0 => top,
            _ => {
                return Err(PlannerError::AllNonFinite {
                    candidates: s,
                    iteration: i,
                })
            }
        };
        let e = energies.get(top).copied().unwrap_or(f32::INFINITY);
        if e < ctx.best.energy {
            ctx.best.energy = e;
            ctx.best.u = sampling::download(&adam.u.f_select(0, top as i64)?)?;
        }
        let _guard = tch::no_grad_guard();
        let (b1, b2) = (f64::from(self.config.beta1), f64::from(self.config.beta2));
        let lr = f64::from(self.config.lr);
        let g = grad.f_nan_to_num(0.0, 0.0, 0.0)?;
        adam.steps = adam.steps.saturating_add(1);
        let t = adam.steps.min(i32::MAX as u32) as i32;
        adam.m = adam.m.f_mul_scalar(b1)?.f_add(&g.f_mul_scalar(1.0 - b1)?)?;
        adam.v = adam
            .v
            .f_mul_scalar(b2)?
            .f_add(&g.f_square()?.f_mul_scalar(1.0 - b2)?)?;
        let m_hat = adam.m.f_div_scalar(1.0 - b1.powi(t))?;
        let v_hat = adam.v.f_div_scalar(1.0 - b2.powi(t))?;
        let update = m_hat.f_div(&v_hat.f_sqrt()?.f_add_scalar(1e-8)?)?;
        adam.u = adam
            .u
            .f_sub(&update.f_mul_scalar(lr)?)?
            .f_clamp(-1.0, 1.0)?;
        Ok(())
    }
}

impl Strategy for GradientStrategy {
    type Config = GradientConfig;
    const NAME: &'static str = "gradient";

    fn new(config: GradientConfig, bounds: &ActionBounds, seed: u64) -> Result<Self> {
        let ha = sampling::sequence_len(config.horizon, bounds)?;
        let cem = match &config.init_cem {
            // The gradient starts from CEM's best candidate (whatever its `return_mode`).
            Some(c) => Some((
                CemStrategy::new(c.clone(), bounds, seed)?,
                NormalStream::new(cem_seed(seed)),
            )),
            None => None,
        };
        Ok(Self {
            start: sampling::zeros(ha, "gradient.horizon")?,
            bounds: bounds.clone(),
            cem,
            adam: None,
            config,
        })
    }

    fn config(&self) -> &GradientConfig {
        &self.config
    }

    fn horizon(&self) -> usize {
        self.config.horizon
    }

    fn iterations(&self) -> u32 {
        self.cem_iterations().saturating_add(self.config.steps)
    }

    /// CEM's iterations in full (a deadline may cut them), then the budget's cap on steps.
    fn max_iterations(&self, budget: &Budget) -> u32 {
        self.cem_iterations()
            .saturating_add(budget.max_iterations(self.config.steps))
    }

    fn check_model(&self, model: &dyn WorldModel) -> Result<()> {
        if !model.supports_grad() {
            return Err(zplan_models::ModelError::GradUnsupported(model.name().to_string()).into());
        }
        Ok(())
    }

    fn begin(&mut self, warm: Option<Warm>) -> Result<()> {
        self.adam = None;
        match &mut self.cem {
            Some((cem, _)) => cem.begin(warm),
            None => {
                let ha = self.start.len();
                self.start = warm.map_or_else(|| vec![0.0; ha], |w| w.u);
                Ok(())
            }
        }
    }

    fn population(&self, i: u32) -> usize {
        match &self.cem {
            Some((cem, _)) if i < self.cem_iterations() => Strategy::population(cem, i),
            _ => self.config.samples,
        }
    }

    fn iterate(&mut self, i: u32, ctx: &mut Ctx<'_, '_>) -> Result<()> {
        if i < self.cem_iterations() {
            if let Some((cem, rng)) = &mut self.cem {
                return sampling::sampling_round(cem, Some(rng), i, ctx);
            }
        }
        self.adam_step(i, ctx)
    }

    fn mean(&self) -> &[f32] {
        match &self.cem {
            Some((cem, _)) => Strategy::mean(cem),
            None => &self.start,
        }
    }

    fn reset(&mut self, seed: u64) {
        self.adam = None;
        if let Some((cem, rng)) = &mut self.cem {
            cem.reset(seed);
            *rng = NormalStream::new(cem_seed(seed));
        }
    }
}
