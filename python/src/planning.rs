//! `zplan.Planner`, `zplan.Mpc`, `zplan.Controller` and `zplan.run_suite`.
use crate::convert::{f32_array, planner_error, read_f32, runtime, type_error, value_error};
use crate::env::scenario_from_py;
use crate::model::{device_from_str, Model};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zplan_planner::{
    ActionBounds, Budget, Controller as RsController, ControllerOptions, EnergyConfig,
    Mpc as RsMpc, MpcConfig, Plan, PlannerConfig,
};

/// `value` (a dict) as JSON text, through Python's `json` module.
fn dict_to_json(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let json = value.py().import("json")?;
    json.call_method1("dumps", (value,))?.extract()
}

/// A config given as RON text or as a dict (its JSON form), parsed and validated by `ron`.
fn config_from_py<T: serde::de::DeserializeOwned>(
    value: &Bound<'_, PyAny>,
    what: &str,
    ron: impl Fn(&str) -> zplan_planner::Result<T>,
) -> PyResult<T> {
    if let Ok(s) = value.cast::<PyString>() {
        return ron(&s.to_cow()?).map_err(planner_error);
    }
    if value.cast::<PyDict>().is_ok() {
        let text = dict_to_json(value)?;
        return serde_json::from_str(&text).map_err(|e| value_error(format!("{what}: {e}")));
    }
    Err(type_error(format!(
        "{what}: expected RON text or a dict, got {}",
        value.get_type().name()?
    )))
}

fn energy_from_py(value: Option<&Bound<'_, PyAny>>) -> PyResult<EnergyConfig> {
    match value {
        None => Ok(EnergyConfig::default()),
        Some(v) if v.is_none() => Ok(EnergyConfig::default()),
        Some(v) => {
            let e: EnergyConfig = config_from_py(v, "energy", EnergyConfig::from_ron_str)?;
            e.validate().map_err(planner_error)?;
            Ok(e)
        }
    }
}

/// Action bounds from `bounds` (a `(low, high)` pair of arrays, or an object with `low` and
/// `high`, such as a `gymnasium.spaces.Box`) or from a scenario.
fn bounds_from_py(
    bounds: Option<&Bound<'_, PyAny>>,
    scenario: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<ActionBounds>> {
    if let Some(b) = bounds.filter(|b| !b.is_none()) {
        let (low, high) = if let (Ok(l), Ok(h)) = (b.getattr("low"), b.getattr("high")) {
            (l, h)
        } else if let Ok((l, h)) = b.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>() {
            (l, h)
        } else {
            return Err(type_error(
                "bounds: expected (low, high) arrays or an object with .low and .high",
            ));
        };
        let (low, _) = read_f32(&low, "bounds low")?;
        let (high, _) = read_f32(&high, "bounds high")?;
        return ActionBounds::new(low, high)
            .map(Some)
            .map_err(planner_error);
    }
    if let Some(s) = scenario.filter(|s| !s.is_none()) {
        let config = scenario_from_py(s)?;
        let spec = config.spec();
        return ActionBounds::new(spec.action_low, spec.action_high)
            .map(Some)
            .map_err(planner_error);
    }
    Ok(None)
}

/// A planner: CEM, iCEM, MPPI or gradient descent over action sequences, with its energy,
/// action bounds and seeded random stream.
///
/// Build it from RON (`Planner.from_ron("Cem(samples: 300, elites: 30, horizon: 16)")`) or
/// with keywords (`Planner("cem", samples=300, elites=30, horizon=16)`). Bounds come from
/// `bounds=` (`(low, high)` or a `gymnasium.spaces.Box`) or `scenario=`. `plan` releases the
/// GIL while it computes. The same seed, model and inputs give the same plan as the Rust API.
#[pyclass(module = "zplan._zplan", frozen)]
pub struct Planner {
    config: PlannerConfig,
    energy: EnergyConfig,
    bounds: Option<ActionBounds>,
    seed: u64,
    state: Mutex<Option<Box<dyn zplan_planner::Planner>>>,
}

impl Planner {
    fn make(
        config: PlannerConfig,
        energy: Option<&Bound<'_, PyAny>>,
        bounds: Option<&Bound<'_, PyAny>>,
        scenario: Option<&Bound<'_, PyAny>>,
        seed: u64,
    ) -> PyResult<Self> {
        config.validate().map_err(planner_error)?;
        Ok(Self {
            config,
            energy: energy_from_py(energy)?,
            bounds: bounds_from_py(bounds, scenario)?,
            seed,
            state: Mutex::new(None),
        })
    }

    fn bounds_for(&self, model: &Model) -> PyResult<ActionBounds> {
        let b = self.bounds.clone().ok_or_else(|| {
            value_error(
                "the planner has no action bounds: pass bounds=(low, high) or scenario= when \
                 creating it",
            )
        })?;
        if b.dim() as i64 != model.inner.action_dim() {
            return Err(value_error(format!(
                "the planner's bounds have {} entries, model `{}` takes {} action entries",
                b.dim(),
                model.inner.name(),
                model.inner.action_dim()
            )));
        }
        Ok(b)
    }

    /// A fresh Rust planner with this configuration and `seed`.
    pub(crate) fn build(
        &self,
        model: &Model,
        seed: u64,
    ) -> PyResult<Box<dyn zplan_planner::Planner>> {
        let bounds = self.bounds_for(model)?;
        self.config
            .build(bounds, self.energy.clone(), seed)
            .map_err(planner_error)
    }
}

/// What `Planner.plan` returns.
#[pyclass(module = "zplan._zplan", frozen, get_all)]
pub struct PlanResult {
    /// The planned actions, float32 `[horizon, action_dim]`, within the bounds.
    actions: Py<PyAny>,
    /// Lowest energy among the evaluated candidates.
    best_energy: f32,
    /// Best energy after each iteration (never increases).
    energy_trace: Vec<f32>,
    /// Iterations completed.
    iterations: u32,
    /// Candidate sequences rolled out.
    rollouts: u64,
    /// Whether the deadline cut planning short.
    hit_deadline: bool,
    /// Milliseconds spent encoding the observation and the goal.
    encode_ms: f64,
    /// Milliseconds spent planning (after encoding).
    plan_ms: f64,
    /// `encode_ms + plan_ms` plus the conversions, as seen from Python's call.
    total_ms: f64,
}

#[pymethods]
impl PlanResult {
    fn __repr__(&self) -> String {
        format!(
            "PlanResult(best_energy={:.4}, iterations={}, rollouts={}, plan_ms={:.2})",
            self.best_energy, self.iterations, self.rollouts, self.plan_ms
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn warm_start_from_py(value: &Bound<'_, PyAny>, action_dim: usize) -> PyResult<Plan> {
    let (v, shape) = read_f32(value, "warm_start")?;
    if shape.len() != 2 || shape[1] != action_dim {
        return Err(value_error(format!(
            "warm_start: expected shape [H, {action_dim}], got {}",
            zplan_obs::fmt_shape(&shape)
        )));
    }
    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(value_error(format!(
            "warm_start: entry {i} is {x}, expected a finite number"
        )));
    }
    Plan::new(v, shape[0], action_dim).map_err(planner_error)
}

fn budget(deadline_ms: Option<f64>, iterations: Option<u32>) -> PyResult<Budget> {
    let deadline = match deadline_ms {
        None => None,
        Some(d) if d.is_finite() && d > 0.0 && d < 1e9 => {
            Instant::now().checked_add(Duration::from_secs_f64(d / 1e3))
        }
        Some(d) => {
            return Err(value_error(format!(
                "deadline_ms: expected a positive number of milliseconds, got {d}"
            )))
        }
    };
    Ok(Budget {
        iterations,
        deadline,
    })
}

#[pymethods]
impl Planner {
    /// Keyword constructor: `Planner("cem", samples=300, elites=30, iterations=10, horizon=16)`;
    /// `kind` is `cem`, `icem`, `mppi` or `gradient`, the keywords are that planner's settings
    /// (omitted ones take their defaults). `energy`: RON text or a dict
    /// (`{"metric": "L2", "reduction": "Sum"}`).
    #[new]
    #[pyo3(signature = (kind, *, energy = None, bounds = None, scenario = None, seed = 0, **settings))]
    fn new(
        kind: &str,
        energy: Option<&Bound<'_, PyAny>>,
        bounds: Option<&Bound<'_, PyAny>>,
        scenario: Option<&Bound<'_, PyAny>>,
        seed: u64,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let variant = match kind.to_ascii_lowercase().as_str() {
            "cem" => "Cem",
            "icem" => "ICem",
            "mppi" => "Mppi",
            "gradient" | "grad" => "Gradient",
            other => {
                return Err(value_error(format!(
                    "planner kind `{other}`: expected cem, icem, mppi or gradient"
                )))
            }
        };
        let settings_json = match settings {
            Some(d) => dict_to_json(d.as_any())?,
            None => "{}".into(),
        };
        let text = format!("{{\"{variant}\": {settings_json}}}");
        let config: PlannerConfig = serde_json::from_str(&text)
            .map_err(|e| value_error(format!("planner `{kind}` settings: {e}")))?;
        Self::make(config, energy, bounds, scenario, seed)
    }

    /// From RON text, as suites and `--planner` take it:
    /// `Planner.from_ron("ICem(samples: 200, horizon: 12, beta: 2.0)", scenario=...)`.
    #[staticmethod]
    #[pyo3(signature = (text, *, energy = None, bounds = None, scenario = None, seed = 0))]
    fn from_ron(
        text: &str,
        energy: Option<&Bound<'_, PyAny>>,
        bounds: Option<&Bound<'_, PyAny>>,
        scenario: Option<&Bound<'_, PyAny>>,
        seed: u64,
    ) -> PyResult<Self> {
        let config = PlannerConfig::from_ron_str(text).map_err(planner_error)?;
        Self::make(config, energy, bounds, scenario, seed)
    }

    /// `cem`, `icem`, `mppi` or `gradient`.
    #[getter]
    fn name(&self) -> &'static str {
        self.config.name()
    }

    /// Planned steps.
    #[getter]
    fn horizon(&self) -> usize {
        self.config.horizon()
    }

    /// The seed the random stream starts from.
    #[getter]
    fn seed(&self) -> u64 {
        self.seed
    }

    /// The planner settings as RON.
    fn to_ron(&self) -> String {
        self.config.to_ron_string()
    }

    /// Plans from `obs` towards `goal_obs` (each a dict of fields, or the single field's
    /// array) with `model`. `warm_start`: float `[H, action_dim]` to start from (e.g. the
    /// previous plan shifted); `deadline_ms`: return the best plan found within this time;
    /// `iterations`: override the configured count. Successive calls continue the planner's
    /// random stream (like the Rust API); `reset()` rewinds it.
    #[pyo3(signature = (model, obs, goal_obs, warm_start = None, deadline_ms = None, iterations = None))]
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &self,
        py: Python<'_>,
        model: &Model,
        obs: &Bound<'_, PyAny>,
        goal_obs: &Bound<'_, PyAny>,
        warm_start: Option<&Bound<'_, PyAny>>,
        deadline_ms: Option<f64>,
        iterations: Option<u32>,
    ) -> PyResult<PlanResult> {
        let start = Instant::now();
        let obs = model.read_obs(obs, "obs")?;
        let goal = model.read_obs(goal_obs, "goal_obs")?;
        let action_dim = model.inner.action_dim().max(0) as usize;
        let warm = warm_start
            .filter(|w| !w.is_none())
            .map(|w| warm_start_from_py(w, action_dim))
            .transpose()?;
        let budget = budget(deadline_ms, iterations)?;
        let (out, encode, planned) = py.detach(|| {
            let mut state = self
                .state
                .lock()
                .map_err(|_| runtime("planner poisoned by an earlier failure"))?;
            if state.is_none() {
                *state = Some(self.build(model, self.seed)?);
            }
            let planner = state
                .as_mut()
                .ok_or_else(|| runtime("planner state missing"))?;
            if planner.action_dim() as i64 != model.inner.action_dim() {
                return Err(value_error(format!(
                    "the planner plans {} action entries, model `{}` takes {}",
                    planner.action_dim(),
                    model.inner.name(),
                    model.inner.action_dim()
                )));
            }
            let t0 = Instant::now();
            let z0 = model.encode_obs(&obs)?;
            let zg = model.encode_obs(&goal)?;
            let encode = t0.elapsed();
            let t1 = Instant::now();
            let out = planner
                .plan(model.inner.as_ref(), &z0, &zg, warm.as_ref(), &budget)
                .map_err(planner_error)?;
            Ok::<_, PyErr>((out, encode, t1.elapsed()))
        })?;
        let h = out.plan.horizon();
        let a = out.plan.action_dim();
        let best_energy = out.best_energy;
        let iterations = out.iterations;
        let rollouts = out.rollouts;
        let hit_deadline = out.hit_deadline;
        let energy_trace = out.energy_trace;
        let actions = f32_array(py, out.plan.into_actions(), &[h, a])?.unbind();
        Ok(PlanResult {
            actions,
            best_energy,
            energy_trace,
            iterations,
            rollouts,
            hit_deadline,
            encode_ms: ms(encode),
            plan_ms: ms(planned),
            total_ms: ms(start.elapsed()),
        })
    }

    /// Forgets warm state and rewinds the random stream to `seed` (default: the planner's).
    #[pyo3(signature = (seed = None))]
    fn reset(&self, seed: Option<u64>) -> PyResult<()> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| runtime("planner poisoned by an earlier failure"))?;
        if let Some(p) = state.as_mut() {
            p.reseed(seed.unwrap_or(self.seed));
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("zplan.Planner({})", self.config.to_ron_string())
    }
}

/// Receding-horizon control: plan, execute the first actions, observe, replan with a warm
/// start from the previous plan.
///
/// `Mpc(model, planner, goal_obs, seed=0, config="(replan_every: 2, action_block: 2)")`; then
/// `act(obs)` once per control step (it replans when its queue of planned actions runs out).
#[pyclass(module = "zplan._zplan", frozen)]
pub struct Mpc {
    inner: Mutex<RsMpc>,
    model: Py<Model>,
}

fn mpc_lock(m: &Mutex<RsMpc>) -> PyResult<std::sync::MutexGuard<'_, RsMpc>> {
    m.lock()
        .map_err(|_| runtime("MPC poisoned by an earlier failure"))
}

#[pymethods]
impl Mpc {
    /// `config`: `MpcConfig` as RON text or dict (`replan_every`, `action_block`, `iterations`,
    /// `deadline_ms`, `warm_start`).
    #[new]
    #[pyo3(signature = (model, planner, goal_obs, seed = 0, config = None))]
    fn new(
        py: Python<'_>,
        model: Bound<'_, Model>,
        planner: &Planner,
        goal_obs: &Bound<'_, PyAny>,
        seed: u64,
        config: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let m = model.get();
        let config: MpcConfig = match config.filter(|c| !c.is_none()) {
            Some(c) => config_from_py(c, "config", MpcConfig::from_ron_str)?,
            None => MpcConfig::default(),
        };
        config.validate().map_err(planner_error)?;
        let goal = m.read_obs(goal_obs, "goal_obs")?;
        let built = planner.build(m, seed)?;
        let inner = py.detach(|| -> PyResult<RsMpc> {
            let mut mpc = RsMpc::new(m.inner.clone(), built, config).map_err(planner_error)?;
            mpc.reset_episode(&goal, seed).map_err(planner_error)?;
            Ok(mpc)
        })?;
        Ok(Self {
            inner: Mutex::new(inner),
            model: model.unbind(),
        })
    }

    /// Starts a new episode towards `goal_obs`, reseeding the planner.
    fn reset(&self, py: Python<'_>, goal_obs: &Bound<'_, PyAny>, seed: u64) -> PyResult<()> {
        let goal = self.model.get().read_obs(goal_obs, "goal_obs")?;
        py.detach(|| {
            mpc_lock(&self.inner)?
                .reset_episode(&goal, seed)
                .map_err(planner_error)
        })
    }

    /// The action for this control step (float32 `[action_dim]`), replanning when due.
    fn act<'py>(&self, py: Python<'py>, obs: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let obs = self.model.get().read_obs(obs, "obs")?;
        let a = py.detach(|| mpc_lock(&self.inner)?.act(&obs).map_err(planner_error))?;
        let n = a.len();
        f32_array(py, a, &[n])
    }

    /// Replans now and returns the control actions to execute before the next replan,
    /// float32 `[replan_every, action_dim]`.
    fn next_actions<'py>(
        &self,
        py: Python<'py>,
        obs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let obs = self.model.get().read_obs(obs, "obs")?;
        let step = py.detach(|| {
            mpc_lock(&self.inner)?
                .next_actions(&obs)
                .map_err(planner_error)
        })?;
        let k = step.actions.len();
        let a = step.actions.first().map_or(0, Vec::len);
        f32_array(py, step.actions.concat(), &[k, a])
    }

    /// Latency of every plan so far (encode + plan), milliseconds.
    fn latencies_ms(&self) -> PyResult<Vec<f64>> {
        Ok(mpc_lock(&self.inner)?
            .latencies()
            .iter()
            .map(|d| ms(*d))
            .collect())
    }
}

/// The planner on its own thread for a real-time control loop.
///
/// `push_observation` and `latest_action` never block: the planner thread replans from the
/// newest observation within `deadline_ms` and publishes the plan; `latest_action` returns the
/// action due now (stepping through the plan at `control_dt`), or `None` before the first plan.
/// Use it as a context manager, or call `stop()`.
#[pyclass(module = "zplan._zplan", frozen)]
pub struct Controller {
    inner: Mutex<Option<RsController>>,
    model: Py<Model>,
}

fn controller_guard(
    c: &Mutex<Option<RsController>>,
) -> PyResult<std::sync::MutexGuard<'_, Option<RsController>>> {
    c.lock()
        .map_err(|_| runtime("controller poisoned by an earlier failure"))
}

fn stats_dict<'py>(
    py: Python<'py>,
    s: &zplan_planner::ControllerStats,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("observations", s.observations)?;
    d.set_item("dropped_observations", s.dropped_observations)?;
    d.set_item("plans", s.plans)?;
    d.set_item("deadline_misses", s.deadline_misses)?;
    d.set_item("errors", s.errors)?;
    Ok(d)
}

#[pymethods]
impl Controller {
    /// Starts the planner thread. `control_dt`: seconds per control step of your loop;
    /// `deadline_ms`: per-plan deadline (default 80 % of `control_dt`); `iterations`: cap per
    /// plan; `action_block`: control steps each planned action is held; `lookahead`: control
    /// periods between an observation and the first action planned from it.
    #[new]
    #[pyo3(signature = (model, planner, goal_obs, seed = 0, control_dt = 0.05, deadline_ms = None, iterations = None, action_block = 1, lookahead = 1))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Bound<'_, Model>,
        planner: &Planner,
        goal_obs: &Bound<'_, PyAny>,
        seed: u64,
        control_dt: f64,
        deadline_ms: Option<f64>,
        iterations: Option<u32>,
        action_block: usize,
        lookahead: usize,
    ) -> PyResult<Self> {
        let m = model.get();
        if !(control_dt.is_finite() && control_dt > 0.0 && control_dt < 3600.0) {
            return Err(value_error(format!(
                "control_dt: expected seconds in (0, 3600), got {control_dt}"
            )));
        }
        let deadline = deadline_ms.unwrap_or(control_dt * 800.0);
        if !(deadline.is_finite() && deadline > 0.0 && deadline < 3.6e6) {
            return Err(value_error(format!(
                "deadline_ms: expected a positive number of milliseconds, got {deadline}"
            )));
        }
        if action_block == 0 {
            return Err(value_error("action_block: must be at least 1"));
        }
        let goal = m.read_obs(goal_obs, "goal_obs")?;
        let bounds = planner.bounds_for(m)?;
        let options = ControllerOptions {
            control_dt: Duration::from_secs_f64(control_dt),
            plan_deadline: Duration::from_secs_f64(deadline / 1e3),
            iterations,
            action_block,
            lookahead,
        };
        let model_arc = m.inner.clone();
        let c = py.detach(|| {
            RsController::spawn(
                model_arc,
                &planner.config,
                planner.energy.clone(),
                bounds,
                &goal,
                seed,
                options,
            )
            .map_err(planner_error)
        })?;
        Ok(Self {
            inner: Mutex::new(Some(c)),
            model: model.unbind(),
        })
    }

    /// Hands the newest observation to the planner thread (never blocks; an observation the
    /// planner has not taken yet is replaced).
    fn push_observation(&self, obs: &Bound<'_, PyAny>) -> PyResult<()> {
        let obs = self.model.get().read_obs(obs, "obs")?;
        let g = controller_guard(&self.inner)?;
        let c = g.as_ref().ok_or_else(|| runtime("controller is stopped"))?;
        c.push_observation(&obs);
        Ok(())
    }

    /// The action due now (float32 `[action_dim]`), or `None` before the first plan of the
    /// current goal. Never blocks.
    fn latest_action<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let a = {
            let g = controller_guard(&self.inner)?;
            let c = g.as_ref().ok_or_else(|| runtime("controller is stopped"))?;
            c.latest_action()
        };
        match a {
            Some(a) => {
                let n = a.len();
                Ok(Some(f32_array(py, a, &[n])?))
            }
            None => Ok(None),
        }
    }

    /// Switches to a new goal (and seed); actions of the old goal are no longer returned.
    fn set_goal(&self, goal_obs: &Bound<'_, PyAny>, seed: u64) -> PyResult<()> {
        let goal = self.model.get().read_obs(goal_obs, "goal_obs")?;
        let g = controller_guard(&self.inner)?;
        let c = g.as_ref().ok_or_else(|| runtime("controller is stopped"))?;
        c.set_goal(&goal, seed);
        Ok(())
    }

    /// Changes the per-plan deadline (milliseconds) from the next plan on. Never blocks.
    fn set_deadline(&self, deadline_ms: f64) -> PyResult<()> {
        if !(deadline_ms.is_finite() && deadline_ms > 0.0 && deadline_ms < 3.6e6) {
            return Err(value_error(format!(
                "deadline_ms: expected a positive number of milliseconds, got {deadline_ms}"
            )));
        }
        let g = controller_guard(&self.inner)?;
        let c = g.as_ref().ok_or_else(|| runtime("controller is stopped"))?;
        c.set_plan_deadline(Duration::from_secs_f64(deadline_ms / 1e3));
        Ok(())
    }

    /// Counters: `observations`, `dropped_observations`, `plans`, `deadline_misses`, `errors`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = {
            let g = controller_guard(&self.inner)?;
            let c = g.as_ref().ok_or_else(|| runtime("controller is stopped"))?;
            c.stats()
        };
        stats_dict(py, &s)
    }

    /// Stops the planner thread and returns its report: the counters plus `latency_ms_p50`,
    /// `latency_ms_p99`, `plan_ms_p50` and `last_error`. A second call returns `None`.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let c = controller_guard(&self.inner)?.take();
        let Some(c) = c else { return Ok(None) };
        let report = py.detach(|| c.stop().map_err(planner_error))?;
        let d = stats_dict(py, &report.stats)?;
        let pct = |v: &[Duration], p: f64| {
            zplan_planner::duration_percentile(v, p).map(|d| d.as_secs_f64() * 1e3)
        };
        d.set_item("latency_ms_p50", pct(&report.latencies, 50.0))?;
        d.set_item("latency_ms_p99", pct(&report.latencies, 99.0))?;
        d.set_item("plan_ms_p50", pct(&report.plan_times, 50.0))?;
        d.set_item("last_error", report.last_error)?;
        Ok(Some(d))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }
}

/// Runs a scenario suite (a `Suite(...)` RON file) as `zplan run` does and returns the
/// summary rows (one dict per entry: `entry`, `scenario`, `model`, `planner`, `episodes`,
/// `successes`, `success_rate`, `success_ci_low`, `success_ci_high`, `mean_final_distance`,
/// `plan_ms_p50`, `plan_ms_p95`, `plan_ms_p99`, `rollouts_per_s`, `errors`). `out`: the run
/// directory (`results.jsonl`, `summary.md`, plots); a directory with records of the same
/// suite is resumed. `workers`: parallel episodes (default: the CPU cores).
#[pyfunction]
#[pyo3(signature = (path, out = None, workers = None, device = None, progress = false))]
pub fn run_suite<'py>(
    py: Python<'py>,
    path: PathBuf,
    out: Option<PathBuf>,
    workers: Option<usize>,
    device: Option<&str>,
    progress: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if workers == Some(0) {
        return Err(value_error("workers: must be at least 1"));
    }
    let device = device.map(device_from_str).transpose()?;
    let rows_json = py.detach(|| -> PyResult<String> {
        let suite = zplan::suite::LoadedSuite::load(&path).map_err(runtime)?;
        let out = out.unwrap_or_else(|| zplan::runner::default_out_dir(&suite.suite.name));
        let opts = zplan::runner::RunOptions {
            out,
            shard: zplan::shard::Shard::ALL,
            device,
            workers,
            torch_threads: None,
            progress,
            filmstrips: false,
        };
        let outcome =
            zplan::runner::run_suite(&suite, &opts).map_err(|e| runtime(format!("{e:#}")))?;
        let rows = zplan::report::summarize(&outcome.records);
        serde_json::to_string(&rows).map_err(runtime)
    })?;
    py.import("json")?.call_method1("loads", (rows_json,))
}
