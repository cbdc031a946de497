//! A scenario environment (a Rapier simulation) to drive a controller against.

use crate::fields::{
    c_names, field_info, slice, slice_mut, str_arg, write_observation, write_out, ZplanField,
    ZplanFieldInfo,
};
use crate::handle::Registry;
use crate::status::{ffi, Error, Result, ZplanStatus};
use std::ffi::{c_char, CString};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use zplan_sim::{Env, EnvSpec, ScenarioConfig};

/// Opaque handle to a scenario environment (see "Handles" in the crate docs: an id, never
/// dereferenced; destroyed with `zplan_env_destroy`).
pub struct ZplanEnv {
    _private: [u8; 0],
}

/// Static facts about an environment (`zplan_env_info`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZplanEnvInfo {
    /// Observation fields (query each with `zplan_env_field`).
    pub num_fields: usize,
    /// Action entries.
    pub action_dim: usize,
    /// Entries of the true simulator state (the `ZPLAN_TRUE_STATE_FIELD` field's size).
    pub state_dim: usize,
    /// Episode step limit (control periods).
    pub max_steps: u32,
    /// Simulated seconds per `zplan_env_step`.
    pub control_dt: f64,
}

pub(crate) struct EnvEntry {
    env: Mutex<Box<dyn Env>>,
    spec: EnvSpec,
    names: Vec<CString>,
}

impl EnvEntry {
    fn env(&self) -> MutexGuard<'_, Box<dyn Env>> {
        // A panic inside an environment method is caught at the boundary; the environment
        // stays usable (at worst mid-step), so a poisoned lock is taken over.
        self.env.lock().unwrap_or_else(|p| p.into_inner())
    }
}

static ENVS: Registry<EnvEntry> = Registry::new("environment");

fn env_of(env: *const ZplanEnv) -> Result<Arc<EnvEntry>> {
    ENVS.get(env, "env")
}

/// Builds the environment of a scenario RON file (e.g. `"scenarios/reach.ron"`; a relative
/// path is taken from the current directory) and resets it with seed 0.
///
/// On success `*out` receives the handle; on failure it is set to NULL (when `out` is not
/// NULL). Errors: `ZPLAN_STATUS_CONFIG` for a file that cannot be read, parsed (with line and
/// column) or validated, `ZPLAN_STATUS_SIMULATION` when the scenario cannot be built.
///
/// # Safety
/// `scenario_path` must be NULL or a NUL-terminated string; `out` must be NULL or point to a
/// writable `ZplanEnv *`.
#[no_mangle]
pub unsafe extern "C" fn zplan_env_create(
    scenario_path: *const c_char,
    out: *mut *mut ZplanEnv,
) -> ZplanStatus {
    ffi("zplan_env_create", || {
        if !out.is_null() {
            // SAFETY: `out` is not NULL and writable by the contract.
            unsafe { out.write(std::ptr::null_mut()) };
        }
        // SAFETY: NUL-terminated or NULL by the contract.
        let path = unsafe { str_arg(scenario_path, "scenario_path") }?;
        if out.is_null() {
            return Err(Error::null("out"));
        }
        let config = ScenarioConfig::load(Path::new(path)).map_err(Error::config)?;
        let mut env = config
            .build()
            .map_err(|e| Error::new(ZplanStatus::Simulation, e.to_string()))?;
        env.reset(0)
            .map_err(|e| Error::new(ZplanStatus::Simulation, e.to_string()))?;
        let spec = env.spec().clone();
        let names = c_names(&spec.observation);
        let handle = ENVS.insert(EnvEntry {
            env: Mutex::new(env),
            spec,
            names,
        })?;
        // SAFETY: `out` is not NULL (checked) and writable by the contract.
        unsafe { write_out(out, handle, "out") }?;
        Ok(ZplanStatus::Ok)
    })
}

/// Destroys an environment. A second destroy, or any use afterwards, returns
/// `ZPLAN_STATUS_INVALID_HANDLE`. A call running on another thread with this handle finishes
/// first (the memory is freed after it).
///
/// # Safety
/// Any pointer value is accepted (it is only looked up, never dereferenced).
#[no_mangle]
pub unsafe extern "C" fn zplan_env_destroy(env: *mut ZplanEnv) -> ZplanStatus {
    ffi("zplan_env_destroy", || {
        ENVS.remove(env, "env")?;
        Ok(ZplanStatus::Ok)
    })
}

/// Writes the environment's sizes and clocks to `*out`.
///
/// # Safety
/// `out` must be NULL or point to a writable `ZplanEnvInfo`.
#[no_mangle]
pub unsafe extern "C" fn zplan_env_info(env: *mut ZplanEnv, out: *mut ZplanEnvInfo) -> ZplanStatus {
    ffi("zplan_env_info", || {
        let e = env_of(env)?;
        let info = ZplanEnvInfo {
            num_fields: e.spec.observation.fields().len(),
            action_dim: e.spec.action_dim(),
            state_dim: e.spec.state_dim(),
            max_steps: e.spec.max_steps,
            control_dt: f64::from(e.spec.control_dt),
        };
        // SAFETY: NULL or writable by the contract.
        unsafe { write_out(out, info, "out") }?;
        Ok(ZplanStatus::Ok)
    })
}

/// Describes observation field `index` (0 to `num_fields - 1`, in the scenario's order).
/// `out->name` stays valid until the environment is destroyed.
///
/// # Safety
/// `out` must be NULL or point to a writable `ZplanFieldInfo`.
#[no_mangle]
pub unsafe extern "C" fn zplan_env_field(
    env: *mut ZplanEnv,
    index: usize,
    out: *mut ZplanFieldInfo,
) -> ZplanStatus {
    ffi("zplan_env_field", || {
        let e = env_of(env)?;
        let info = field_info(&e.spec.observation, &e.names, index)?;
        // SAFETY: NULL or writable by the contract.
        unsafe { write_out(out, info, "out") }?;
        Ok(ZplanStatus::Ok)
    })
}

/// Copies the action bounds into `low` and `high`, each `len` floats; `len` must be the
/// action dimension (`ZPLAN_STATUS_WRONG_SIZE` otherwise).
///
/// # Safety
/// `low` and `high` must be NULL or point to `len` writable floats each.
#[no_mangle]
pub unsafe extern "C" fn zplan_env_action_bounds(
    env: *mut ZplanEnv,
    low: *mut f32,
    high: *mut f32,
    len: usize,
) -> ZplanStatus {
    ffi("zplan_env_action_bounds", || {
        let e = env_of(env)?;
        if low.is_null() {
            return Err(Error::null("low"));
        }
        if high.is_null() {
            return Err(Error::null("high"));
        }
        check_action_len(len, e.spec.action_dim(), "len")?;
        // SAFETY: not NULL, `len` writable floats by the contract.
        let lo = unsafe { slice_mut(low, len, "low") }?;
        for (dst, src) in lo.iter_mut().zip(&e.spec.action_low) {
            *dst = *src;
        }
        // SAFETY: as above.
        let hi = unsafe { slice_mut(high, len, "high") }?;
        for (dst, src) in hi.iter_mut().zip(&e.spec.action_high) {
            *dst = *src;
        }
        Ok(ZplanStatus::Ok)
    })
}

/// `WrongSize` unless `len == dim`.
pub(crate) fn check_action_len(len: usize, dim: usize, arg: &str) -> Result<()> {
    if len == dim {
        Ok(())
    } else {
        Err(Error::new(
            ZplanStatus::WrongSize,
            format!("`{arg}` is {len}, but actions have {dim} entries"),
        ))
    }
}

/// Starts a new episode: samples a start state and a goal from `seed` (deterministic).
///
/// # Safety
/// Any handle value is accepted.
#[no_mangle]
pub unsafe extern "C" fn zplan_env_reset(env: *mut ZplanEnv, seed: u64) -> ZplanStatus {
    ffi("zplan_env_reset", || {
        let e = env_of(env)?;
        e.env()
            .reset(seed)
            .map_err(|err| Error::new(ZplanStatus::Simulation, err.to_string()))?;
        Ok(ZplanStatus::Ok)
    })
}

/// Writes the current observation into the caller's `n_fields` buffers. Each field names the
/// part it wants (any subset of the spec's fields, plus `ZPLAN_TRUE_STATE_FIELD` for the true
/// state) and must have that field's dtype and shape (`ZPLAN_STATUS_WRONG_SIZE` otherwise);
/// nothing is written unless every field checks out. The same array can then be passed to
/// `zplan_controller_push_observation`.
///
/// # Safety
/// `fields` must be NULL or point to `n_fields` `ZplanField` with valid `name` strings,
/// `shape` arrays of `ndim` entries, and `data` writable for the field's elements.
#[no_mangle]
pub unsafe extern "C" fn zplan_env_observe(
    env: *mut ZplanEnv,
    fields: *const ZplanField,
    n_fields: usize,
) -> ZplanStatus {
    ffi("zplan_env_observe", || {
        let e = env_of(env)?;
        let (obs, state) = {
            let g = e.env();
            (g.observe(), g.state())
        };
        // SAFETY: forwarded contract.
        unsafe { write_observation(fields, n_fields, &e.spec.observation, &obs, &state) }?;
        Ok(ZplanStatus::Ok)
    })
}

/// Like `zplan_env_observe`, for what the robot would observe at the goal (and the goal's
/// true state): what `zplan_controller_set_goal` takes.
///
/// # Safety
/// As `zplan_env_observe`.
#[no_mangle]
pub unsafe extern "C" fn zplan_env_goal_observation(
    env: *mut ZplanEnv,
    fields: *const ZplanField,
    n_fields: usize,
) -> ZplanStatus {
    ffi("zplan_env_goal_observation", || {
        let e = env_of(env)?;
        let (obs, state) = {
            let g = e.env();
            (g.goal_observation(), g.goal_state())
        };
        // SAFETY: forwarded contract.
        unsafe { write_observation(fields, n_fields, &e.spec.observation, &obs, &state) }?;
        Ok(ZplanStatus::Ok)
    })
}

/// Advances the simulation one control period under `action` (`len` must be the action
/// dimension). Out-of-bounds entries are clipped; a non-finite entry is refused with
/// `ZPLAN_STATUS_INVALID_ARGUMENT` and the state is unchanged.
///
/// # Safety
/// `action` must be NULL or point to `len` readable floats.
#[no_mangle]
pub unsafe extern "C" fn zplan_env_step(
    env: *mut ZplanEnv,
    action: *const f32,
    len: usize,
) -> ZplanStatus {
    ffi("zplan_env_step", || {
        let e = env_of(env)?;
        if action.is_null() {
            return Err(Error::null("action"));
        }
        check_action_len(len, e.spec.action_dim(), "len")?;
        // SAFETY: not NULL, `len` readable floats by the contract.
        let a = unsafe { slice(action, len, "action") }?;
        if let Some((i, x)) = a.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(Error::invalid(format!(
                "action[{i}] is {x}, expected a finite number"
            )));
        }
        e.env()
            .step(a)
            .map_err(|err| Error::new(ZplanStatus::Simulation, err.to_string()))?;
        Ok(ZplanStatus::Ok)
    })
}

/// Whether the current state satisfies the scenario's success predicate.
///
/// # Safety
/// `out` must be NULL or point to a writable `bool`.
#[no_mangle]
pub unsafe extern "C" fn zplan_env_success(env: *mut ZplanEnv, out: *mut bool) -> ZplanStatus {
    ffi("zplan_env_success", || {
        let e = env_of(env)?;
        let ok = e.env().success();
        // SAFETY: NULL or writable by the contract.
        unsafe { write_out(out, ok, "out") }?;
        Ok(ZplanStatus::Ok)
    })
}

/// Task-space distance to the goal (metres; push adds the scaled yaw error).
///
/// # Safety
/// `out` must be NULL or point to a writable `float`.
#[no_mangle]
pub unsafe extern "C" fn zplan_env_distance_to_goal(
    env: *mut ZplanEnv,
    out: *mut f32,
) -> ZplanStatus {
    ffi("zplan_env_distance_to_goal", || {
        let e = env_of(env)?;
        let d = e.env().distance_to_goal();
        // SAFETY: NULL or writable by the contract.
        unsafe { write_out(out, d, "out") }?;
        Ok(ZplanStatus::Ok)
    })
}

/// Control steps taken since the last reset.
///
/// # Safety
/// `out` must be NULL or point to a writable `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn zplan_env_steps(env: *mut ZplanEnv, out: *mut u32) -> ZplanStatus {
    ffi("zplan_env_steps", || {
        let e = env_of(env)?;
        let n = e.env().steps();
        // SAFETY: NULL or writable by the contract.
        unsafe { write_out(out, n, "out") }?;
        Ok(ZplanStatus::Ok)
    })
}
