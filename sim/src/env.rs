//! The one trait every scenario implements, and the types it speaks.

use crate::Result;
use zplan_obs::{ObsSpec, Observation};

/// Static description of a scenario: its true state, what the robot observes, what it may
/// command, and the clocks. Everything a planner or model needs to size its tensors comes
/// from here.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnvSpec {
    /// Scenario family, e.g. `"two_rooms"`.
    pub kind: String,
    /// Name of each entry of the true simulator state ([`Env::state`]); only the
    /// simulator-backed model and dataset labels read it.
    pub state_names: Vec<String>,
    /// What the robot observes ([`Env::observe`]): named fields with dtype and shape.
    pub observation: ObsSpec,
    /// Lower bound of each action entry.
    pub action_low: Vec<f32>,
    /// Upper bound of each action entry.
    pub action_high: Vec<f32>,
    /// Seconds of simulated time per `step` (one control period).
    pub control_dt: f32,
    /// Physics integration step in seconds.
    pub physics_dt: f32,
    /// Physics steps per control period (`control_dt = physics_dt * substeps`).
    pub substeps: u32,
    /// Episode step limit (control periods).
    pub max_steps: u32,
}

impl EnvSpec {
    /// Size of the true state vector.
    pub fn state_dim(&self) -> usize {
        self.state_names.len()
    }
    /// Action size.
    pub fn action_dim(&self) -> usize {
        self.action_low.len()
    }
}

/// What one control step reports.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepInfo {
    /// How many action entries were clipped to the bounds in this step.
    pub clipped: u32,
}

/// An opaque, complete copy of an environment's dynamic state (physics, goal, counters).
/// Restoring it continues bit-identically. Cloning a snapshot is cheap (it is shared).
#[derive(Clone)]
pub struct Snapshot(pub(crate) std::sync::Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot(..)")
    }
}

/// A top-down RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, RGB, first row at the top.
    pub rgb: Vec<u8>,
}

/// A physical scenario in which plans are executed and judged.
///
/// Required: every method. Implementations are deterministic: the same `reset(seed)` followed
/// by the same actions gives bit-identical states and observations.
///
/// Two views of the world are kept apart:
/// - the **true state** ([`Env::state`], [`Env::goal_state`], [`Env::set_state`]): the
///   simulator's full dynamic state as a vector, which the simulator-backed world model uses
///   to put copies of the world into a given state, and datasets store as labels;
/// - the **observation** ([`Env::observe`], [`Env::goal_observation`]): what the robot's
///   sensors give, typed by [`EnvSpec::observation`] (a state vector, camera images,
///   proprioception). Images never show the goal. Planners and learned models only ever see
///   observations.
pub trait Env: Send + Sync {
    /// The scenario's static description.
    fn spec(&self) -> &EnvSpec;
    /// Deterministically samples an initial state and a goal from `seed`.
    fn reset(&mut self, seed: u64) -> Result<()>;
    /// The true simulator state (`spec().state_dim()` entries).
    fn state(&self) -> Vec<f32>;
    /// The true state of the goal configuration (zero velocities).
    fn goal_state(&self) -> Vec<f32>;
    /// What the robot observes now, with the fields of `spec().observation`.
    fn observe(&self) -> Observation;
    /// What the robot would observe in the goal configuration (the goal image, for cameras):
    /// what goal-conditioned world models encode. Same fields as [`Env::observe`].
    fn goal_observation(&self) -> Observation;
    /// Advances one control period. A non-finite action is an error and leaves the state
    /// unchanged; out-of-bounds entries are clipped and counted.
    fn step(&mut self, action: &[f32]) -> Result<StepInfo>;
    /// Whether the current state satisfies the scenario's success predicate.
    fn success(&self) -> bool;
    /// Task-space distance to the goal (metres; push adds the scaled yaw error).
    fn distance_to_goal(&self) -> f32;
    /// Control steps taken since the last reset.
    fn steps(&self) -> u32;
    /// Total action entries clipped since the last reset.
    fn clipped_total(&self) -> u64;
    /// Captures the complete dynamic state.
    fn snapshot(&self) -> Snapshot;
    /// Restores a snapshot taken from an environment built from the same config.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<()>;
    /// Puts the world into the true state `state` (goal unchanged).
    fn set_state(&mut self, state: &[f32]) -> Result<()>;
    /// Renders the scene top-down for people (walls, bodies, and the goal marker, which
    /// observation images never show): filmstrips and docs.
    fn render(&self, width: u32, height: u32) -> Image;
    /// A fresh, independent copy in the same state.
    fn boxed_clone(&self) -> Box<dyn Env>;
}
