//! The cross-entropy method: sample around a diagonal Gaussian, refit it to the elites, repeat.

use crate::bounds::ActionBounds;
pub use crate::device_cem::Backend;
use crate::device_cem::{DeviceCemSettings, DevicePlan};
use crate::error::{Check, Result};
use crate::normal::NormalStream;
use crate::sampling::{self, Ctx, Gaussian, Sampler, Settings, Strategy, Warm};
use serde::{Deserialize, Serialize};

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
    /// Iterations per plan (a [`crate::Budget`] may cap it further).
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
    /// Where the population lives: `Host` (the default: sampled on the CPU from the seeded
    /// normal stream, energies read back every iteration) or `Device` (sampled, scored, ranked
    /// and refitted on the model's device with a counter-based generator; one download per
    /// plan; see [`Backend`]). Seeded results differ between the two.
    pub backend: Backend,
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
            backend: Backend::Host,
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

impl Settings for CemConfig {
    type Strategy = CemStrategy;
    fn validate(&self) -> Result<()> {
        CemConfig::validate(self)
    }
    fn horizon(&self) -> usize {
        self.horizon
    }
    fn samples(&self) -> usize {
        self.samples
    }
    fn iterations(&self) -> u32 {
        self.iterations
    }
}

/// CEM's algorithm inside a [`sampling::SamplingPlanner`] (the public planner is
/// [`crate::Cem`]).
pub(crate) struct CemStrategy {
    config: CemConfig,
    pub(crate) gauss: Gaussian,
    fit_mean: Vec<f32>,
    fit_std: Vec<f32>,
    /// Seed of the device backend's counter-based stream.
    seed: u64,
    /// Plans since the last reset (the device stream's plan counter).
    plans: u64,
    /// The population of the plan in progress on the device ([`Backend::Device`]).
    device: Option<DevicePlan>,
}

impl Sampler for CemStrategy {
    fn population(&self, _i: u32) -> usize {
        self.config.samples
    }

    fn sample(&mut self, _i: u32, rng: &mut NormalStream, out: &mut Vec<f32>) {
        sampling::sample_gaussian(
            rng,
            &self.gauss.mean,
            &self.gauss.std,
            self.config.samples,
            self.config.include_mean,
            out,
        );
    }

    fn refit(&mut self, _i: u32, u: &[f32], _e: &[f32], order: &[usize], finite: usize) {
        let k = self.config.elites.min(finite).max(1);
        let ha = self.gauss.mean.len();
        sampling::elite_stats(u, order, k, ha, &mut self.fit_mean, &mut self.fit_std);
        self.gauss
            .blend(&self.fit_mean, &self.fit_std, self.config.momentum);
    }
}

impl Strategy for CemStrategy {
    type Config = CemConfig;
    const NAME: &'static str = "cem";

    fn new(config: CemConfig, bounds: &ActionBounds, seed: u64) -> Result<Self> {
        let ha = sampling::sequence_len(config.horizon, bounds)?;
        Ok(Self {
            gauss: Gaussian::new(ha, config.init_std, config.min_std, config.max_std)?,
            fit_mean: sampling::zeros(ha, "cem.horizon")?,
            fit_std: sampling::zeros(ha, "cem.horizon")?,
            config,
            seed,
            plans: 0,
            device: None,
        })
    }

    fn config(&self) -> &CemConfig {
        &self.config
    }

    fn horizon(&self) -> usize {
        self.config.horizon
    }

    fn iterations(&self) -> u32 {
        self.config.iterations
    }

    fn return_mean(&self) -> bool {
        self.config.return_mode == ReturnMode::Mean
    }

    fn begin(&mut self, warm: Option<Warm>) -> Result<()> {
        self.gauss.begin(warm.map(|w| w.u));
        self.device = None;
        Ok(())
    }

    fn population(&self, i: u32) -> usize {
        Sampler::population(self, i)
    }

    fn iterate(&mut self, i: u32, ctx: &mut Ctx<'_, '_>) -> Result<()> {
        if self.config.backend == Backend::Host {
            return sampling::sampling_round(self, None, i, ctx);
        }
        let plan = match self.device.take() {
            Some(plan) => plan,
            None => DevicePlan::start(&self.gauss.mean, &self.gauss.std, ctx)?,
        };
        let plan = self.device.insert(plan);
        let settings = DeviceCemSettings {
            samples: self.config.samples,
            elites: self.config.elites,
            min_std: self.config.min_std,
            max_std: self.config.max_std,
            momentum: self.config.momentum,
            include_mean: self.config.include_mean,
        };
        plan.iterate(&settings, (self.seed, self.plans, i), ctx)
    }

    fn finish(&mut self, ctx: &mut Ctx<'_, '_>, trace: &mut [f32]) -> Result<()> {
        let Some(plan) = self.device.take() else {
            return Ok(());
        };
        self.plans = self.plans.wrapping_add(1);
        plan.finish(&mut self.gauss.mean, &mut self.gauss.std, trace, ctx)
    }

    fn mean(&self) -> &[f32] {
        &self.gauss.mean
    }

    fn reset(&mut self, seed: u64) {
        self.gauss.reset();
        self.seed = seed;
        self.plans = 0;
        self.device = None;
    }
}

impl crate::Cem {
    /// Sampling mean after the last plan, normalised to `[-1, 1]` per entry (`H·A`).
    pub fn mean(&self) -> &[f32] {
        &self.0.strategy.gauss.mean
    }

    /// Sampling standard deviation after the last plan, in half-range units (`H·A`); always
    /// within `[min_std, max_std]`, also before the first plan.
    pub fn std(&self) -> &[f32] {
        &self.0.strategy.gauss.std
    }
}
