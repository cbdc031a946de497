//! Box constraints on actions.

use crate::error::{Check, Result};
use serde::{Deserialize, Serialize};

/// Per-dimension box bounds on one action; every planner clips its candidates to them.
///
/// Build it from the scenario's `EnvSpec` (`ActionBounds::new(spec.action_low.clone(),
/// spec.action_high.clone())`). Sampling planners work internally in the normalised space
/// `u = (a - centre) / half_range ∈ [-1, 1]`, so their standard deviations are fractions of
/// the half-range and one config fits any bounds.
///
/// Every value of this type passed [`ActionBounds::validate`] (the fields are private and
/// deserialisation validates), so its methods cannot fail on malformed bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBounds")]
pub struct ActionBounds {
    low: Vec<f32>,
    high: Vec<f32>,
}

/// The serialised form of [`ActionBounds`], validated on the way in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBounds {
    low: Vec<f32>,
    high: Vec<f32>,
}

impl TryFrom<RawBounds> for ActionBounds {
    type Error = crate::PlannerError;
    fn try_from(raw: RawBounds) -> Result<Self> {
        Self::new(raw.low, raw.high)
    }
}

impl ActionBounds {
    /// Validated bounds.
    pub fn new(low: Vec<f32>, high: Vec<f32>) -> Result<Self> {
        validate(&low, &high)?;
        Ok(Self { low, high })
    }

    /// `[-limit, limit]` in each of `dim` entries.
    pub fn symmetric(dim: usize, limit: f32) -> Result<Self> {
        Self::new(vec![-limit; dim], vec![limit; dim])
    }

    /// Checks: at least one entry, equal lengths, finite, `low < high`. Always `Ok` for a
    /// constructed value (kept for callers that validate every config they hold).
    pub fn validate(&self) -> Result<()> {
        validate(&self.low, &self.high)
    }

    /// Lower bound of each action entry.
    pub fn low(&self) -> &[f32] {
        &self.low
    }

    /// Upper bound of each action entry.
    pub fn high(&self) -> &[f32] {
        &self.high
    }

    /// Action size `A`.
    pub fn dim(&self) -> usize {
        self.low.len()
    }

    /// Midpoint of entry `i`; `None` if `i >= dim()`.
    pub fn centre(&self, i: usize) -> Option<f32> {
        Some(0.5 * (self.low.get(i)? + self.high.get(i)?))
    }

    /// Half of the range of entry `i`; `None` if `i >= dim()`.
    pub fn half_range(&self, i: usize) -> Option<f32> {
        Some(0.5 * (self.high.get(i)? - self.low.get(i)?))
    }

    /// Midpoint of entry `i < dim()` (callers index by `j % dim()`).
    #[inline]
    pub(crate) fn centre_at(&self, i: usize) -> f32 {
        0.5 * (self.low[i] + self.high[i])
    }

    /// Half-range of entry `i < dim()`.
    #[inline]
    pub(crate) fn half_range_at(&self, i: usize) -> f32 {
        0.5 * (self.high[i] - self.low[i])
    }

    /// The action at the centre of the box.
    pub fn centre_action(&self) -> Vec<f32> {
        (0..self.dim()).map(|i| self.centre_at(i)).collect()
    }

    /// Clips a row-major sequence of actions (`len` a multiple of `dim`) into the box in place.
    /// NaN entries become the centre.
    pub fn clamp(&self, actions: &mut [f32]) {
        // invariant: validated bounds have `dim() >= 1` entries and `low < high`, so neither
        // the remainder nor the indexing nor `clamp` below can panic.
        let a = self.dim();
        for (j, x) in actions.iter_mut().enumerate() {
            let i = j % a;
            *x = if x.is_nan() {
                self.centre_at(i)
            } else {
                x.clamp(self.low[i], self.high[i])
            };
        }
    }

    /// Whether every entry of a row-major action sequence lies in the box.
    pub fn contains(&self, actions: &[f32]) -> bool {
        // invariant: `dim() >= 1` (validated).
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
            self.centre_at(i) + self.half_range_at(i) * u,
            self.low[i],
            self.high[i],
        )
    }

    /// Maps an action value of entry `i` to normalised space, clipped to `[-1, 1]`.
    #[inline]
    pub(crate) fn normalise(&self, i: usize, a: f32) -> f32 {
        let u = (a - self.centre_at(i)) / self.half_range_at(i);
        if u.is_nan() {
            0.0
        } else {
            u.clamp(-1.0, 1.0)
        }
    }
}

/// The checks of [`ActionBounds::validate`] on raw vectors.
fn validate(low: &[f32], high: &[f32]) -> Result<()> {
    let c = Check::new("bounds");
    c.at_least_one("low", low.len())?;
    if low.len() != high.len() {
        return c.fail(
            "high",
            format!("has {} entries but low has {}", high.len(), low.len()),
        );
    }
    for (i, (&lo, &hi)) in low.iter().zip(high).enumerate() {
        if !lo.is_finite() || !hi.is_finite() || !(lo < hi) {
            return c.fail(
                &format!("[{i}]"),
                format!("low {lo} and high {hi} must be finite with low < high"),
            );
        }
    }
    Ok(())
}
