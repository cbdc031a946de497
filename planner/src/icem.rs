//! Improved CEM (Pinneri et al., 2020): colored noise, kept elites, population decay.

use crate::bounds::ActionBounds;
use crate::cem::ReturnMode;
use crate::error::{Check, Result};
use crate::noise::ColoredNoise;
use crate::normal::NormalStream;
use crate::sampling::{self, Ctx, Gaussian, Sampler, Settings, Strategy, Warm};
use serde::{Deserialize, Serialize};

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
        // `i` beyond `i32::MAX` decays no further (and cannot overflow the negation).
        let i = i.min(i32::MAX as u32) as i32;
        let decayed = (self.samples as f64 * f64::from(self.decay).powi(-i)) as usize;
        decayed
            .max(self.elites.saturating_mul(2).min(self.samples))
            .max(1)
    }

    fn kept(&self) -> usize {
        ((self.keep_elites * self.elites as f32).round() as usize).min(self.elites)
    }
}

impl Settings for ICemConfig {
    type Strategy = ICemStrategy;
    fn validate(&self) -> Result<()> {
        ICemConfig::validate(self)
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
    /// The `H × H` colored-noise matrix.
    fn fixed_memory(&self) -> u64 {
        zplan_io::bytes_of(&[self.horizon as u64, self.horizon as u64, 4])
    }
}

/// iCEM's algorithm inside a [`sampling::SamplingPlanner`] (the public planner is
/// [`crate::ICem`]).
pub(crate) struct ICemStrategy {
    config: ICemConfig,
    action_dim: usize,
    noise: ColoredNoise,
    pub(crate) gauss: Gaussian,
    /// Elites of the last iteration, best first (normalised, `k·H·A`).
    pub(crate) elites: Vec<f32>,
    white: Vec<f32>,
    seq: Vec<f32>,
    fit_mean: Vec<f32>,
    fit_std: Vec<f32>,
}

impl Sampler for ICemStrategy {
    fn population(&self, i: u32) -> usize {
        self.config.population(i)
    }

    fn sample(&mut self, i: u32, rng: &mut NormalStream, out: &mut Vec<f32>) {
        let pop = self.config.population(i);
        let mean = &self.gauss.mean;
        let ha = mean.len();
        let (h, a) = (self.config.horizon, self.action_dim);
        out.clear();
        out.reserve(pop * ha);
        if self.config.include_mean {
            out.extend_from_slice(mean);
        }
        let kept = self
            .config
            .kept()
            .min(self.elites.len() / ha.max(1))
            .min(pop.saturating_sub(out.len() / ha.max(1)));
        out.extend_from_slice(self.elites.get(..kept * ha).unwrap_or_default());
        let fresh = pop.saturating_sub(out.len() / ha.max(1));
        // One colored sequence per (candidate, action entry), in the order the candidates
        // consume them: `seq[(k·A + d)·H + t]`.
        self.noise
            .sample_many(rng, fresh * a, &mut self.white, &mut self.seq);
        for k in 0..fresh {
            let base = out.len();
            out.extend_from_slice(mean);
            for d in 0..a {
                let seq = &self.seq[(k * a + d) * h..(k * a + d + 1) * h];
                for (t, x) in seq.iter().enumerate() {
                    let j = base + t * a + d;
                    out[j] = sampling::clip(out[j] + self.gauss.std[t * a + d] * x, -1.0, 1.0);
                }
            }
        }
    }

    fn refit(&mut self, _i: u32, u: &[f32], _e: &[f32], order: &[usize], finite: usize) {
        let k = self.config.elites.min(finite).max(1);
        let ha = self.gauss.mean.len();
        sampling::elite_stats(u, order, k, ha, &mut self.fit_mean, &mut self.fit_std);
        self.gauss
            .blend(&self.fit_mean, &self.fit_std, self.config.momentum);
        self.elites.clear();
        for &i in order.iter().take(k) {
            self.elites
                .extend_from_slice(u.get(i * ha..(i + 1) * ha).unwrap_or_default());
        }
    }
}

impl Strategy for ICemStrategy {
    type Config = ICemConfig;
    const NAME: &'static str = "icem";

    fn new(config: ICemConfig, bounds: &ActionBounds, _seed: u64) -> Result<Self> {
        let ha = sampling::sequence_len(config.horizon, bounds)?;
        Ok(Self {
            noise: ColoredNoise::new(config.horizon, config.beta)?,
            action_dim: bounds.dim(),
            gauss: Gaussian::new(ha, config.init_std, config.min_std, config.max_std)?,
            elites: Vec::new(),
            white: Vec::new(),
            seq: Vec::new(),
            fit_mean: sampling::zeros(ha, "icem.horizon")?,
            fit_std: sampling::zeros(ha, "icem.horizon")?,
            config,
        })
    }

    fn config(&self) -> &ICemConfig {
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

    /// With a warm start, the elites kept from the previous plan are shifted by
    /// `warm_start.shift` steps and join the first iteration; without one they are dropped
    /// (nothing says how far the world has moved).
    fn begin(&mut self, warm: Option<Warm>) -> Result<()> {
        let ha = self.gauss.mean.len();
        match warm {
            Some(w) => {
                let kept = self.config.kept().min(self.elites.len() / ha.max(1));
                self.elites.truncate(kept * ha);
                for e in self.elites.chunks_mut(ha.max(1)) {
                    sampling::shift_u(e, w.shift, self.action_dim);
                }
                self.gauss.begin(Some(w.u));
            }
            None => {
                self.gauss.begin(None);
                self.elites.clear();
            }
        }
        Ok(())
    }

    fn population(&self, i: u32) -> usize {
        self.config.population(i)
    }

    fn iterate(&mut self, i: u32, ctx: &mut Ctx<'_, '_>) -> Result<()> {
        sampling::sampling_round(self, None, i, ctx)
    }

    fn mean(&self) -> &[f32] {
        &self.gauss.mean
    }

    fn reset(&mut self, _seed: u64) {
        self.gauss.reset();
        self.elites.clear();
    }
}

impl crate::ICem {
    /// Sampling standard deviation after the last plan (half-range units, `H·A`); always
    /// within `[min_std, max_std]`.
    pub fn std(&self) -> &[f32] {
        &self.0.strategy.gauss.std
    }

    /// Number of elites currently kept for the next plan.
    pub fn kept_elites(&self) -> usize {
        let s = &self.0.strategy;
        let ha = s.gauss.mean.len();
        (s.elites.len() / ha.max(1)).min(s.config.kept())
    }
}
