//! Box constraints on actions.

use crate::error::{Check, Result};
use serde::{Deserialize, Serialize};

/// Per-dimension box bounds on one action; every planner clips its candidates to them.
///
/// Build it from the scenario's `EnvSpec` (`ActionBounds::new(spec.action_low.clone(),
/// spec.action_high.clone())`). Sampling planners work internally in the normalised space
/// `u = (a - centre) / half_range ∈ [-1, 1]`, so their standard deviations are fractions of
/// the half-range and one config fits any bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBounds {
    /// Lower bound of each action entry.
    pub low: Vec<f32>,
    /// Upper bound of each action entry.
    pub high: Vec<f32>,
}

impl ActionBounds {
    /// Validated bounds.
    pub fn new(low: Vec<f32>, high: Vec<f32>) -> Result<Self> {
        let b = Self { low, high };
        b.validate()?;
        Ok(b)
    }

    /// `[-limit, limit]` in each of `dim` entries.
    pub fn symmetric(dim: usize, limit: f32) -> Result<Self> {
        Self::new(vec![-limit; dim], vec![limit; dim])
    }

    /// Checks: at least one entry, equal lengths, finite, `low < high`.
    pub fn validate(&self) -> Result<()> {
        let c = Check::new("bounds");
        c.at_least_one("low", self.low.len())?;
        if self.low.len() != self.high.len() {
            return c.fail(
                "high",
                format!(
                    "has {} entries but low has {}",
                    self.high.len(),
                    self.low.len()
                ),
            );
        }
        for (i, (&lo, &hi)) in self.low.iter().zip(&self.high).enumerate() {
            if !lo.is_finite() || !hi.is_finite() || !(lo < hi) {
                return c.fail(
                    &format!("[{i}]"),
                    format!("low {lo} and high {hi} must be finite with low < high"),
                );
            }
        }
        Ok(())
    }

    /// Action size `A`.
    pub fn dim(&self) -> usize {
        self.low.len()
    }

    /// Midpoint of entry `i`.
    pub fn centre(&self, i: usize) -> f32 {
        0.5 * (self.low[i] + self.high[i])
    }

    /// Half of the range of entry `i`.
    pub fn half_range(&self, i: usize) -> f32 {
        0.5 * (self.high[i] - self.low[i])
    }

    /// The action at the centre of the box.
    pub fn centre_action(&self) -> Vec<f32> {
        (0..self.dim()).map(|i| self.centre(i)).collect()
    }

    /// Clips a row-major sequence of actions (`len` a multiple of `dim`) into the box in place.
    /// NaN entries become the centre.
    pub fn clamp(&self, actions: &mut [f32]) {
        let a = self.dim();
        for (j, x) in actions.iter_mut().enumerate() {
            let i = j % a;
            *x = if x.is_nan() {
                self.centre(i)
            } else {
                x.clamp(self.low[i], self.high[i])
            };
        }
    }

    /// Whether every entry of a row-major action sequence lies in the box.
    pub fn contains(&self, actions: &[f32]) -> bool {
        let a = self.dim();
        actions.len() % a == 0
            && actions
                .iter()
                .enumerate()
                .all(|(j, &x)| x >= self.low[j % a] && x <= self.high[j % a])
    }

    /// Maps a normalised value `u ∈ [-1, 1]` of entry `i` to an action value, landing exactly
    /// on the bounds at `u = ±1`.
    #[inline]
    pub(crate) fn denormalise(&self, i: usize, u: f32) -> f32 {
        crate::sampling::clip(
            self.centre(i) + self.half_range(i) * u,
            self.low[i],
            self.high[i],
        )
    }

    /// Maps an action value of entry `i` to normalised space, clipped to `[-1, 1]`.
    #[inline]
    pub(crate) fn normalise(&self, i: usize, a: f32) -> f32 {
        let u = (a - self.centre(i)) / self.half_range(i);
        if u.is_nan() {
            0.0
        } else {
            u.clamp(-1.0, 1.0)
        }
    }
}
