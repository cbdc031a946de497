//! The cross-entropy method.

use crate::bounds::ActionBounds;
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

/// Which sequence a CEM-family planner hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ReturnMode {
    /// The final sampling mean (V-JEPA 2-AC, DINO-WM): smooth, robust to sampling noise.
    #[default]
    Mean,
    /// The lowest-energy candidate evaluated in any iteration.
    Best,
}

/// Cross-entropy method settings. Standard deviations are in units of each action entry's
/// half-range (see [`ActionBounds`]). Defaults follow DINO-WM / PlaNet practice: 300 samples,
/// 30 elites, 10 iterations, the mean included as sample 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CemConfig {
    /// Candidates per iteration (one batched rollout).
    pub samples: usize,
    /// Lowest-energy candidates refitted to.
    pub elites: usize,
    /// Iterations per plan (a [`Budget`] may cap it further).
    pub iterations: u32,
    /// Planned actions.
    pub horizon: usize,
    /// Standard deviation at the start of every plan.
    pub init_std: f32,
    /// Floor of the standard deviation (keeps exploring).
    pub min_std: f32,
    /// Ceiling of the standard deviation.
    pub max_std: f32,
    /// Smoothing of mean and std: `new = momentum * old + (1 - momentum) * elite fit`.
    pub momentum: f32,
    /// Evaluate the current mean as sample 0 of every iteration.
    pub include_mean: bool,
    /// Return the final mean or the best candidate.
    pub return_mode: ReturnMode,
}

impl Default for CemConfig {
    fn default() -> Self {
        Self {
            samples: 300,
            elites: 30,
            iterations: 10,
            horizon: 8,
            init_std: 1.0,
            min_std: 0.05,
            max_std: 2.0,
            momentum: 0.1,
            include_mean: true,
            return_mode: ReturnMode::Mean,
        }
    }
}

impl CemConfig {
    /// Range checks naming the field (`cem.elites: 40 must be <= samples (30)`); NaN fails.
    pub fn validate(&self) -> Result<()> {
        let c = Check::new("cem");
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
        c.positive("init_std", self.init_std)?;
        c.positive("min_std", self.min_std)?;
        c.positive("max_std", self.max_std)?;
        c.at_most_field_f32("min_std", self.min_std, "max_std", self.max_std)?;
        c.at_most_field_f32("init_std", self.init_std, "max_std", self.max_std)?;
        c.in_half_open("momentum", self.momentum, 0.0, 1.0)?;
        Ok(())
    }
}

/// Cross-entropy method: sample around a diagonal Gaussian, refit it to the elites, repeat.
pub struct Cem {
    config: CemConfig,
    bounds: ActionBounds,
    energy: Energy,
    seed: u64,
    rng: ChaCha8Rng,
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Cem {
    /// A validated CEM planner; `seed` fixes its sampling stream.
    pub fn new(
        config: CemConfig,
        bounds: ActionBounds,
        energy: EnergyConfig,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        bounds.validate()?;
        let ha = config.horizon * bounds.dim();
        Ok(Self {
            std: vec![config.init_std; ha],
            mean: vec![0.0; ha],
            energy: Energy::new(energy)?,
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            bounds,
            seed,
        })
    }

    /// The config.
    pub fn config(&self) -> &CemConfig {
        &self.config
    }

    /// Sampling mean after the last plan, normalised to `[-1, 1]` per entry (`H·A`).
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Sampling standard deviation after the last plan, in half-range units (`H·A`); always
    /// within `[min_std, max_std]`.
    pub fn std(&self) -> &[f32] {
        &self.std
    }
}

struct CemSampler<'a> {
    cfg: &'a CemConfig,
    rng: &'a mut ChaCha8Rng,
    mean: &'a mut Vec<f32>,
    std: &'a mut Vec<f32>,
    fit_mean: Vec<f32>,
    fit_std: Vec<f32>,
}

impl Sampler for CemSampler<'_> {
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
    }

    fn mean(&self) -> &[f32] {
        self.mean
    }
}

impl Planner for Cem {
    fn name(&self) -> &str {
        "cem"
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
        let ha = self.config.horizon * self.bounds.dim();
        self.mean = match warm_start {
            Some(w) => sampling::normalised_warm_start(&self.bounds, w, self.config.horizon)?,
            None => vec![0.0; ha],
        };
        self.std = vec![
            self.config
                .init_std
                .clamp(self.config.min_std, self.config.max_std);
            ha
        ];
        let mut sampler = CemSampler {
            cfg: &self.config,
            rng: &mut self.rng,
            mean: &mut self.mean,
            std: &mut self.std,
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
    }

    fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        self.reset();
    }
}
