//! Model predictive path integral control (MPPI), in TD-MPC2's elite-weighted form.

use crate::bounds::ActionBounds;
use crate::cem::ReturnMode;
use crate::energy::{Energy, EnergyConfig};
use crate::error::{Check, Result};
use crate::plan::{Budget, Plan, PlanOutput};
use crate::planner::Planner;
use crate::sampling::{self, Problem, Sampler};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;
use zplan_models::WorldModel;

/// MPPI settings (defaults after TD-MPC2: 512 samples, 64 elites, 6 iterations, temperature
/// 0.5, std in [0.05, 2]). The temperature is in energy units: weights are
/// `exp(-(E - E_min) / temperature)`, so it depends on the energy's scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MppiConfig {
    /// Candidates per iteration.
    pub samples: usize,
    /// Lowest-energy candidates that receive weight (`samples` for classic MPPI).
    pub elites: usize,
    /// Iterations per plan.
    pub iterations: u32,
    /// Planned actions.
    pub horizon: usize,
    /// Temperature λ of the exponential weights (> 0).
    pub temperature: f32,
    /// Noise standard deviation at the start of every plan (half-range units).
    pub noise_std: f32,
    /// Floor of the standard deviation.
    pub min_std: f32,
    /// Ceiling of the standard deviation.
    pub max_std: f32,
    /// Refit the std to the weighted elites (TD-MPC2) instead of keeping `noise_std`.
    pub adapt_std: bool,
    /// Without an explicit warm start, begin from this planner's previous solution advanced by
    /// `shift` steps (0: begin from the bounds' centre).
    pub shift: usize,
    /// Evaluate the current mean as sample 0.
    pub include_mean: bool,
    /// Return the weighted mean (MPPI) or the best candidate.
    pub return_mode: ReturnMode,
}

impl Default for MppiConfig {
    fn default() -> Self {
        Self {
            samples: 512,
            elites: 64,
            iterations: 6,
            horizon: 8,
            temperature: 0.5,
            noise_std: 1.0,
            min_std: 0.05,
            max_std: 2.0,
            adapt_std: true,
            shift: 1,
            include_mean: true,
            return_mode: ReturnMode::Mean,
        }
    }
}

impl MppiConfig {
    /// Range checks naming the field; NaN fails.
    pub fn validate(&self) -> Result<()> {
        let c = Check::new("mppi");
        c.at_least_one("samples", self.samples)?;
        c.at_least_one("elites", self.elites)?;
        c.at_most_field("elites", self.elites, "samples", self.samples)?;
        c.at_least_one("horizon", self.horizon)?;
        c.at_least_one("iterations", self.iterations as usize)?;
        if self.samples < 2 && self.include_mean {
            return c.fail(
                "samples",
                "1 with include_mean: the only candidate would be the mean, so the plan never changes; use samples >= 2",
            );
        }
        c.positive("temperature", self.temperature)?;
        c.positive("noise_std", self.noise_std)?;
        c.positive("min_std", self.min_std)?;
        c.positive("max_std", self.max_std)?;
        c.at_most_field_f32("min_std", self.min_std, "max_std", self.max_std)?;
        Ok(())
    }
}

/// MPPI: exponentially weighted average of sampled sequences.
pub struct Mppi {
    config: MppiConfig,
    bounds: ActionBounds,
    energy: Energy,
    seed: u64,
    rng: ChaCha8Rng,
    mean: Vec<f32>,
    std: Vec<f32>,
    previous: Option<Vec<f32>>,
}

impl Mppi {
    /// A validated MPPI planner.
    pub fn new(
        config: MppiConfig,
        bounds: ActionBounds,
        energy: EnergyConfig,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        bounds.validate()?;
        let ha = config.horizon * bounds.dim();
        Ok(Self {
            mean: vec![0.0; ha],
            std: vec![config.noise_std; ha],
            previous: None,
            energy: Energy::new(energy)?,
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            bounds,
            seed,
        })
    }

    /// The config.
    pub fn config(&self) -> &MppiConfig {
        &self.config
    }

    /// Sampling standard deviation after the last plan (half-range units, `H·A`).
    pub fn std(&self) -> &[f32] {
        &self.std
    }
}

struct MppiSampler<'a> {
    cfg: &'a MppiConfig,
    rng: &'a mut ChaCha8Rng,
    mean: &'a mut Vec<f32>,
    std: &'a mut Vec<f32>,
    weights: Vec<f32>,
}

impl Sampler for MppiSampler<'_> {
    fn population(&self, _i: u32) -> usize {
        self.cfg.samples
    }

    fn sample(&mut self, _i: u32, out: &mut Vec<f32>) {
        sampling::sample_gaussian(
            self.rng,
            self.mean,
            self.std,
            self.cfg.samples,
            self.cfg.include_mean,
            out,
        );
    }

    fn refit(&mut self, _i: u32, u: &[f32], e: &[f32], order: &[usize], finite: usize) {
        let k = self.cfg.elites.min(finite).max(1);
        let ha = self.mean.len();
        let e_min = e[order[0]];
        let inv_t = 1.0 / self.cfg.temperature;
        self.weights.clear();
        self.weights
            .extend(order[..k].iter().map(|&i| (-(e[i] - e_min) * inv_t).exp()));
        let total: f32 = self.weights.iter().sum();
        self.mean.fill(0.0);
        for (&i, w) in order[..k].iter().zip(&self.weights) {
            let w = w / total;
            for (m, x) in self.mean.iter_mut().zip(&u[i * ha..(i + 1) * ha]) {
                *m += w * x;
            }
        }
        if self.cfg.adapt_std {
            self.std.fill(0.0);
            for (&i, w) in order[..k].iter().zip(&self.weights) {
                let w = w / total;
                for ((s, m), x) in self
                    .std
                    .iter_mut()
                    .zip(self.mean.iter())
                    .zip(&u[i * ha..(i + 1) * ha])
                {
                    *s += w * (x - m) * (x - m);
                }
            }
            for s in self.std.iter_mut() {
                *s = s.sqrt().clamp(self.cfg.min_std, self.cfg.max_std);
            }
        }
        for m in self.mean.iter_mut() {
            *m = m.clamp(-1.0, 1.0);
        }
    }

    fn mean(&self) -> &[f32] {
        self.mean
    }
}

impl Planner for Mppi {
    fn name(&self) -> &str {
        "mppi"
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
        let problem = Problem::new(model, z0, z_goal, self.config.horizon, &self.bounds)?;
        self.energy.prepare(model, problem.device)?;
        let a = self.bounds.dim();
        let ha = self.config.horizon * a;
        self.mean = match (warm_start, &self.previous) {
            (Some(w), _) => sampling::normalised_warm_start(&self.bounds, w, self.config.horizon)?,
            (None, Some(prev)) if self.config.shift > 0 => {
                let mut m = prev.clone();
                sampling::shift_u(&mut m, self.config.shift, a);
                m
            }
            _ => vec![0.0; ha],
        };
        let s0 = self
            .config
            .noise_std
            .clamp(self.config.min_std, self.config.max_std);
        self.std = vec![s0; ha];
        let mut sampler = MppiSampler {
            cfg: &self.config,
            rng: &mut self.rng,
            mean: &mut self.mean,
            std: &mut self.std,
            weights: Vec::with_capacity(self.config.elites),
        };
        let driven = sampling::drive(
            &mut sampler,
            &problem,
            &self.energy,
            &self.bounds,
            budget,
            budget.max_iterations(self.config.iterations),
            self.config.return_mode == ReturnMode::Mean,
        )?;
        self.previous = Some(match self.config.return_mode {
            ReturnMode::Mean => self.mean.clone(),
            ReturnMode::Best => driven.best_u,
        });
        Ok(driven.output)
    }

    fn reset(&mut self) {
        self.rng = ChaCha8Rng::seed_from_u64(self.seed);
        let ha = self.mean.len();
        self.mean = vec![0.0; ha];
        self.std = vec![self.config.noise_std; ha];
        self.previous = None;
    }

    fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        self.reset();
    }
}
