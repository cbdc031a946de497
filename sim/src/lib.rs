//! zplan-sim: Rapier physics scenarios in which zplan's plans are executed and judged.
//!
//! Every scenario implements [`Env`]: a deterministic, seedable, planar world seen from above.
//! Its true state ([`Env::state`], which a simulator-backed world model can [`Env::set_state`]
//! copies of the world into) is kept apart from what the robot observes ([`Env::observe`]):
//! typed fields chosen by the scenario file's `observation:` ([`ObservationConfig`]) — the
//! state vector, an anti-aliased camera image without any goal marker, proprioception. The
//! goal is given as the observation of the goal configuration ([`Env::goal_observation`]: for
//! cameras, the goal image). Scenarios are described by [`ScenarioConfig`], read from RON
//! files whose errors name the file, line, column and field.
//!
//! | family | file syntax | robot | action (all in `[-1, 1]`) | state | proprio |
//! |---|---|---|---|---|---|
//! | [`two_rooms`] | `TwoRooms(..)` | point mass between walls | 2-D velocity | `x, y, vx, vy` (+ `door_y` for a moving door) | none |
//! | [`reach`] | `Reach(..)` | planar N-link arm (multibody) | joint velocities | `cos q, sin q, qdot` per joint, `ee_x, ee_y` | the joint entries |
//! | [`push`] | `Push(..)` | pusher and a box or T block | 2-D pusher velocity | pusher `x, y, vx, vy`, block `x, y, cos, sin, vx, vy, yaw rate` | the pusher entries |
//!
//! Determinism: the same `reset(seed)` and the same actions give bit-identical states and
//! observations (images included),
//! and [`Env::snapshot`]/[`Env::restore`] continue bit-identically (the snapshot holds every
//! Rapier structure with state: bodies, colliders, joints, islands, broad and narrow phase).
//!
//! # Example
//!
//! ```
//! use zplan_sim::{Env, ScenarioConfig};
//!
//! let config = ScenarioConfig::from_ron_str("TwoRooms(door_width: 0.7, max_steps: 150)", "inline")?;
//! let mut env = config.build()?;
//! env.reset(42)?;
//! let start = env.state();
//! assert_eq!(start.len(), env.spec().state_dim());
//! // Without an `observation:` field the robot observes the state vector.
//! assert_eq!(env.observe().f32("state"), Some(&start[..]));
//!
//! // Head right at full speed for one control period.
//! let info = env.step(&[1.0, 0.0])?;
//! assert_eq!(info.clipped, 0);
//! let after = env.state();
//! approx::assert_relative_eq!(after[0] - start[0], env.spec().control_dt * 1.0, epsilon = 1e-3);
//!
//! // Out-of-bounds entries are clipped and counted; non-finite ones are refused.
//! assert_eq!(env.step(&[3.0, 0.0])?.clipped, 1);
//! assert!(env.step(&[f32::NAN, 0.0]).is_err());
//! assert_eq!(env.steps(), 2);
//! # Ok::<(), zplan_sim::SimError>(())
//! ```
//!
//! # Adding a scenario family
//!
//! Write a module with a config struct (`#[serde(deny_unknown_fields, default)]`, a solvable
//! `Default`) implementing [`Scenario`], and an environment implementing [`Env`] (the existing
//! families show the pattern: a pristine [`physics`] state captured after building, restored by
//! `reset`; snapshots holding the full Rapier state). Then add one line to the
//! `scenario_families!` list in `config.rs`; parsing, validation with file positions,
//! serialisation and dispatch follow.
//!
//! Errors name the place of the problem:
//!
//! ```
//! use zplan_sim::ScenarioConfig;
//!
//! let err = ScenarioConfig::from_ron_str("TwoRooms(\n  door_width: -1,\n)", "x.ron").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "x.ron:2:3: field `door_width`: must be > 0 and < the wall length (2), got -1"
//! );
//! ```
#![warn(missing_docs)]
// Range checks are written `if !(x > lo) { error }` on purpose: NaN fails every comparison, so
// the negated form rejects it, where `if x <= lo` would let it through.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod camera;
mod common;
mod config;
pub mod env;
mod error;
mod geometry;
pub mod observation;
pub mod physics;
pub mod push;
pub mod reach;
mod render;
mod ron_locate;
pub mod serde_variant;
pub mod two_rooms;
mod validate;

pub use common::Region;
pub use config::{Scenario, ScenarioConfig};
pub use env::{Env, EnvSpec, Image, Snapshot, StepInfo};
pub use error::{Result, SimError};
pub use observation::{ImageConfig, ObservationConfig};
pub use push::{BlockShape, GoalPusher, Push, PushConfig};
pub use reach::{Reach, ReachConfig};
pub use two_rooms::{DoorCenter, TwoRooms, TwoRoomsConfig, WallSegment};
pub use zplan_obs::{self as obs, Dtype, FieldData, FieldSpec, ObsSpec, Observation};

/// The Rapier version this crate simulates with, re-exported so benchmarks and tools can step
/// [`physics::clone_world`] copies of a scenario's world with exactly the same engine.
pub use rapier3d;
