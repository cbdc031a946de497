//! Model predictive path integral control (MPPI), in TD-MPC2's elite-weighted form.

use crate::bounds::ActionBounds;
use crate::cem::ReturnMode;
use crate::error::{Check, Result};
use crate::normal::NormalStream;
use crate::sampling::{self, Ctx, Gaussian, Sampler, Settings, Strategy, Warm};
use serde::{Deserialize, Serialize};

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

impl Settings for MppiConfig {
    type Strategy = MppiStrategy;
    fn validate(&self) -> Result<()> {
        MppiConfig::validate(self)
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

/// MPPI's algorithm inside a [`sampling::SamplingPlanner`] (the public planner is
/// [`crate::Mppi`]).
pub(crate) struct MppiStrategy {
    config: MppiConfig,
    action_dim: usize,
    pub(crate) gauss: Gaussian,
    /// The last plan's solution (normalised), the next cold plan's start after `shift`.
    previous: Option<Vec<f32>>,
    weights: Vec<f32>,
}

impl Sampler for MppiStrategy {
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

    fn refit(&mut self, _i: u32, u: &[f32], e: &[f32], order: &[usize], finite: usize) {
        let k = self.config.elites.min(finite).max(1);
        let elites = order.get(..k).unwrap_or(order);
        let ha = self.gauss.mean.len();
        let row = |i: usize| u.get(i * ha..(i + 1) * ha).unwrap_or_default();
        let e_min = order
            .first()
            .and_then(|&i| e.get(i))
            .copied()
            .unwrap_or(0.0);
        let inv_t = 1.0 / self.config.temperature;
        self.weights.clear();
        self.weights.extend(
            elites
                .iter()
                .map(|&i| (-(e.get(i).copied().unwrap_or(f32::NAN) - e_min) * inv_t).exp()),
        );
        let total: f32 = self.weights.iter().sum();
        let (mean, std) = (&mut self.gauss.mean, &mut self.gauss.std);
        mean.fill(0.0);
        for (&i, w) in elites.iter().zip(&self.weights) {
            let w = w / total;
            for (m, x) in mean.iter_mut().zip(row(i)) {
                *m += w * x;
            }
        }
        if self.config.adapt_std {
            std.fill(0.0);
            for (&i, w) in elites.iter().zip(&self.weights) {
                let w = w / total;
                for ((s, m), x) in std.iter_mut().zip(mean.iter()).zip(row(i)) {
                    *s += w * (x - m) * (x - m);
                }
            }
            let (lo, hi) = (self.gauss.min_std, self.gauss.max_std);
            for s in std.iter_mut() {
                *s = sampling::clip(s.sqrt(), lo, hi);
            }
        }
        for m in mean.iter_mut() {
            *m = m.clamp(-1.0, 1.0);
        }
    }
}

impl Strategy for MppiStrategy {
    type Config = MppiConfig;
    const NAME: &'static str = "mppi";

    fn new(config: MppiConfig, bounds: &ActionBounds, _seed: u64) -> Result<Self> {
        let ha = sampling::sequence_len(config.horizon, bounds)?;
        Ok(Self {
            gauss: Gaussian::new(ha, config.noise_std, config.min_std, config.max_std)?,
            action_dim: bounds.dim(),
            previous: None,
            weights: Vec::new(),
            config,
        })
    }

    fn config(&self) -> &MppiConfig {
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

    /// Without a warm start, a cold plan begins from the previous solution advanced by
    /// `shift` steps (`shift: 0`: from the centre).
    fn begin(&mut self, warm: Option<Warm>) -> Result<()> {
        let start = match (warm, &self.previous) {
            (Some(w), _) => Some(w.u),
            (None, Some(prev)) if self.config.shift > 0 => {
                let mut m = prev.clone();
                sampling::shift_u(&mut m, self.config.shift, self.action_dim);
                Some(m)
            }
            _ => None,
        };
        self.gauss.begin(start);
        Ok(())
    }

    fn population(&self, i: u32) -> usize {
        Sampler::population(self, i)
    }

    fn iterate(&mut self, i: u32, ctx: &mut Ctx<'_, '_>) -> Result<()> {
        sampling::sampling_round(self, None, i, ctx)
    }

    fn mean(&self) -> &[f32] {
        &self.gauss.mean
    }

    fn end(&mut self, best_u: &[f32]) {
        self.previous = Some(match self.config.return_mode {
            ReturnMode::Mean => self.gauss.mean.clone(),
            ReturnMode::Best => best_u.to_vec(),
        });
    }

    fn reset(&mut self, _seed: u64) {
        self.gauss.reset();
        self.previous = None;
    }
}

impl crate::Mppi {
    /// Sampling standard deviation after the last plan (half-range units, `H·A`); always
    /// within `[min_std, max_std]`.
    pub fn std(&self) -> &[f32] {
        &self.0.strategy.gauss.std
    }
}
