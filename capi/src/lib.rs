//! zplan-capi: the C ABI of zplan, for embedding its real-time controller in C and C++
//! robot software.
//!
//! Build `cargo build --release -p zplan-capi` for `target/release/libzplan_capi.so` (and
//! `libzplan_capi.a`), include `capi/include/zplan.h` (generated from this crate by cbindgen;
//! `tests/header.rs` fails when it is stale, and `ZPLAN_BLESS=1 cargo test -p zplan-capi --test
//! header` rewrites it). `capi/README.md` has a C example and the build commands;
//! `examples/cpp/realtime_controller.cpp` is a complete 20 Hz control loop.
//!
//! # What it offers
//!
//! - A **controller** (`ZplanController`): a planner on its own thread (the Rust
//!   `zplan_planner::Controller`) that replans whenever an observation arrives, within a
//!   per-plan deadline. Create it from a suite entry in RON
//!   (`zplan_controller_create_from_entry`) or from a scenario file, a model and planner /
//!   energy / MPC RON (`zplan_controller_create`); set a goal observation
//!   (`zplan_controller_set_goal`, which starts the thread); then, every control period, push
//!   the observation (`zplan_controller_push_observation`) and read the action for now
//!   (`zplan_controller_latest_action`). Change the deadline at runtime
//!   (`zplan_controller_set_deadline`), read counters (`zplan_controller_stats`), stop
//!   (`zplan_controller_stop`, which reports latency percentiles) and destroy.
//! - A scenario **environment** (`ZplanEnv`), to drive a controller against zplan's Rapier
//!   simulation without a robot: create from a scenario file, query the observation fields
//!   and action bounds, reset, observe, goal observation, step, success, distance.
//! - **Observations as named fields**: an array of `ZplanField` {name, dtype, data, shape,
//!   ndim}. Every field is checked against the observation spec (the scenario's); a mismatch
//!   returns `ZPLAN_STATUS_INVALID_OBSERVATION` with a message naming the field, the expected
//!   dtype and shape, and the actual ones. The optional `ZPLAN_TRUE_STATE_FIELD` carries the
//!   true simulator state for the simulator-backed model `Sim`.
//!
//! # Example
//!
//! The functions are `extern "C"`; from Rust they are called as C calls them (tests and this
//! example do; `capi/README.md` has the same in C):
//!
//! ```
//! use std::ffi::CStr;
//! use zplan_capi::*;
//!
//! let mut env = std::ptr::null_mut();
//! // SAFETY: NUL-terminated strings, valid output pointers, and the message is copied before
//! // the next zplan call.
//! unsafe {
//!     let status = zplan_env_create(c"../scenarios/reach.ron".as_ptr(), &mut env);
//!     assert_eq!(status, ZplanStatus::Ok);
//!     assert_eq!(zplan_env_destroy(env), ZplanStatus::Ok);
//!     // Misuse is a status and a message, not a crash: the handle is gone.
//!     assert_eq!(zplan_env_destroy(env), ZplanStatus::InvalidHandle);
//!     let message = CStr::from_ptr(zplan_last_error_message()).to_str()?;
//!     assert!(message.starts_with("zplan_env_destroy: `env` is not a live environment handle"));
//! }
//! # Ok::<(), std::str::Utf8Error>(())
//! ```
//!
//! # Errors
//!
//! Every function returns a `ZplanStatus` except `zplan_controller_options_default`,
//! `zplan_status_name` and `zplan_last_error_message`, which cannot fail. `ZPLAN_STATUS_OK`
//! and `ZPLAN_STATUS_NO_ACTION_YET` are not errors; for every other status,
//! `zplan_last_error_message()` returns what was wrong, prefixed with the function's name
//! (thread-local: each thread sees its own last error; successful calls leave it unchanged).
//! Output arguments are written only on success.
//!
//! Nothing panics or unwinds across the boundary: every entry point runs its body under
//! `catch_unwind`, and a panic (a bug) becomes `ZPLAN_STATUS_PANIC` with the panic's message.
//! NULL pointers where a pointer is required return `ZPLAN_STATUS_NULL_POINTER`, strings
//! that are not UTF-8 `ZPLAN_STATUS_INVALID_ARGUMENT`, and buffers of the wrong length
//! `ZPLAN_STATUS_WRONG_SIZE`. What a C library cannot detect stays undefined behaviour: a
//! pointer to too little memory, a string without a terminating NUL, a buffer freed while
//! in use.
//!
//! # Handles, ownership and lifetimes
//!
//! Handles (`ZplanController *`, `ZplanEnv *`) are opaque: not addresses but ids into a
//! process-wide registry, never dereferenced and never reused. `destroy` removes the id, so a
//! second `destroy` or any later use returns `ZPLAN_STATUS_INVALID_HANDLE` instead of
//! touching freed memory, as does a made-up value or a handle of the other kind. The caller
//! owns each handle from `create` until `destroy`; a handle not destroyed lives until the
//! process exits (the planner thread of a controller keeps running until it is stopped).
//!
//! The library never keeps a pointer the caller gave it: strings, observation fields and
//! options are read (copied) during the call, and the caller's buffers may be reused as
//! soon as it returns. Strings the library returns are its own: `zplan_status_name`'s are
//! static; `zplan_last_error_message`'s is valid until the next zplan call on the same
//! thread; `ZplanFieldInfo::name` until its handle is destroyed. Never free them.
//!
//! # Threads
//!
//! Every function may be called from any thread, and calls on one handle from several
//! threads are safe (each handle synchronises internally). The intended split for a
//! controller:
//!
//! - **control thread** (real-time): `zplan_controller_push_observation`,
//!   `zplan_controller_latest_action`, `zplan_controller_stats`,
//!   `zplan_controller_set_deadline`, `zplan_controller_info`. None of them waits for the
//!   planner: they copy data and take an internal lock that other calls hold only for a
//!   map lookup or a pointer swap, never while planning, loading a model or joining a thread.
//!   Push copies the observation (one allocation per field).
//! - **setup thread** (may block): `create` (loads the model), the first
//!   `zplan_controller_set_goal` (encodes the goal on the calling thread; later goals are
//!   handed to the planner thread and return at once), `zplan_controller_stop` and
//!   `zplan_controller_destroy` (wait for the current plan to finish).
//!
//! The planner runs on its own thread (`zplan-planner`), plus `sim_threads - 1` rollout
//! threads for `Sim`. Environment calls run the simulation on the calling thread.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod controller;
pub mod env;
pub mod fields;
mod handle;
pub mod status;

pub use controller::{
    zplan_controller_create, zplan_controller_create_from_entry, zplan_controller_destroy,
    zplan_controller_field, zplan_controller_info, zplan_controller_latest_action,
    zplan_controller_options_default, zplan_controller_push_observation,
    zplan_controller_set_deadline, zplan_controller_set_goal, zplan_controller_stats,
    zplan_controller_stop, ZplanController, ZplanControllerInfo, ZplanControllerOptions,
    ZplanControllerReport, ZplanControllerStats,
};
pub use env::{
    zplan_env_action_bounds, zplan_env_create, zplan_env_destroy, zplan_env_distance_to_goal,
    zplan_env_field, zplan_env_goal_observation, zplan_env_info, zplan_env_observe,
    zplan_env_reset, zplan_env_step, zplan_env_steps, zplan_env_success, ZplanEnv, ZplanEnvInfo,
};
pub use fields::{ZplanDtype, ZplanField, ZplanFieldInfo, ZPLAN_MAX_NDIM, ZPLAN_TRUE_STATE_FIELD};
pub use status::{zplan_last_error_copy, zplan_last_error_message, zplan_status_name, ZplanStatus};

#[cfg(test)]
mod tests;
