//! `zplan._zplan.Env`: one Rapier scenario, the core of `zplan.make`'s gymnasium environment.
use crate::convert::{
    f32_array, observation_to_py, read_action, runtime, sim_error, type_error, TRUE_STATE,
};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Mutex;
use zplan_sim::{Env as SimEnv, EnvSpec, ScenarioConfig};

/// A scenario from a RON file (`scenarios/*.ron`), simulated by Rapier.
///
/// The low-level core of `zplan.make(...)` (a `gymnasium.Env`); use that unless you need the
/// raw calls. `reset(seed)` draws a start and a goal deterministically from `seed`;
/// `observe()` and `goal_observation()` return dicts of numpy arrays in the scenario's
/// observation spec (`spec_json()`); `step(action)` advances one control period.
#[pyclass(module = "zplan._zplan")]
pub struct Env {
    config: ScenarioConfig,
    spec: EnvSpec,
    origin: String,
    env: Mutex<Box<dyn SimEnv>>,
}

impl Env {
    /// The scenario's config.
    pub fn config(&self) -> &ScenarioConfig {
        &self.config
    }

    fn with<R>(&self, f: impl FnOnce(&mut Box<dyn SimEnv>) -> R) -> PyResult<R> {
        let mut env = self
            .env
            .lock()
            .map_err(|_| runtime("environment poisoned by an earlier failure"))?;
        Ok(f(&mut env))
    }

    /// Builds from a scenario config.
    pub fn from_config(config: ScenarioConfig, origin: String) -> PyResult<Self> {
        let env = config.build().map_err(sim_error)?;
        let spec = env.spec().clone();
        Ok(Self {
            config,
            spec,
            origin,
            env: Mutex::new(env),
        })
    }
}

/// Reads a scenario argument: a path (`str` or `os.PathLike`) to a scenario RON file, a
/// `zplan._zplan.Env`, or any object with such an `Env` as its `core` attribute
/// (`zplan.make`'s environments).
pub fn scenario_from_py(value: &Bound<'_, PyAny>) -> PyResult<ScenarioConfig> {
    if let Ok(env) = value.cast::<Env>() {
        return Ok(env.borrow().config.clone());
    }
    if let Ok(core) = value.getattr("core") {
        if let Ok(env) = core.cast::<Env>() {
            return Ok(env.borrow().config.clone());
        }
    }
    if let Ok(path) = value.extract::<PathBuf>() {
        return ScenarioConfig::load(&path).map_err(sim_error);
    }
    Err(type_error(
        "scenario: expected a path to a scenario RON file or a zplan environment",
    ))
}

#[pymethods]
impl Env {
    /// Loads the scenario file at `path`.
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        let config = ScenarioConfig::load(&path).map_err(sim_error)?;
        Self::from_config(config, path.display().to_string())
    }

    /// Builds a scenario from RON text (`Reach(...)`, `TwoRooms(...)`, `Push(...)`).
    #[staticmethod]
    fn from_ron(text: &str) -> PyResult<Self> {
        let config = ScenarioConfig::from_ron_str(text, "<string>").map_err(sim_error)?;
        Self::from_config(config, "<string>".into())
    }

    /// Where the scenario came from (file path or `<string>`).
    #[getter]
    fn origin(&self) -> &str {
        &self.origin
    }

    /// Scenario family: `reach`, `two_rooms`, `push`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.config.kind()
    }

    /// The static description as JSON: `kind`, `state_names`, `observation` (fields with
    /// `name`, `dtype`, `shape`, `names`), `action_low`, `action_high`, `control_dt`,
    /// `physics_dt`, `substeps`, `max_steps`.
    fn spec_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.spec).map_err(runtime)
    }

    /// The scenario as RON text (what `from_ron` reads).
    fn to_ron(&self) -> String {
        self.config.to_ron_string()
    }

    /// Lower action bounds.
    #[getter]
    fn action_low<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, &self.spec.action_low)
    }

    /// Upper action bounds.
    #[getter]
    fn action_high<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, &self.spec.action_high)
    }

    /// Episode step limit.
    #[getter]
    fn max_steps(&self) -> u32 {
        self.spec.max_steps
    }

    /// Seconds per control step.
    #[getter]
    fn control_dt(&self) -> f32 {
        self.spec.control_dt
    }

    /// Starts an episode: start and goal drawn deterministically from `seed`.
    fn reset(&self, py: Python<'_>, seed: u64) -> PyResult<()> {
        py.detach(|| self.with(|e| e.reset(seed)))?
            .map_err(sim_error)
    }

    /// The current observation: `{field: numpy array}`. `true_state=True` adds the simulator's
    /// true state under `"true_state"`: only for the simulator-backed model (the planning upper
    /// bound); learned models never read it.
    #[pyo3(signature = (true_state = false))]
    fn observe<'py>(
        &self,
        py: Python<'py>,
        true_state: bool,
    ) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let (obs, state) = self.with(|e| (e.observe(), true_state.then(|| e.state())))?;
        let d = observation_to_py(py, obs, &self.spec.observation)?;
        if let Some(s) = state {
            let n = s.len();
            d.set_item(TRUE_STATE, f32_array(py, s, &[n])?)?;
        }
        Ok(d)
    }

    /// What the robot would observe at the goal (the goal image, for cameras).
    /// `true_state=True` adds the goal's true state (see `observe`).
    #[pyo3(signature = (true_state = false))]
    fn goal_observation<'py>(
        &self,
        py: Python<'py>,
        true_state: bool,
    ) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let (obs, state) =
            self.with(|e| (e.goal_observation(), true_state.then(|| e.goal_state())))?;
        let d = observation_to_py(py, obs, &self.spec.observation)?;
        if let Some(s) = state {
            let n = s.len();
            d.set_item(TRUE_STATE, f32_array(py, s, &[n])?)?;
        }
        Ok(d)
    }

    /// Advances one control period with `action` (float array of the action size; entries
    /// outside the bounds are clipped). Returns how many entries were clipped. A wrong size or
    /// a non-finite entry raises `ValueError` and leaves the state unchanged.
    fn step(&self, py: Python<'_>, action: &Bound<'_, PyAny>) -> PyResult<u32> {
        let a = read_action(action, self.spec.action_dim(), "action")?;
        let info = py
            .detach(|| self.with(|e| e.step(&a)))?
            .map_err(sim_error)?;
        Ok(info.clipped)
    }

    /// Whether the goal is reached.
    fn success(&self) -> PyResult<bool> {
        self.with(|e| e.success())
    }

    /// Task-space distance to the goal.
    fn distance_to_goal(&self) -> PyResult<f32> {
        self.with(|e| e.distance_to_goal())
    }

    /// Control steps since the last reset.
    fn steps(&self) -> PyResult<u32> {
        self.with(|e| e.steps())
    }

    /// A top-down RGB rendering for people (with the goal marker): uint8 `[height, width, 3]`.
    #[pyo3(signature = (width = 256, height = 256))]
    fn render<'py>(&self, py: Python<'py>, width: u32, height: u32) -> PyResult<Bound<'py, PyAny>> {
        if width == 0 || height == 0 || width > 4096 || height > 4096 {
            return Err(crate::convert::value_error(format!(
                "render: width and height must be within 1..=4096, got {width}x{height}"
            )));
        }
        let img = self.with(|e| e.render(width, height))?;
        let shape = vec![img.height as usize, img.width as usize, 3];
        Ok(PyArray1::from_vec(py, img.rgb)
            .reshape(shape)
            .map_err(runtime)?
            .into_any())
    }

    fn __repr__(&self) -> String {
        format!("zplan.Env({}, kind={})", self.origin, self.config.kind())
    }
}
