//! Gradient descent (Adam) on the action sequence through a differentiable world model.

use crate::bounds::ActionBounds;
use crate::cem::{Cem, CemConfig, ReturnMode};
use crate::energy::{Energy, EnergyConfig};
use crate::error::{Check, PlannerError, Result};
use crate::plan::{Budget, Plan, PlanOutput};
use crate::planner::Planner;
use crate::sampling::{self, Problem};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
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

/// Adam on the actions, clamped to the bounds after every step; returns the best sequence
/// evaluated. Needs [`WorldModel::supports_grad`].
pub struct Gradient {
    config: GradientConfig,
    bounds: ActionBounds,
    energy: Energy,
    seed: u64,
    rng: ChaCha8Rng,
    cem: Option<Cem>,
}

impl Gradient {
    /// A validated gradient planner.
    pub fn new(
        config: GradientConfig,
        bounds: ActionBounds,
        energy: EnergyConfig,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        bounds.validate()?;
        let cem = match &config.init_cem {
            Some(c) => {
                // The gradient starts from CEM's best candidate, whose energy CEM reports.
                let c = CemConfig {
                    return_mode: ReturnMode::Best,
                    ..c.clone()
                };
                Some(Cem::new(
                    c,
                    bounds.clone(),
                    energy.clone(),
                    seed ^ 0x9e37_79b9_7f4a_7c15,
                )?)
            }
            None => None,
        };
        Ok(Self {
            energy: Energy::new(energy)?,
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            bounds,
            seed,
            cem,
        })
    }

    /// The config.
    pub fn config(&self) -> &GradientConfig {
        &self.config
    }
}

impl Planner for Gradient {
    fn name(&self) -> &str {
        "gradient"
    }

    fn horizon(&self) -> usize {
        self.config.horizon
    }

    fn bounds(&self) -> &ActionBounds {
        &self.bounds
    }

    fn plan(
        &mut self,
        model: &dyn WorldModel,
        z0: &Tensor,
        z_goal: &Tensor,
        warm_start: Option<&Plan>,
        budget: &Budget,
    ) -> Result<PlanOutput> {
        use rand_distr::{Distribution, StandardNormal};
        if !model.supports_grad() {
            return Err(zplan_models::ModelError::GradUnsupported(model.name().to_string()).into());
        }
        let h = self.config.horizon;
        let a = self.bounds.dim();
        let ha = h * a;
        let problem = Problem::new(model, z0, z_goal, h, &self.bounds)?;
        self.energy.prepare(model, problem.device)?;
        let mut trace = Vec::new();
        let mut rollouts = 0u64;
        let mut best_e = f32::INFINITY;
        let init: Vec<f32> = match &mut self.cem {
            Some(cem) => {
                let out = cem.plan(
                    model,
                    z0,
                    z_goal,
                    warm_start,
                    &Budget {
                        iterations: None,
                        deadline: budget.deadline,
                    },
                )?;
                trace = out.energy_trace;
                rollouts = out.rollouts;
                best_e = out.best_energy;
                sampling::normalised_warm_start(&self.bounds, &out.plan, h)?
            }
            None => match warm_start {
                Some(w) => sampling::normalised_warm_start(&self.bounds, w, h)?,
                None => vec![0.0; ha],
            },
        };
        let s = self.config.samples;
        let mut u0 = Vec::with_capacity(s * ha);
        u0.extend_from_slice(&init);
        for _ in 1..s {
            for &m in &init {
                let n: f32 = StandardNormal.sample(&mut self.rng);
                u0.push((m + self.config.init_std * n).clamp(-1.0, 1.0));
            }
        }
        let opts = (Kind::Float, problem.device);
        let centre = Tensor::f_from_slice(&self.bounds.centre_action())?
            .f_to_device(problem.device)?
            .f_view([1, 1, a as i64])?;
        let half: Vec<f32> = (0..a).map(|i| self.bounds.half_range(i)).collect();
        let half = Tensor::f_from_slice(&half)?
            .f_to_device(problem.device)?
            .f_view([1, 1, a as i64])?;
        let mut u = problem.upload(&u0, s)?;
        let mut m = Tensor::f_zeros([s as i64, h as i64, a as i64], opts)?;
        let mut v = Tensor::f_zeros([s as i64, h as i64, a as i64], opts)?;
        let mut best_u = u.f_select(0, 0)?;
        let z = problem.z0_batch(s)?;
        let steps = budget.max_iterations(self.config.steps);
        let (b1, b2) = (f64::from(self.config.beta1), f64::from(self.config.beta2));
        let lr = f64::from(self.config.lr);
        let mut hit_deadline = false;
        let mut last: Option<Duration> = None;
        let mut done = 0u32;
        for step in 0..steps {
            if budget.deadline.is_some() {
                let overrun = match last {
                    Some(d) => budget.would_overrun(d),
                    None => budget.expired(),
                };
                if overrun {
                    hit_deadline = true;
                    break;
                }
            }
            let started = Instant::now();
            let leaf = u.f_detach()?.f_set_requires_grad(true)?;
            let (energies, grad) = tch::with_grad(|| -> Result<(Vec<f32>, Tensor)> {
                let act = leaf.f_mul(&half)?.f_add(&centre)?;
                let pred = model.rollout_grad(&z, &act)?;
                let e = self.energy.compute(&pred, &problem.goal, &act)?;
                let host = sampling::download(&e.f_detach()?)?;
                if host.iter().any(|x| x.is_finite()) {
                    let mask = e.f_isfinite()?.f_detach()?;
                    e.f_where_scalarother(&mask, 0.0)?
                        .f_sum(Kind::Float)?
                        .f_backward()?;
                }
                Ok((host, leaf.grad()))
            })?;
            rollouts += s as u64;
            let (order, finite) = sampling::rank(&energies);
            if finite == 0 {
                return Err(PlannerError::AllNonFinite {
                    candidates: s,
                    iteration: step,
                });
            }
            if energies[order[0]] < best_e {
                best_e = energies[order[0]];
                best_u = u.f_select(0, order[0] as i64)?;
            }
            trace.push(best_e);
            let _guard = tch::no_grad_guard();
            let g = grad.f_nan_to_num(0.0, 0.0, 0.0)?;
            let t = (step + 1) as i32;
            m = m.f_mul_scalar(b1)?.f_add(&g.f_mul_scalar(1.0 - b1)?)?;
            v = v
                .f_mul_scalar(b2)?
                .f_add(&g.f_square()?.f_mul_scalar(1.0 - b2)?)?;
            let m_hat = m.f_div_scalar(1.0 - b1.powi(t))?;
            let v_hat = v.f_div_scalar(1.0 - b2.powi(t))?;
            let update = m_hat.f_div(&v_hat.f_sqrt()?.f_add_scalar(1e-8)?)?;
            u = u.f_sub(&update.f_mul_scalar(lr)?)?.f_clamp(-1.0, 1.0)?;
            done += 1;
            last = Some(started.elapsed());
        }
        let mut best_host = sampling::download(&best_u.f_reshape([-1])?)?;
        if trace.is_empty() {
            // Nothing fitted the budget: score the starting point once.
            best_host.copy_from_slice(&init);
            let mut actions = Vec::new();
            sampling::to_actions(&self.bounds, &best_host, &mut actions);
            let e = problem.evaluate(&self.energy, &actions, 1)?;
            rollouts += 1;
            if !e[0].is_finite() {
                return Err(PlannerError::AllNonFinite {
                    candidates: 1,
                    iteration: 0,
                });
            }
            best_e = e[0];
        } else if done == 0 {
            // Only CEM ran: its best candidate is the start point.
            best_host.copy_from_slice(&init);
        }
        let mut actions = Vec::with_capacity(ha);
        sampling::to_actions(&self.bounds, &best_host, &mut actions);
        Ok(PlanOutput {
            plan: Plan::new(actions, h, a)?,
            best_energy: best_e,
            iterations: trace.len() as u32,
            energy_trace: trace,
            rollouts,
            hit_deadline,
        })
    }

    fn reset(&mut self) {
        self.rng = ChaCha8Rng::seed_from_u64(self.seed);
        if let Some(c) = &mut self.cem {
            c.reset();
        }
    }

    fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        if let Some(c) = &mut self.cem {
            c.reseed(seed ^ 0x9e37_79b9_7f4a_7c15);
        }
        self.reset();
    }
}
