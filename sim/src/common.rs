//! Pieces every scenario uses: sampling regions, action and state checks, spec building.

use crate::validate;
use crate::{EnvSpec, Result, SimError};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use zplan_obs::ObsSpec;

/// An axis-aligned rectangle positions are drawn from, uniformly.
///
/// RON: `(x: (0.3, 1.7), y: (0.3, 1.7))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// `(min, max)` of x in metres.
    pub x: (f32, f32),
    /// `(min, max)` of y in metres.
    pub y: (f32, f32),
}

impl Region {
    /// Checks that both intervals are well formed and inside `[x0, x1] x [y0, y1]`.
    pub(crate) fn validate(&self, field: &str, bounds: [f32; 4]) -> Result<()> {
        validate::interval(&format!("{field}.x"), self.x, bounds[0], bounds[2])?;
        validate::interval(&format!("{field}.y"), self.y, bounds[1], bounds[3])
    }

    /// A uniform sample.
    pub(crate) fn sample(&self, rng: &mut ChaCha8Rng) -> [f32; 2] {
        [uniform(rng, self.x), uniform(rng, self.y)]
    }
}

/// A uniform sample from `[lo, hi]` (exactly `lo` when `lo == hi`).
pub(crate) fn uniform(rng: &mut ChaCha8Rng, (lo, hi): (f32, f32)) -> f32 {
    let u: f32 = rng.random();
    lo + (hi - lo) * u
}

/// Rejects a wrongly sized or non-finite action, then writes the action clipped to the spec's
/// bounds into `out` and returns how many entries were clipped. Nothing is written on error.
pub(crate) fn clip_action(spec: &EnvSpec, action: &[f32], out: &mut [f32]) -> Result<u32> {
    if action.len() != spec.action_dim() {
        return Err(SimError::Dimension {
            what: "action",
            expected: spec.action_dim(),
            got: action.len(),
        });
    }
    if let Some((index, &value)) = action.iter().enumerate().find(|(_, a)| !a.is_finite()) {
        return Err(SimError::NonFiniteAction { index, value });
    }
    let mut clipped = 0;
    let bounds = spec.action_low.iter().zip(&spec.action_high);
    for ((o, &a), (&lo, &hi)) in out.iter_mut().zip(action).zip(bounds) {
        *o = if a < lo {
            clipped += 1;
            lo
        } else if a > hi {
            clipped += 1;
            hi
        } else {
            a
        };
    }
    Ok(clipped)
}

/// Rejects a wrongly sized or non-finite state vector for `set_state`.
pub(crate) fn check_state(spec: &EnvSpec, obs: &[f32]) -> Result<()> {
    if obs.len() != spec.state_dim() {
        return Err(SimError::Dimension {
            what: "state",
            expected: spec.state_dim(),
            got: obs.len(),
        });
    }
    if let Some((index, v)) = obs.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(SimError::InvalidState {
            index,
            name: spec.state_names[index].clone(),
            message: format!("must be finite, got {v}"),
        });
    }
    Ok(())
}

/// A spec with actions bounded to `[-1, 1]` (every scenario scales them to physical units).
pub(crate) fn spec(
    kind: &str,
    state_names: Vec<String>,
    observation: ObsSpec,
    action_dim: usize,
    control_dt: f32,
    substeps: u32,
    max_steps: u32,
) -> EnvSpec {
    EnvSpec {
        kind: kind.to_string(),
        state_names,
        observation,
        action_low: vec![-1.0; action_dim],
        action_high: vec![1.0; action_dim],
        control_dt,
        physics_dt: control_dt / substeps as f32,
        substeps,
        max_steps,
    }
}

/// Step and clipping counters of an episode.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counters {
    pub steps: u32,
    pub clipped_total: u64,
}

impl Counters {
    pub(crate) fn record(&mut self, clipped: u32) {
        self.steps = self.steps.saturating_add(1);
        self.clipped_total += u64::from(clipped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec2() -> EnvSpec {
        let names: Vec<String> = vec!["a".into(), "b".into()];
        let obs = ObsSpec::state(names.clone()).unwrap();
        spec("t", names, obs, 2, 0.1, 2, 10)
    }

    #[test]
    fn clips_and_counts() {
        let mut out = [0.0; 2];
        assert_eq!(clip_action(&spec2(), &[2.0, -0.5], &mut out).unwrap(), 1);
        assert_eq!(out, [1.0, -0.5]);
        assert_eq!(clip_action(&spec2(), &[-7.0, 7.0], &mut out).unwrap(), 2);
        assert_eq!(out, [-1.0, 1.0]);
    }

    #[test]
    fn rejects_bad_actions_without_writing() {
        let mut out = [5.0; 2];
        assert!(matches!(
            clip_action(&spec2(), &[0.0, f32::NAN], &mut out),
            Err(SimError::NonFiniteAction { index: 1, .. })
        ));
        assert!(matches!(
            clip_action(&spec2(), &[f32::INFINITY, 0.0], &mut out),
            Err(SimError::NonFiniteAction { index: 0, .. })
        ));
        assert!(matches!(
            clip_action(&spec2(), &[0.0], &mut out),
            Err(SimError::Dimension { .. })
        ));
        assert_eq!(out, [5.0; 2]);
    }

    #[test]
    fn state_checks() {
        assert!(check_state(&spec2(), &[0.0, 1.0]).is_ok());
        assert!(check_state(&spec2(), &[0.0]).is_err());
        let e = check_state(&spec2(), &[0.0, f32::NAN]).unwrap_err();
        assert!(e.to_string().contains("`b`"), "{e}");
    }
}
