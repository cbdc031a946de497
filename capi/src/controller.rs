//! The real-time controller: a planner on its own thread (`zplan_planner::Controller`).

use crate::fields::{
    c_names, field_info, opt_str_arg, read_observation, slice_mut, str_arg, write_out, ZplanField,
    ZplanFieldInfo,
};
use crate::handle::Registry;
use crate::status::{ffi, Error, Result, ZplanStatus};
use std::ffi::{c_char, CString};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use zplan::suite::{Entry, ScenarioRef};
use zplan_models::{load_model_with, DeviceChoice, LoadOptions, ModelSpec, Precision, WorldModel};
use zplan_obs::{ObsSpec, Observation, STATE};
use zplan_planner::{
    duration_percentile, ActionBounds, Controller, ControllerOptions, ControllerReport,
    EnergyConfig, Mpc, MpcConfig, PlannerConfig, PlannerError,
};
use zplan_sim::ScenarioConfig;

/// Longest accepted control period and deadline, in milliseconds (one hour).
const MAX_MS: f64 = 3_600_000.0;
/// Largest accepted lookahead and action block, in control periods.
const MAX_PERIODS: u32 = 1000;
/// Most rollout threads the simulator-backed model may be given.
const MAX_SIM_THREADS: u32 = 1024;

/// Opaque handle to a controller (see "Handles" in the crate docs: an id, never
/// dereferenced; destroyed with `zplan_controller_destroy`).
pub struct ZplanController {
    _private: [u8; 0],
}

/// How a controller plans. Start from `zplan_controller_options_default()` and change what
/// you need; pass NULL to a `create` function for the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZplanControllerOptions {
    /// Period of the caller's control loop in milliseconds (> 0; default 50, i.e. 20 Hz).
    /// `zplan_controller_latest_action` steps through the latest plan at this rate.
    pub control_period_ms: f64,
    /// Each plan must be published within this many milliseconds of its observation's
    /// arrival (the planner cuts iterations to meet it). 0 (the default): the MPC settings'
    /// `deadline_ms` if they have one, else 80 % of the control period. Change it later with
    /// `zplan_controller_set_deadline`.
    pub deadline_ms: f64,
    /// Delay compensation in control periods (default 1): each plan starts from the state
    /// predicted this far ahead, so a plan published within `lookahead` periods starts on
    /// time. 0 plans from the observed state. At most 1000.
    pub lookahead: u32,
    /// Control steps each planned action is held; 0 (the default): the MPC settings'
    /// `action_block`. The controller replans once per block. At most 1000.
    pub action_block: u32,
    /// Cap on planner iterations per plan; 0 (the default): the MPC settings' `iterations`,
    /// else the planner's own count.
    pub iterations: u32,
    /// Threads the simulator-backed model (`Sim`) rolls out on; 0 (the default): every core.
    /// Other models ignore it. At most 1024.
    pub sim_threads: u32,
    /// Device for learned models: `"auto"` (CUDA when available), `"cpu"`, `"cuda"`,
    /// `"cuda:N"`; NULL (the default) means `"auto"`. Only read during `create`.
    pub device: *const c_char,
}

impl Default for ZplanControllerOptions {
    fn default() -> Self {
        ZplanControllerOptions {
            control_period_ms: 50.0,
            deadline_ms: 0.0,
            lookahead: 1,
            action_block: 0,
            iterations: 0,
            sim_threads: 0,
            device: std::ptr::null(),
        }
    }
}

/// Static facts about a controller, with its options resolved (`zplan_controller_info`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZplanControllerInfo {
    /// Observation fields it takes (query each with `zplan_controller_field`).
    pub num_fields: usize,
    /// Action entries (the length `zplan_controller_latest_action` needs).
    pub action_dim: usize,
    /// Entries of the scenario's true state (`ZPLAN_TRUE_STATE_FIELD`).
    pub state_dim: usize,
    /// Whether the model plans from the true simulator state (`Sim`): then push
    /// observations and goals with a `ZPLAN_TRUE_STATE_FIELD` field, unless the scenario
    /// observes its whole state as `state`.
    pub needs_true_state: bool,
    /// Control period in milliseconds.
    pub control_period_ms: f64,
    /// Current per-plan deadline in milliseconds.
    pub deadline_ms: f64,
    /// Control steps each planned action is held.
    pub action_block: u32,
    /// Delay compensation in control periods.
    pub lookahead: u32,
}

/// Counters of a controller (a snapshot; `zplan_controller_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZplanControllerStats {
    /// Observations pushed.
    pub observations: u64,
    /// Observations replaced by a newer one before the planner took them.
    pub dropped_observations: u64,
    /// Plans published.
    pub plans: u64,
    /// Plans published later than the deadline after their observation arrived.
    pub deadline_misses: u64,
    /// Plans (or goal encodings) that failed on the planner thread.
    pub errors: u64,
}

/// What a stopped controller reports (`zplan_controller_stop`). Latencies are NaN when no
/// plan was made.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZplanControllerReport {
    /// Final counters.
    pub stats: ZplanControllerStats,
    /// Median observation-arrival-to-publication latency of a plan, in milliseconds
    /// (includes waiting for the planner to finish the previous plan).
    pub latency_p50_ms: f64,
    /// 95th percentile of that latency.
    pub latency_p95_ms: f64,
    /// 99th percentile of that latency.
    pub latency_p99_ms: f64,
    /// Largest latency.
    pub latency_max_ms: f64,
    /// Median compute time of a plan (encode, prediction, planning), in milliseconds.
    pub plan_time_p50_ms: f64,
    /// 95th percentile of the compute time.
    pub plan_time_p95_ms: f64,
}

impl Default for ZplanControllerReport {
    fn default() -> Self {
        ZplanControllerReport {
            stats: ZplanControllerStats::default(),
            latency_p50_ms: f64::NAN,
            latency_p95_ms: f64::NAN,
            latency_p99_ms: f64::NAN,
            latency_max_ms: f64::NAN,
            plan_time_p50_ms: f64::NAN,
            plan_time_p95_ms: f64::NAN,
        }
    }
}

fn stats_of(s: zplan_planner::ControllerStats) -> ZplanControllerStats {
    ZplanControllerStats {
        observations: s.observations,
        dropped_observations: s.dropped_observations,
        plans: s.plans,
        deadline_misses: s.deadline_misses,
        errors: s.errors,
    }
}

fn report_of(r: &ControllerReport) -> ZplanControllerReport {
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    ZplanControllerReport {
        stats: stats_of(r.stats),
        latency_p50_ms: ms(r.latency_percentile(50.0)),
        latency_p95_ms: ms(r.latency_percentile(95.0)),
        latency_p99_ms: ms(r.latency_percentile(99.0)),
        latency_max_ms: ms(r.latencies.iter().max().copied()),
        plan_time_p50_ms: ms(duration_percentile(&r.plan_times, 50.0)),
        plan_time_p95_ms: ms(duration_percentile(&r.plan_times, 95.0)),
    }
}

/// Where a controller is in its life.
enum Phase {
    /// Created; the planner thread starts with the first goal.
    Pending,
    /// Planning on its thread.
    Running(Controller),
    /// `zplan_controller_stop` is joining the thread.
    Stopping,
    /// Stopped, with its final report.
    Stopped(ZplanControllerReport),
}

/// What every call may change, behind a lock that is only ever held for a moment (never
/// while planning, loading or joining a thread).
struct Live {
    phase: Phase,
    deadline: Duration,
}

pub(crate) struct ControllerEntry {
    model: Arc<dyn WorldModel>,
    planner: PlannerConfig,
    energy: EnergyConfig,
    bounds: ActionBounds,
    obs: ObsSpec,
    names: Vec<CString>,
    state_dim: usize,
    options: ControllerOptions,
    /// Serialises the slow transitions (starting the thread on the first goal, stopping).
    lifecycle: Mutex<()>,
    live: Mutex<Live>,
}

impl ControllerEntry {
    fn live(&self) -> MutexGuard<'_, Live> {
        // Every critical section leaves `Live` consistent (single assignments), so a
        // poisoned lock is taken over.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lifecycle(&self) -> MutexGuard<'_, ()> {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopped() -> Error {
        Error::new(
            ZplanStatus::Stopped,
            "the controller was stopped (zplan_controller_stop)",
        )
    }

    /// Reads and checks an observation from caller fields.
    ///
    /// # Safety
    /// As [`read_observation`].
    unsafe fn observation(&self, fields: *const ZplanField, n: usize) -> Result<Observation> {
        // SAFETY: forwarded contract.
        let obs = unsafe { read_observation(fields, n, &self.obs, self.state_dim) }?;
        // The simulator-backed model falls back to a `state` field that is the whole state.
        let whole_state = obs.f32(STATE).map(<[f32]>::len) == Some(self.state_dim);
        if self.model.needs_true_state() && obs.true_state().is_none() && !whole_state {
            return Err(Error::new(
                ZplanStatus::InvalidObservation,
                format!(
                    "model `{}` plans from the true simulator state, which this scenario does \
                     not observe: add a `{}` field (f32 [{}])",
                    self.model.name(),
                    crate::fields::ZPLAN_TRUE_STATE_FIELD,
                    self.state_dim
                ),
            ));
        }
        Ok(obs)
    }

    /// Starts the planner thread with a first goal, or hands a running one a new goal.
    fn set_goal(&self, goal: Observation, seed: u64) -> Result<()> {
        let _transition = self.lifecycle();
        let deadline = {
            let live = self.live();
            match &live.phase {
                Phase::Running(c) => {
                    c.set_goal(&goal, seed);
                    return Ok(());
                }
                Phase::Stopping | Phase::Stopped(_) => return Err(Self::stopped()),
                Phase::Pending => live.deadline,
            }
        };
        // Encoding the goal may take a while: not under the `live` lock, so that stats and
        // deadline changes from other threads do not wait.
        let controller = Controller::spawn(
            self.model.clone(),
            &self.planner,
            self.energy.clone(),
            self.bounds.clone(),
            &goal,
            seed,
            ControllerOptions {
                plan_deadline: deadline,
                ..self.options.clone()
            },
        )
        .map_err(|e| match e {
            PlannerError::Controller(_) => Error::new(ZplanStatus::Internal, e.to_string()),
            other => Error::new(ZplanStatus::InvalidObservation, format!("goal: {other}")),
        })?;
        let mut live = self.live();
        if live.deadline != deadline {
            controller.set_plan_deadline(live.deadline);
        }
        live.phase = Phase::Running(controller);
        Ok(())
    }

    /// Stops the planner thread (waiting for its current plan) and returns the final report.
    /// Stopping again returns the same report.
    fn stop(&self) -> Result<ZplanControllerReport> {
        let _transition = self.lifecycle();
        let phase = std::mem::replace(&mut self.live().phase, Phase::Stopping);
        let (report, result) = match phase {
            Phase::Running(c) => match c.stop() {
                Ok(r) => (report_of(&r), Ok(())),
                Err(e) => (
                    ZplanControllerReport::default(),
                    Err(Error::new(ZplanStatus::Internal, e.to_string())),
                ),
            },
            Phase::Stopped(r) => (r, Ok(())),
            Phase::Pending | Phase::Stopping => (ZplanControllerReport::default(), Ok(())),
        };
        self.live().phase = Phase::Stopped(report);
        result.map(|()| report)
    }

    fn info(&self) -> ZplanControllerInfo {
        let deadline = self.live().deadline;
        ZplanControllerInfo {
            num_fields: self.obs.fields().len(),
            action_dim: self.bounds.dim(),
            state_dim: self.state_dim,
            needs_true_state: self.model.needs_true_state(),
            control_period_ms: self.options.control_dt.as_secs_f64() * 1e3,
            deadline_ms: deadline.as_secs_f64() * 1e3,
            action_block: u32::try_from(self.options.action_block).unwrap_or(u32::MAX),
            lookahead: u32::try_from(self.options.lookahead).unwrap_or(u32::MAX),
        }
    }
}

static CONTROLLERS: Registry<ControllerEntry> = Registry::new("controller");

pub(crate) fn controller_of(ctl: *const ZplanController) -> Result<Arc<ControllerEntry>> {
    CONTROLLERS.get(ctl, "ctl")
}

impl ControllerEntry {
    /// What the controller's model computes in (the entry's `precision`).
    #[cfg(test)]
    pub(crate) fn model_precision(&self) -> Precision {
        self.model.precision()
    }
}

/// Milliseconds as a duration, refusing negative, non-finite and huge values.
fn millis(ms: f64, what: &str) -> Result<Duration> {
    if !(0.0..=MAX_MS).contains(&ms) {
        return Err(Error::invalid(format!(
            "{what} = {ms} ms: expected a finite number from 0 to {MAX_MS}"
        )));
    }
    Duration::try_from_secs_f64(ms / 1e3)
        .map_err(|e| Error::invalid(format!("{what} = {ms} ms: {e}")))
}

/// The options with their defaults filled in from the MPC settings.
fn resolve(
    opts: &ZplanControllerOptions,
    device: Option<&str>,
    mpc: &MpcConfig,
) -> Result<(ControllerOptions, DeviceChoice, usize)> {
    let control_dt = millis(opts.control_period_ms, "options.control_period_ms")?;
    if control_dt.is_zero() {
        return Err(Error::invalid(
            "options.control_period_ms = 0: the control period must be positive",
        ));
    }
    let plan_deadline = if opts.deadline_ms == 0.0 {
        match mpc.deadline_ms {
            Some(ms) => millis(ms, "mpc.deadline_ms")?,
            None => control_dt.mul_f64(0.8),
        }
    } else {
        millis(opts.deadline_ms, "options.deadline_ms")?
    };
    for (name, value) in [
        ("lookahead", opts.lookahead),
        ("action_block", opts.action_block),
    ] {
        if value > MAX_PERIODS {
            return Err(Error::invalid(format!(
                "options.{name} = {value}: at most {MAX_PERIODS} control periods"
            )));
        }
    }
    if opts.sim_threads > MAX_SIM_THREADS {
        return Err(Error::invalid(format!(
            "options.sim_threads = {}: at most {MAX_SIM_THREADS}",
            opts.sim_threads
        )));
    }
    let action_block = match opts.action_block {
        0 => mpc.action_block.max(1),
        b => b as usize,
    };
    let iterations = match opts.iterations {
        0 => mpc.iterations,
        n => Some(n),
    };
    let device = match device {
        None => DeviceChoice::Auto,
        Some(d) => {
            DeviceChoice::from_str(d).map_err(|e| Error::invalid(format!("options.device: {e}")))?
        }
    };
    let sim_threads = match opts.sim_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    Ok((
        ControllerOptions {
            control_dt,
            plan_deadline,
            iterations,
            action_block,
            lookahead: opts.lookahead as usize,
        },
        device,
        sim_threads,
    ))
}

/// Everything a controller needs, checked as far as possible without a goal: a configuration
/// error surfaces at creation, not at the first goal.
fn build(
    scenario: &ScenarioConfig,
    model: &ModelSpec,
    planner: PlannerConfig,
    energy: EnergyConfig,
    mpc: &MpcConfig,
    opts: &ZplanControllerOptions,
    (device, precision): (Option<&str>, Precision),
) -> Result<ControllerEntry> {
    planner
        .validate()
        .map_err(|e| Error::config(format!("planner: {e}")))?;
    energy
        .validate()
        .map_err(|e| Error::config(format!("energy: {e}")))?;
    mpc.validate_for_horizon(planner.horizon())
        .map_err(Error::config)?;
    let (options, device, sim_threads) = resolve(opts, device, mpc)?;
    model
        .check_precision(precision)
        .map_err(|e| Error::config(format!("precision: {e}")))?;
    let load = LoadOptions {
        device,
        precision,
        sim_threads,
    };
    let model = load_model_with(model, scenario, &load)
        .map_err(|e| Error::new(ZplanStatus::Model, e.to_string()))?;
    let spec = scenario.spec();
    let bounds = ActionBounds::new(spec.action_low.clone(), spec.action_high.clone())
        .map_err(Error::config)?;
    // What `Controller::spawn` builds, minus the goal.
    let probe = planner
        .build(bounds.clone(), energy.clone(), 0)
        .map_err(Error::config)?;
    Mpc::new(
        model.clone(),
        probe,
        MpcConfig {
            replan_every: options.action_block,
            action_block: options.action_block,
            iterations: options.iterations,
            deadline_ms: None,
            warm_start: true,
        },
    )
    .map_err(Error::config)?;
    let deadline = options.plan_deadline;
    Ok(ControllerEntry {
        model,
        planner,
        energy,
        bounds,
        names: c_names(&spec.observation),
        obs: spec.observation.clone(),
        state_dim: spec.state_dim(),
        options,
        lifecycle: Mutex::new(()),
        live: Mutex::new(Live {
            phase: Phase::Pending,
            deadline,
        }),
    })
}

/// The caller's options (NULL: the defaults) and their device string.
///
/// # Safety
/// `options` must be NULL or point to a readable `ZplanControllerOptions` whose `device` is
/// NULL or a NUL-terminated string valid for `'a`.
unsafe fn options_arg<'a>(
    options: *const ZplanControllerOptions,
) -> Result<(ZplanControllerOptions, Option<&'a str>)> {
    if options.is_null() {
        return Ok((ZplanControllerOptions::default(), None));
    }
    // SAFETY: not NULL and readable by the contract; `read_unaligned` needs no alignment and
    // the struct is plain data (any bit pattern of its fields is valid).
    let opts = unsafe { options.read_unaligned() };
    // SAFETY: NULL or NUL-terminated by the contract.
    let device = unsafe { opt_str_arg(opts.device, "options.device") }?;
    Ok((opts, device))
}

/// Parses one suite entry, as written inside a suite's `entries: [...]`.
fn parse_entry(text: &str) -> Result<Entry> {
    if text.len() as u64 > zplan_io::MAX_CONFIG_BYTES {
        return Err(Error::config(format!(
            "entry_ron: {} bytes, more than the {} a configuration may have",
            text.len(),
            zplan_io::MAX_CONFIG_BYTES
        )));
    }
    zplan_io::check_nesting("entry_ron", text, zplan_io::MAX_NESTING).map_err(Error::config)?;
    ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .from_str::<Entry>(text)
        .map_err(|e| {
            Error::config(format!(
                "entry_ron:{}:{}: {}",
                e.position.line, e.position.col, e.code
            ))
        })
}

/// Registers a new controller and writes its handle.
///
/// # Safety
/// `out` must be NULL or point to a writable `ZplanController *`.
unsafe fn register(entry: ControllerEntry, out: *mut *mut ZplanController) -> Result<ZplanStatus> {
    let handle = CONTROLLERS.insert(entry)?;
    // SAFETY: forwarded contract.
    if let Err(e) = unsafe { write_out(out, handle, "out") } {
        let _ = CONTROLLERS.remove(handle, "out");
        return Err(e);
    }
    Ok(ZplanStatus::Ok)
}

/// The defaults of every option (50 ms period, deadline from the MPC settings or 80 % of
/// the period, lookahead 1, action block and iterations from the MPC settings, all cores for
/// `Sim`, device auto). Never fails.
#[no_mangle]
pub extern "C" fn zplan_controller_options_default() -> ZplanControllerOptions {
    ZplanControllerOptions::default()
}

/// Creates a controller from one suite entry in RON: the text of one element of a suite's
/// `entries: [...]` list (see scenarios/default.ron), e.g.
/// `(name: "reach/sim", scenario: File("reach.ron"), model: Sim, planner: Cem(samples: 32,
/// elites: 6, iterations: 3, horizon: 5), energy: (metric: L2, reduction: Sum), mpc:
/// (replan_every: 2, action_block: 2))`. The struct name `Entry` may be written in front of the
/// parentheses.
///
/// Relative paths in it (`File(...)` scenarios, `Jepa(...)` and `TorchScript(...)` models) are
/// taken relative to `base_dir`, as a suite's are relative to the suite's folder (pass that
/// folder, e.g. `"scenarios"`); NULL means the current directory. The entry's scenario gives
/// the observation spec and the action bounds. Of its MPC settings the controller uses
/// `action_block`, `iterations` and `deadline_ms` (see `ZplanControllerOptions`; it replans
/// once per action block as observations arrive, so `replan_every` is only validated);
/// `episodes`, `max_steps` and `seeds_from` are ignored. `options` may be NULL (defaults).
///
/// The model is loaded and the planner built here, so configuration errors come back from
/// this call: `ZPLAN_STATUS_CONFIG` (RON syntax with line and column, invalid values naming
/// the field, an unreadable scenario), `ZPLAN_STATUS_MODEL` (model file missing or not
/// fitting the scenario), `ZPLAN_STATUS_INVALID_ARGUMENT` (options). The planner thread
/// starts with the first `zplan_controller_set_goal`. On failure `*out` is set to NULL.
///
/// # Safety
/// `entry_ron` and `base_dir` must be NULL or NUL-terminated strings; `options` NULL or a
/// readable `ZplanControllerOptions` (its `device` NULL or a NUL-terminated string); `out`
/// NULL or a writable `ZplanController *`.
#[no_mangle]
pub unsafe extern "C" fn zplan_controller_create_from_entry(
    entry_ron: *const c_char,
    base_dir: *const c_char,
    options: *const ZplanControllerOptions,
    out: *mut *mut ZplanController,
) -> ZplanStatus {
    ffi("zplan_controller_create_from_entry", || {
        if !out.is_null() {
            // SAFETY: not NULL and writable by the contract.
            unsafe { out.write(std::ptr::null_mut()) };
        }
        // SAFETY: each pointer is NULL or valid by the contract.
        let (text, base, (opts, device)) = unsafe {
            (
                str_arg(entry_ron, "entry_ron")?,
                opt_str_arg(base_dir, "base_dir")?.unwrap_or("."),
                options_arg(options)?,
            )
        };
        if out.is_null() {
            return Err(Error::null("out"));
        }
        let entry = parse_entry(text)?;
        let base = Path::new(base);
        let in_entry = |msg: String| Error::config(format!("entry `{}`: {msg}", entry.name));
        let scenario = match &entry.scenario {
            ScenarioRef::File(f) => ScenarioConfig::load(&base.join(f))
                .map_err(|e| in_entry(format!("scenario: {e}")))?,
            ScenarioRef::Inline(sc) => {
                sc.validate()
                    .map_err(|e| in_entry(format!("inline scenario: {e}")))?;
                sc.clone()
            }
        };
        let built = build(
            &scenario,
            &entry.model.relative_to(base),
            entry.planner.clone(),
            entry.energy.clone(),
            &entry.mpc,
            &opts,
            (device, entry.precision),
        )
        .map_err(|e| match e.status {
            // Name the entry in problems with its contents, not with the options.
            ZplanStatus::Config | ZplanStatus::Model => {
                Error::new(e.status, format!("entry `{}`: {}", entry.name, e.message))
            }
            _ => e,
        })?;
        // SAFETY: `out` is not NULL (checked) and writable by the contract.
        unsafe { register(built, out) }
    })
}

/// Creates a controller from its parts: the scenario RON file (observation spec, action
/// bounds, and the simulation `Sim` runs), the model (`"sim"`, `"jepa:PATH"`,
/// `"torchscript:PATH"`, or a path ending in `.safetensors`, `.json` or `.pt`), and the
/// planner, energy and MPC settings in RON as a suite entry writes them (`planner_ron` e.g.
/// `"Cem(samples: 32, elites: 6, horizon: 5)"`; `energy_ron` e.g. `"(metric: L2, reduction:
/// Sum)"`; `mpc_ron` e.g. `"(replan_every: 2, action_block: 2)"`). `energy_ron` and `mpc_ron`
/// may be NULL (defaults); relative paths are taken from the current directory. Otherwise as
/// `zplan_controller_create_from_entry`.
///
/// # Safety
/// Every string must be NULL or NUL-terminated; `options` NULL or a readable
/// `ZplanControllerOptions`; `out` NULL or a writable `ZplanController *`.
#[no_mangle]
pub unsafe extern "C" fn zplan_controller_create(
    scenario_path: *const c_char,
    model: *const c_char,
    planner_ron: *const c_char,
    energy_ron: *const c_char,
    mpc_ron: *const c_char,
    options: *const ZplanControllerOptions,
    out: *mut *mut ZplanController,
) -> ZplanStatus {
    ffi("zplan_controller_create", || {
        if !out.is_null() {
            // SAFETY: not NULL and writable by the contract.
            unsafe { out.write(std::ptr::null_mut()) };
        }
        // SAFETY: each pointer is NULL or valid by the contract.
        let (scenario_path, model, planner, energy, mpc, (opts, device)) = unsafe {
            (
                str_arg(scenario_path, "scenario_path")?,
                str_arg(model, "model")?,
                str_arg(planner_ron, "planner_ron")?,
                opt_str_arg(energy_ron, "energy_ron")?,
                opt_str_arg(mpc_ron, "mpc_ron")?,
                options_arg(options)?,
            )
        };
        if out.is_null() {
            return Err(Error::null("out"));
        }
        let scenario = ScenarioConfig::load(Path::new(scenario_path)).map_err(Error::config)?;
        let model = ModelSpec::from_str(model).map_err(|e| Error::config(format!("model: {e}")))?;
        let planner = PlannerConfig::from_ron_str(planner)
            .map_err(|e| Error::config(format!("planner_ron: {e}")))?;
        let energy = match energy {
            Some(text) => EnergyConfig::from_ron_str(text)
                .map_err(|e| Error::config(format!("energy_ron: {e}")))?,
            None => EnergyConfig::default(),
        };
        let mpc = match mpc {
            Some(text) => {
                MpcConfig::from_ron_str(text).map_err(|e| Error::config(format!("mpc_ron: {e}")))?
            }
            None => MpcConfig::default(),
        };
        let built = build(
            &scenario,
            &model,
            planner,
            energy,
            &mpc,
            &opts,
            (device, Precision::Fp32),
        )?;
        // SAFETY: `out` is not NULL (checked) and writable by the contract.
        unsafe { register(built, out) }
    })
}

/// Stops the controller if it runs (waiting for its current plan, as `zplan_controller_stop`)
/// and destroys it. A second destroy, or any use afterwards, returns
/// `ZPLAN_STATUS_INVALID_HANDLE`. A call running on another thread with this handle finishes
/// first. Should stopping fail (`ZPLAN_STATUS_INTERNAL`: the planner thread failed), the
/// handle is destroyed all the same.
///
/// # Safety
/// Any pointer value is accepted (it is only looked up, never dereferenced).
#[no_mangle]
pub unsafe extern "C" fn zplan_controller_destroy(ctl: *mut ZplanController) -> ZplanStatus {
    ffi("zplan_controller_destroy", || {
        let entry = CONTROLLERS.remove(ctl, "ctl")?;
        entry.stop()?;
        Ok(ZplanStatus::Ok)
    })
}

/// Writes the controller's sizes and resolved options to `*out`.
///
/// # Safety
/// `out` must be NULL or point to a writable `ZplanControllerInfo`.
#[no_mangle]
pub unsafe extern "C" fn zplan_controller_info(
    ctl: *mut ZplanController,
    out: *mut ZplanControllerInfo,
) -> ZplanStatus {
    ffi("zplan_controller_info", || {
        let info = controller_of(ctl)?.info();
        // SAFETY: NULL or writable by the contract.
        unsafe { write_out(out, info, "out") }?;
        Ok(ZplanStatus::Ok)
    })
}

/// Describes observation field `index` (0 to `num_fields - 1`) that pushed observations
/// must carry. `out->name` stays valid until the controller is destroyed.
///
/// # Safety
/// `out` must be NULL or point to a writable `ZplanFieldInfo`.
#[no_mangle]
pub unsafe extern "C" fn zplan_controller_field(
    ctl: *mut ZplanController,
    index: usize,
    out: *mut ZplanFieldInfo,
) -> ZplanStatus {
    ffi("zplan_controller_field", || {
        let c = controller_of(ctl)?;
        let info = field_info(&c.obs, &c.names, index)?;
        // SAFETY: NULL or writable by the contract.
        unsafe { write_out(out, info, "out") }?;
        Ok(ZplanStatus::Ok)
    })
}

/// Sets the goal: what the robot would observe at the goal configuration, as named fields
/// checked like `zplan_controller_push_observation`'s; `seed` seeds the planner's sampling
/// for this goal.
///
/// The first call starts the planner thread: it encodes the goal on the calling thread, so
/// an encoding error comes back from this call (and it may take as long as one model
/// evaluation). Later calls hand the goal to the planner thread and return at once; from then
/// on `zplan_controller_latest_action` answers `ZPLAN_STATUS_NO_ACTION_YET` until a plan for
/// the new goal is published, never an action planned for the old one. Do not call this from
/// the real-time thread for the first goal.
///
/// # Safety
/// `fields` must be NULL or point to `n_fields` `ZplanField` with valid `name` strings,
/// `shape` arrays of `ndim` entries, and `data` readable for the field's elements.
#[no_mangle]
pub unsafe extern "C" fn zplan_controller_set_goal(
    ctl: *mut ZplanController,
    fields: *const ZplanField,
    n_fields: usize,
    seed: u64,
) -> ZplanStatus {
    ffi("zplan_controller_set_goal", || {
        let c = controller_of(ctl)?;
        // SAFETY: forwarded contract.
        let goal = unsafe { c.observation(fields, n_fields) }?;
        c.set_goal(goal, seed)?;
        Ok(ZplanStatus::Ok)
    })
}

/// Hands the planner a new observation (named fields: every field of the controller's spec
/// once, with its dtype and shape, finite values; optionally `ZPLAN_TRUE_STATE_FIELD`),
/// replacing one it has not started on yet. The data is copied: the buffers may be reused
/// as soon as this returns. Never waits for the planner.
///
/// Errors: `ZPLAN_STATUS_INVALID_OBSERVATION` naming the field, the expected dtype and shape
/// and the actual ones; `ZPLAN_STATUS_NO_GOAL` before the first `zplan_controller_set_goal`;
/// `ZPLAN_STATUS_STOPPED` after `zplan_controller_stop`.
///
/// # Safety
/// As `zplan_controller_set_goal`.
#[no_mangle]
pub unsafe extern "C" fn zplan_controller_push_observation(
    ctl: *mut ZplanController,
    fields: *const ZplanField,
    n_fields: usize,
) -> ZplanStatus {
    ffi("zplan_controller_push_observation", || {
        let c = controller_of(ctl)?;
        // SAFETY: forwarded contract.
        let obs = unsafe { c.observation(fields, n_fields) }?;
        match &c.live().phase {
            Phase::Running(controller) => controller.push_observation(&obs),
            Phase::Pending => {
                return Err(Error::new(
                    ZplanStatus::NoGoal,
                    "no goal yet: call zplan_controller_set_goal first",
                ))
            }
            Phase::Stopping | Phase::Stopped(_) => return Err(ControllerEntry::stopped()),
        }
        Ok(ZplanStatus::Ok)
    })
}

/// Writes the action the latest plan schedules for now into `action` (`len` must be the
/// action dimension, else `ZPLAN_STATUS_WRONG_SIZE`). Never waits for the planner.
///
/// Returns `ZPLAN_STATUS_OK`, or `ZPLAN_STATUS_NO_ACTION_YET` (not an error; `action` not
/// written) before the first plan for the current goal, including before any goal. The
/// action is step `round((now - t0) / period)` of the plan whose first action is due at `t0`
/// (the observation's arrival plus `lookahead` periods), the previous plan's until then, and
/// the plan's last action once it runs out. After `zplan_controller_stop`:
/// `ZPLAN_STATUS_STOPPED`.
///
/// # Safety
/// `action` must be NULL or point to `len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn zplan_controller_latest_action(
    ctl: *mut ZplanController,
    action: *mut f32,
    len: usize,
) -> ZplanStatus {
    ffi("zplan_controller_latest_action", || {
        let c = controller_of(ctl)?;
        if action.is_null() {
            return Err(Error::null("action"));
        }
        crate::env::check_action_len(len, c.bounds.dim(), "len")?;
        let latest = match &c.live().phase {
            Phase::Running(controller) => controller.latest_action(),
            Phase::Pending => None,
            Phase::Stopping | Phase::Stopped(_) => return Err(ControllerEntry::stopped()),
        };
        let Some(a) = latest else {
            return Ok(ZplanStatus::NoActionYet);
        };
        if a.len() != len {
            return Err(Error::new(
                ZplanStatus::Internal,
                format!("the plan's action has {} entries, expected {len}", a.len()),
            ));
        }
        // SAFETY: not NULL, `len` writable floats by the contract.
        let out = unsafe { slice_mut(action, len, "action") }?;
        for (dst, src) in out.iter_mut().zip(&a) {
            *dst = *src;
        }
        Ok(ZplanStatus::Ok)
    })
}

/// Changes the per-plan deadline (milliseconds, > 0) from the next plan on; the plan in force
/// is kept. Never waits for the planner. `ZPLAN_STATUS_INVALID_ARGUMENT` for 0, a negative, a
/// non-finite or a huge value.
///
/// # Safety
/// Any handle value is accepted.
#[no_mangle]
pub unsafe extern "C" fn zplan_controller_set_deadline(
    ctl: *mut ZplanController,
    deadline_ms: f64,
) -> ZplanStatus {
    ffi("zplan_controller_set_deadline", || {
        let c = controller_of(ctl)?;
        let d = millis(deadline_ms, "deadline_ms")?;
        if d.is_zero() {
            return Err(Error::invalid(
                "deadline_ms = 0: a deadline must be positive",
            ));
        }
        let mut live = c.live();
        match &live.phase {
            Phase::Running(controller) => controller.set_plan_deadline(d),
            Phase::Pending => {}
            Phase::Stopping | Phase::Stopped(_) => return Err(ControllerEntry::stopped()),
        }
        live.deadline = d;
        Ok(ZplanStatus::Ok)
    })
}

/// Writes a snapshot of the counters to `*out` (zeros before the first goal; the final
/// counters after a stop). Never waits for the planner.
///
/// # Safety
/// `out` must be NULL or point to a writable `ZplanControllerStats`.
#[no_mangle]
pub unsafe extern "C" fn zplan_controller_stats(
    ctl: *mut ZplanController,
    out: *mut ZplanControllerStats,
) -> ZplanStatus {
    ffi("zplan_controller_stats", || {
        let c = controller_of(ctl)?;
        let stats = match &c.live().phase {
            Phase::Running(controller) => stats_of(controller.stats()),
            Phase::Stopped(r) => r.stats,
            Phase::Pending | Phase::Stopping => ZplanControllerStats::default(),
        };
        // SAFETY: NULL or writable by the contract.
        unsafe { write_out(out, stats, "out") }?;
        Ok(ZplanStatus::Ok)
    })
}

/// Stops the planner thread after its current plan (this waits for it) and writes the final
/// report to `*report` when `report` is not NULL. The handle stays valid (stats and stop still
/// work; stopping again reports the same) until `zplan_controller_destroy`.
///
/// # Safety
/// `report` must be NULL or point to a writable `ZplanControllerReport`.
#[no_mangle]
pub unsafe extern "C" fn zplan_controller_stop(
    ctl: *mut ZplanController,
    report: *mut ZplanControllerReport,
) -> ZplanStatus {
    ffi("zplan_controller_stop", || {
        let r = controller_of(ctl)?.stop()?;
        if !report.is_null() {
            // SAFETY: not NULL and writable by the contract.
            unsafe { write_out(report, r, "report") }?;
        }
        Ok(ZplanStatus::Ok)
    })
}
