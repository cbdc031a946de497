//! Improved CEM (Pinneri et al., 2020): colored noise, kept elites, population decay.

use crate::bounds::ActionBounds;
use crate::cem::ReturnMode;
use crate::energy::{Energy, EnergyConfig};
use crate::error::{Check, Result};
use crate::noise::ColoredNoise;
use crate::plan::{Budget, Plan, PlanOutput};
use crate::planner::Planner;
use crate::sampling::{self, Problem, Sampler};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;
use zplan_models::WorldModel;

/// iCEM settings (defaults from the paper and the design table: 300 samples, 10 elites,
/// 3 iterations, horizon 30, β = 2, 30 % of elites kept, population decay 1.25, execute the
/// best).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ICemConfig {
    /// Candidates in the first iteration.
    pub samples: usize,
    /// Lowest-energy candidates refitted to.
    pub elites: usize,
    /// Iterations per plan.
    pub iterations: u32,
    /// Planned actions.
    pub horizon: usize,
    /// Noise exponent β along the horizon (0 white, 1 pink, 2 brown).
    pub beta: f32,
    /// Fraction of the elites carried into the next iteration and, shifted, into the next plan.
    pub keep_elites: f32,
    /// Population decay γ: iteration `i` samples `max(samples · γ^-i, min(2 · elites, samples))`.
    pub decay: f32,
    /// Standard deviation at the start of every plan (half-range units).
    pub init_std: f32,
    /// Floor of the standard deviation.
    pub min_std: f32,
    /// Ceiling of the standard deviation.
    pub max_std: f32,
    /// Smoothing of mean and std (iCEM's α).
    pub momentum: f32,
    /// Evaluate the current mean as a candidate in every iteration.
    pub include_mean: bool,
    /// iCEM executes the best candidate.
    pub return_mode: ReturnMode,
}

impl Default for ICemConfig {
    fn default() -> Self {
        Self {
            samples: 300,
            elites: 10,
            iterations: 3,
            horizon: 30,
            beta: 2.0,
            keep_elites: 0.3,
            decay: 1.25,
            init_std: 0.5,
            min_std: 0.05,
            max_std: 2.0,
            momentum: 0.1,
            include_mean: true,
            return_mode: ReturnMode::Best,
        }
    }
}

impl ICemConfig {
    /// Range checks naming the field; NaN fails.
    pub fn validate(&self) -> Result<()> {
        let c = Check::new("icem");
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
        c.in_closed("beta", self.beta, 0.0, 8.0)?;
        c.in_closed("keep_elites", self.keep_elites, 0.0, 1.0)?;
        c.in_closed("decay", self.decay, 1.0, 100.0)?;
        c.positive("init_std", self.init_std)?;
        c.positive("min_std", self.min_std)?;
        c.positive("max_std", self.max_std)?;
        c.at_most_field_f32("min_std", self.min_std, "max_std", self.max_std)?;
        c.at_most_field_f32("init_std", self.init_std, "max_std", self.max_std)?;
        c.in_half_open("momentum", self.momentum, 0.0, 1.0)?;
        Ok(())
    }

    /// Candidates in iteration `i`: `max(samples · decay^-i, min(2 · elites, samples))`.
    pub fn population(&self, i: u32) -> usize {
        let decayed = (self.samples as f64 * f64::from(self.decay).powi(-(i as i32))) as usize;
        decayed.max((2 * self.elites).min(self.samples)).max(1)
    }

    fn kept(&self) -> usize {
        ((self.keep_elites * self.elites as f32).round() as usize).min(self.elites)
    }
}

/// iCEM: CEM with temporally correlated noise and elites that survive iterations and replans.
pub struct ICem {
    config: ICemConfig,
    bounds: ActionBounds,
    energy: Energy,
    seed: u64,
    rng: ChaCha8Rng,
    noise: ColoredNoise,
    mean: Vec<f32>,
    std: Vec<f32>,
    /// Elites of the last iteration, best first (normalised, `k·H·A`).
    elites: Vec<f32>,
}

impl ICem {
    /// A validated iCEM planner.
    pub fn new(
        config: ICemConfig,
        bounds: ActionBounds,
        energy: EnergyConfig,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        bounds.validate()?;
        let ha = config.horizon * bounds.dim();
        Ok(Self {
            noise: ColoredNoise::new(config.horizon, config.beta),
            mean: vec![0.0; ha],
            std: vec![config.init_std; ha],
            elites: Vec::new(),
            energy: Energy::new(energy)?,
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            bounds,
            seed,
        })
    }

    /// The config.
    pub fn config(&self) -> &ICemConfig {
        &self.config
    }

    /// Sampling standard deviation after the last plan (half-range units, `H·A`).
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// Number of elites currently kept for the next plan.
    pub fn kept_elites(&self) -> usize {
        let ha = self.mean.len();
        (self.elites.len() / ha.max(1)).min(self.config.kept())
    }
}

struct ICemSampler<'a> {
    cfg: &'a ICemConfig,
    rng: &'a mut ChaCha8Rng,
    noise: &'a ColoredNoise,
    action_dim: usize,
    mean: &'a mut Vec<f32>,
    std: &'a mut Vec<f32>,
    elites: &'a mut Vec<f32>,
    white: Vec<f32>,
    seq: Vec<f32>,
    fit_mean: Vec<f32>,
    fit_std: Vec<f32>,
}

impl Sampler for ICemSampler<'_> {
    fn population(&self, i: u32) -> usize {
        self.cfg.population(i)
    }

    fn sample(&mut self, i: u32, out: &mut Vec<f32>) {
        let pop = self.cfg.population(i);
        let ha = self.mean.len();
        let (h, a) = (self.cfg.horizon, self.action_dim);
        out.clear();
        out.reserve(pop * ha);
        if self.cfg.include_mean {
            out.extend_from_slice(self.mean);
        }
        let kept = self
            .cfg
            .kept()
            .min(self.elites.len() / ha)
            .min(pop - out.len() / ha);
        out.extend_from_slice(&self.elites[..kept * ha]);
        let fresh = pop - out.len() / ha;
        // One colored sequence per (candidate, action entry), in the order the candidates
        // consume them: `seq[(k·A + d)·H + t]`.
        self.noise
            .sample_many(self.rng, fresh * a, &mut self.white, &mut self.seq);
        for k in 0..fresh {
            let base = out.len();
            out.extend_from_slice(self.mean);
            for d in 0..a {
                let seq = &self.seq[(k * a + d) * h..(k * a + d + 1) * h];
                for (t, x) in seq.iter().enumerate() {
                    let j = base + t * a + d;
                    out[j] = sampling::clip(out[j] + self.std[t * a + d] * x, -1.0, 1.0);
                }
            }
        }
    }

    fn refit(&mut self, _i: u32, u: &[f32], _e: &[f32], order: &[usize], finite: usize) {
        let k = self.cfg.elites.min(finite).max(1);
        let ha = self.mean.len();
        sampling::elite_stats(u, order, k, ha, &mut self.fit_mean, &mut self.fit_std);
        let m = self.cfg.momentum;
        for j in 0..ha {
            self.mean[j] = (m * self.mean[j] + (1.0 - m) * self.fit_mean[j]).clamp(-1.0, 1.0);
            self.std[j] = (m * self.std[j] + (1.0 - m) * self.fit_std[j])
                .clamp(self.cfg.min_std, self.cfg.max_std);
        }
        self.elites.clear();
        for &i in &order[..k] {
            self.elites.extend_from_slice(&u[i * ha..(i + 1) * ha]);
        }
    }

    fn mean(&self) -> &[f32] {
        self.mean
    }
}

impl Planner for ICem {
    fn name(&self) -> &str {
        "icem"
    }

    fn horizon(&self) -> usize {
        self.config.horizon
    }

    fn bounds(&self) -> &ActionBounds {
        &self.bounds
    }

    /// With a warm start, the elites kept from the previous plan are shifted by
    /// `warm_start.shift` steps and join the first iteration; without one they are dropped
    /// (nothing says how far the world has moved).
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
        match warm_start {
            Some(w) => {
                self.mean = sampling::normalised_warm_start(&self.bounds, w, self.config.horizon)?;
                let kept = self.config.kept().min(self.elites.len() / ha);
                self.elites.truncate(kept * ha);
                for e in self.elites.chunks_mut(ha) {
                    sampling::shift_u(e, w.shift, a);
                }
            }
            None => {
                self.mean = vec![0.0; ha];
                self.elites.clear();
            }
        }
        self.std = vec![
            self.config
                .init_std
                .clamp(self.config.min_std, self.config.max_std);
            ha
        ];
        let mut sampler = ICemSampler {
            cfg: &self.config,
            rng: &mut self.rng,
            noise: &self.noise,
            action_dim: a,
            mean: &mut self.mean,
            std: &mut self.std,
            elites: &mut self.elites,
            white: Vec::with_capacity(self.config.horizon),
            seq: Vec::with_capacity(self.config.horizon),
            fit_mean: vec![0.0; ha],
            fit_std: vec![0.0; ha],
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
        Ok(driven.output)
    }

    fn reset(&mut self) {
        self.rng = ChaCha8Rng::seed_from_u64(self.seed);
        let ha = self.mean.len();
        self.mean = vec![0.0; ha];
        self.std = vec![self.config.init_std; ha];
        self.elites.clear();
    }

    fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        self.reset();
    }
}
