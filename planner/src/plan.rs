//! What planners return, and how much time they may take.

use crate::error::{PlannerError, Result};
use std::time::{Duration, Instant};

/// An action sequence: `horizon >= 1` actions of `action_dim >= 1` entries, row-major. Its
/// fields are private so that every plan went through [`Plan::new`]'s checks: no method can
/// then panic or underflow.
///
/// A plan is what a planner hands back and what it takes as a warm start. `shift` counts the
/// steps this plan was advanced by [`Plan::shifted`] since a planner produced it; iCEM uses it
/// to advance its kept elites by the same amount.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub(crate) actions: Vec<f32>,
    pub(crate) horizon: usize,
    pub(crate) action_dim: usize,
    pub(crate) shift: usize,
}

impl Plan {
    /// A plan from row-major actions; fails unless `actions.len() == horizon * action_dim`.
    pub fn new(actions: Vec<f32>, horizon: usize, action_dim: usize) -> Result<Self> {
        if horizon == 0 || action_dim == 0 || horizon.checked_mul(action_dim) != Some(actions.len())
        {
            return Err(PlannerError::Shape(format!(
                "plan of {} values cannot be {horizon} actions of {action_dim} entries",
                actions.len()
            )));
        }
        Ok(Self {
            actions,
            horizon,
            action_dim,
            shift: 0,
        })
    }

    /// `horizon` copies of `action`.
    pub fn constant(horizon: usize, action: &[f32]) -> Result<Self> {
        Self::new(action.repeat(horizon), horizon, action.len())
    }

    /// `horizon * action_dim` values, action `t` at `t * action_dim ..`.
    pub fn actions(&self) -> &[f32] {
        &self.actions
    }

    /// The values, consuming the plan.
    pub fn into_actions(self) -> Vec<f32> {
        self.actions
    }

    /// Number of actions (at least 1).
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Entries per action (at least 1).
    pub fn action_dim(&self) -> usize {
        self.action_dim
    }

    /// Steps this plan was shifted by since a planner produced it (0 for a fresh plan).
    pub fn shift(&self) -> usize {
        self.shift
    }

    /// Action `t`; `None` if `t >= horizon`.
    pub fn action(&self, t: usize) -> Option<&[f32]> {
        self.actions
            .get(t * self.action_dim..(t + 1).checked_mul(self.action_dim)?)
    }

    /// The first action, the one receding-horizon control executes.
    pub fn first(&self) -> &[f32] {
        self.actions.get(..self.action_dim).unwrap_or_default()
    }

    /// The last action.
    pub fn last(&self) -> &[f32] {
        let start = self.actions.len().saturating_sub(self.action_dim);
        self.actions.get(start..).unwrap_or_default()
    }

    /// The actions as rows.
    pub fn rows(&self) -> Vec<Vec<f32>> {
        self.actions
            .chunks(self.action_dim)
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// The plan advanced by `k` steps for a warm start after executing `k` actions: drops the
    /// first `k` actions and repeats the last action to keep the horizon.
    pub fn shifted(&self, k: usize) -> Plan {
        self.shift_filled(k, self.last())
    }

    /// Like [`Plan::shifted`] but fills the tail with `fill` (for example zeros or the centre
    /// of the action bounds). Fails unless `fill` has `action_dim` entries.
    pub fn shifted_with(&self, k: usize, fill: &[f32]) -> Result<Plan> {
        if fill.len() != self.action_dim {
            return Err(PlannerError::Shape(format!(
                "the fill of a shifted plan must be one action of {} entries, got {}",
                self.action_dim,
                fill.len()
            )));
        }
        Ok(self.shift_filled(k, fill))
    }

    fn shift_filled(&self, k: usize, fill: &[f32]) -> Plan {
        let k = k.min(self.horizon);
        let mut actions = Vec::with_capacity(self.actions.len());
        actions.extend_from_slice(self.actions.get(k * self.action_dim..).unwrap_or_default());
        for _ in 0..k {
            actions.extend_from_slice(fill);
        }
        Plan {
            actions,
            horizon: self.horizon,
            action_dim: self.action_dim,
            shift: self.shift.saturating_add(k),
        }
    }

    /// The same actions over a different horizon: truncated, or extended by repeating the last
    /// action. Used when a warm start comes from a planner with another horizon. Fails for
    /// `horizon == 0`.
    pub fn resized(&self, horizon: usize) -> Result<Plan> {
        let len = horizon
            .checked_mul(self.action_dim)
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                PlannerError::Shape(format!(
                    "a plan cannot be resized to {horizon} actions of {} entries",
                    self.action_dim
                ))
            })?;
        let mut actions = self.actions.clone();
        actions.truncate(len);
        while actions.len() < len {
            actions.extend_from_slice(self.last());
        }
        Ok(Plan {
            actions,
            horizon,
            action_dim: self.action_dim,
            shift: self.shift,
        })
    }
}

/// What one call of [`crate::Planner::plan`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutput {
    /// The plan to execute (within the action bounds).
    pub plan: Plan,
    /// Lowest energy among the evaluated candidates. In CEM/MPPI's `Mean` return mode the
    /// returned mean itself was refitted after its last evaluation; this is then the best
    /// evaluated candidate's energy.
    pub best_energy: f32,
    /// Iterations (sampling rounds or gradient steps) completed.
    pub iterations: u32,
    /// Best energy so far after each iteration; never increases.
    pub energy_trace: Vec<f32>,
    /// Candidate action sequences rolled out through the model.
    pub rollouts: u64,
    /// Whether the deadline cut planning short.
    pub hit_deadline: bool,
}

/// How much work one planning call may do. Planning is *anytime*: a valid plan exists from the
/// start (the warm start, evaluated once if nothing else fits), each iteration refines it, the
/// best energy never goes up, and at the deadline the best plan so far is returned.
///
/// `iterations: None` uses the planner's configured iteration count. A planner does not start an
/// iteration that its last iteration's duration predicts would end after the deadline, so the
/// deadline is overrun by at most the first iteration (or by a slower-than-predicted one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Upper bound on iterations; `None` means the planner's configured count.
    pub iterations: Option<u32>,
    /// Wall-clock instant by which planning should have returned.
    pub deadline: Option<Instant>,
}

impl Budget {
    /// The planner's configured iterations, no deadline.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Exactly `n` iterations (no deadline).
    pub fn iterations(n: u32) -> Self {
        Self {
            iterations: Some(n),
            deadline: None,
        }
    }

    /// Configured iterations, but return by `deadline`.
    pub fn until(deadline: Instant) -> Self {
        Self {
            iterations: None,
            deadline: Some(deadline),
        }
    }

    /// Configured iterations, but return within `d` from now (no deadline if `now + d` is
    /// beyond what the clock can represent).
    pub fn within(d: Duration) -> Self {
        Self {
            iterations: None,
            deadline: Instant::now().checked_add(d),
        }
    }

    /// The iteration cap given the planner's configured count.
    pub(crate) fn max_iterations(&self, configured: u32) -> u32 {
        self.iterations.unwrap_or(configured)
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Whether an iteration predicted to take `estimate` would end after the deadline.
    pub(crate) fn would_overrun(&self, estimate: Duration) -> bool {
        self.deadline.is_some_and(|d| {
            Instant::now()
                .checked_add(estimate)
                .is_none_or(|end| end > d)
        })
    }
}
