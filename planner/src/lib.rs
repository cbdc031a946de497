//! zplan-planner: find action sequences whose predicted latents land on the goal's latent.
//!
//! The pieces, in data-flow order:
//! - [`EnergyConfig`] / [`Energy`]: how far predicted latents `[S, H, *latent]` are from the
//!   goal latent (L1, L2, squared L2, cosine; last step, sum or discounted; action and
//!   smoothness penalties), batched on the model's device.
//! - [`Planner`]: [`Cem`], [`ICem`], [`Mppi`], [`Gradient`], built from a [`PlannerConfig`]
//!   (a tagged enum read from RON: `Cem(samples: 300, elites: 30, horizon: 8)`). All four are
//!   one sampling planner (`sampling.rs`) that owns the seed, random stream, energy, bounds
//!   and the preamble of every plan, with the algorithm as a strategy. Each iteration
//!   evaluates every candidate in **one** batched `WorldModel::rollout` and reads back only
//!   the `[S]` energies. Planning is anytime under a [`Budget`] (iterations and/or a
//!   deadline) and reproducible from a seed.
//! - [`Mpc`]: receding horizon with warm starts from the shifted previous plan, action blocks
//!   and per-plan latency.
//! - [`Controller`]: the planner on its own thread for a real-time control loop;
//!   pushing observations and reading actions never block.
//!
//! Actions are bounded by [`ActionBounds`]; sampling planners work in the normalised space
//! `[-1, 1]` per entry, so standard deviations are fractions of each entry's half-range.
//! NaN or infinite energies rank last; an iteration in which every candidate is non-finite is
//! an error ([`PlannerError::AllNonFinite`]).
//!
//! # Settings that work
//!
//! With the simulator-backed model (`planner/tests/closed_loop.rs`, 20/20 episodes each):
//! an energy summed over the horizon (`metric: L2, reduction: Sum`) rather than the last
//! step; action blocks (`MpcConfig::action_block`) to reach far with few decision variables;
//! iCEM's brown noise (`beta` 2–2.5) where a detour (two_rooms' door) or a decisive push is
//! needed; for push, `latent_weights` that put the block pose first (or, with a JEPA that
//! keeps a proprio latent, `proprio_weight`: the pusher weighs little). Defaults otherwise
//! follow published practice (CEM 300/30/10, iCEM 3 iterations β = 2, MPPI after TD-MPC2).
//!
//! # Adding a planner
//!
//! Write a module with a config struct (`#[serde(deny_unknown_fields, default)]`, a working
//! `Default`, a `validate()` whose range checks NaN fails) implementing the crate's
//! `Settings` trait, and a strategy implementing `Strategy` (`sampling.rs`): how a plan
//! begins from a normalised warm start, what one iteration evaluates and refits, and the
//! current mean. Population-based strategies implement `Sampler` and make each iteration one
//! `sampling_round`. Then add one line to the `planners!` list in `planner.rs` (and a `pub
//! use` of the config in `lib.rs`): the public planner type, [`PlannerConfig`]'s variant,
//! its RON/JSON forms, validation, memory estimate and `build` follow. The shared
//! `SamplingPlanner` supplies the rest: input checks, the energy, the warm start, seeding
//! and reseeding, the anytime loop with deadlines, and the cheap fallback plan. Test it
//! beside the others in `tests/planners.rs` (every planner runs the same cases) and record
//! its seeded hash in `tests/bit_identity.rs`.
//!
//! # Errors, not panics
//!
//! No input reaches a panic: constructors validate and return [`Result`], and library code
//! outside `#[cfg(test)]` calls no panicking macro, `unwrap` or `expect`, except on a line
//! that ends with a `// invariant: <why it holds>` comment. Indexing is by values the crate
//! constructed itself (validated bounds, plans, buffers it sized). Allocations sized by a
//! config (horizon × action entries, iCEM's noise matrix) are reserved fallibly, so an
//! absurd size is an error instead of an aborted process.
//!
//! # Soundness
//!
//! The crate has no `unsafe` whose soundness depends on code outside it. Rollouts are read on
//! the host in place only when the model promised, through the `unsafe` constructor
//! [`zplan_models::Rollout::exclusive`], that nothing else holds their storage (zplan's own
//! JEPA, simulator and parallel models do); any other result, such as a TorchScript module's,
//! is copied into a reused buffer first. The controller's lock-free slot
//! ([`Controller`]) is the one `unsafe` code here, with its invariants at each block.
//!
//! # Threads and determinism
//!
//! Planners sample on the host from a seeded counter-based normal stream ([`NormalStream`]) and upload once per iteration, so
//! the same seed, model and inputs give bit-identical plans on the CPU whatever the thread
//! that plans. Inference runs under `no_grad`; the gradient planner enables grad mode itself
//! (grad mode is thread-local in libtorch).
//!
//! # Example
//!
//! Plan with CEM through a linear latent model `z' = z + a` towards `z = (0.5, -0.3)`:
//!
//! ```
//! use std::sync::Arc;
//! use tch::{Device, Kind, Tensor};
//! use zplan_models::{state_spec, ObsBatch, ObsSpec, Observation, WorldModel};
//! use zplan_planner::{
//!     ActionBounds, Budget, EnergyConfig, Metric, Mpc, MpcConfig, PlannerConfig, Reduction,
//! };
//!
//! /// `z_{t+1} = z_t + a_t`, latent = the observed 2-D state vector.
//! struct Integrator(ObsSpec);
//! impl WorldModel for Integrator {
//!     fn name(&self) -> &str { "integrator" }
//!     fn device(&self) -> Device { Device::Cpu }
//!     fn obs_spec(&self) -> &ObsSpec { &self.0 }
//!     fn action_dim(&self) -> i64 { 2 }
//!     fn latent_shape(&self) -> &[i64] { &[2] }
//!     fn encode(&self, obs: &ObsBatch) -> zplan_models::Result<Tensor> {
//!         obs.float("state", "integrator", Device::Cpu)
//!     }
//!     fn rollout(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
//!         Ok(actions.cumsum(1, Kind::Float) + z0.unsqueeze(1))
//!     }
//! }
//!
//! # fn main() -> zplan_planner::Result<()> {
//! let planner: PlannerConfig =
//!     PlannerConfig::from_ron_str("Cem(samples: 300, elites: 30, iterations: 10, horizon: 4)")?;
//! let energy = EnergyConfig {
//!     metric: Metric::SquaredL2,
//!     reduction: Reduction::Sum,
//!     ..EnergyConfig::default()
//! };
//! let bounds = ActionBounds::symmetric(2, 1.0)?;
//!
//! // One plan.
//! let model = Integrator(state_spec(2));
//! let mut cem = planner.build(bounds.clone(), energy.clone(), 7)?;
//! let z0 = Tensor::from_slice(&[0.0f32, 0.0]).view([1, 2]);
//! let goal = Tensor::from_slice(&[0.5f32, -0.3]).view([1, 2]);
//! let out = cem.plan(&model, &z0, &goal, None, &Budget::unlimited())?;
//! assert!(bounds.contains(out.plan.actions()));
//! assert!((out.plan.first()[0] - 0.5).abs() < 0.1 && (out.plan.first()[1] + 0.3).abs() < 0.1);
//! assert!(out.energy_trace.windows(2).all(|w| w[1] <= w[0]));
//!
//! // Receding horizon: replan after every action, warm-started.
//! let model = Arc::new(Integrator(state_spec(2)));
//! let mut mpc = Mpc::new(model, planner.build(bounds, energy, 7)?, MpcConfig::default())?;
//! mpc.reset_episode(&Observation::state(vec![0.5, -0.3]), 1)?;
//! let mut x = vec![0.0f32, 0.0];
//! for _ in 0..3 {
//!     let a = mpc.act(&Observation::state(x.clone()))?;
//!     x[0] += a[0];
//!     x[1] += a[1];
//! }
//! assert!((x[0] - 0.5).abs() < 0.05 && (x[1] + 0.3).abs() < 0.05);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
// Range checks are written `if !(x >= lo) { error }` on purpose: NaN fails every comparison,
// so the negated form rejects it where `if x < lo` would let it through.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod blocks;
mod bounds;
mod cem;
mod controller;
mod device_cem;
mod energy;
mod error;
mod gradient;
mod icem;
mod mpc;
mod mppi;
mod noise;
mod normal;
mod plan;
mod planner;
mod sampling;
pub mod stats;

pub use blocks::ActionBlocks;
pub use bounds::ActionBounds;
pub use cem::{Backend, CemConfig, ReturnMode};
pub use controller::{Controller, ControllerOptions, ControllerReport, ControllerStats};
pub use energy::{Energy, EnergyConfig, Metric, Reduction};
pub use error::{PlannerError, Result};
pub use gradient::GradientConfig;
pub use icem::ICemConfig;
pub use mpc::{Mpc, MpcConfig, MpcStep};
pub use mppi::MppiConfig;
pub use noise::ColoredNoise;
pub use normal::NormalStream;
pub use plan::{Budget, Plan, PlanOutput};
pub use planner::{Cem, Gradient, ICem, Mppi, Planner, PlannerConfig};
pub use stats::duration_percentile;
