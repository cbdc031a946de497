//! The one trait every scenario implements, and the types it speaks.

use crate::Result;

/// Static description of a scenario: what the robot observes, what it may command, and the
/// clocks. Everything a planner or model needs to size its tensors comes from here.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnvSpec {
    /// Scenario family, e.g. `"two_rooms"`.
    pub kind: String,
    /// Name of each observation entry; `obs_names.len()` is the observation size.
    pub obs_names: Vec<String>,
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
    /// Observation size.
    pub fn obs_dim(&self) -> usize {
        self.obs_names.len()
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
/// Required: every method but [`Env::set_state`]'s default. Implementations are deterministic:
/// the same `reset(seed)` followed by the same actions gives bit-identical observations.
///
/// The observation is a full state vector (positions and velocities), so the simulator-backed
/// world model can put a copy of the world into the state an observation describes with
/// [`Env::set_state`].
pub trait Env: Send + Sync {
    /// The scenario's static description.
    fn spec(&self) -> &EnvSpec;
    /// Deterministically samples an initial state and a goal from `seed`.
    fn reset(&mut self, seed: u64) -> Result<()>;
    /// The current observation (`spec().obs_dim()` entries).
    fn observe(&self) -> Vec<f32>;
    /// The observation the robot would see in the goal configuration (what goal-conditioned
    /// world models encode).
    fn goal_observation(&self) -> Vec<f32>;
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
    /// Puts the world into the state that `obs` describes (goal unchanged).
    fn set_state(&mut self, obs: &[f32]) -> Result<()>;
    /// Renders the scene top-down (walls, bodies, goal marker).
    fn render(&self, width: u32, height: u32) -> Image;
    /// A fresh, independent copy in the same state.
    fn boxed_clone(&self) -> Box<dyn Env>;
}
