//! Naming a model in a suite file or on the command line, and loading it for a scenario.

#[cfg(feature = "sim")]
use crate::SimModel;
use crate::{DeviceChoice, JepaModel, ModelError, Precision, Result, TorchScriptModel, WorldModel};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
#[cfg(feature = "sim")]
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use zplan_obs::ObsSpec;
#[cfg(feature = "sim")]
use zplan_sim::ScenarioConfig;

/// Which world model to plan with, as written in suite files (RON:
/// `TorchScript("models/reach.pt")`, `Jepa("models/reach")`, `Sim`) and on the command line
/// (see [`ModelSpec::from_str`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelSpec {
    /// A TorchScript file following the contract in `models/README.md`.
    TorchScript(String),
    /// A native JEPA model: `<name>`, `<name>.safetensors` or `<name>.json`.
    Jepa(String),
    /// The simulator-backed model of the scenario (the planning upper bound).
    Sim,
}

impl ModelSpec {
    /// The model file, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ModelSpec::TorchScript(p) | ModelSpec::Jepa(p) => Some(Path::new(p)),
            ModelSpec::Sim => None,
        }
    }

    /// Whether the model can compute in `precision`: every model computes in float32;
    /// TorchScript and native JEPA models also in bfloat16, the simulator-backed model (no
    /// weights) not.
    ///
    /// # Errors
    /// [`ModelError::Precision`] for [`ModelSpec::Sim`] with [`Precision::Bf16`], saying why.
    pub fn check_precision(&self, precision: Precision) -> Result<()> {
        match (self, precision) {
            (ModelSpec::Sim, Precision::Bf16) => Err(ModelError::Precision(
                "precision bf16 needs a model with weights (TorchScript or Jepa); the \
                 simulator-backed model (`Sim`) has none and computes in float32: use fp32"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// The same spec with a relative path taken relative to `base` (e.g. the suite file's
    /// directory).
    pub fn relative_to(&self, base: &Path) -> ModelSpec {
        let join = |p: &String| {
            let path = Path::new(p);
            if path.is_absolute() {
                p.clone()
            } else {
                base.join(path).to_string_lossy().into_owned()
            }
        };
        match self {
            ModelSpec::TorchScript(p) => ModelSpec::TorchScript(join(p)),
            ModelSpec::Jepa(p) => ModelSpec::Jepa(join(p)),
            ModelSpec::Sim => ModelSpec::Sim,
        }
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::TorchScript(p) => write!(f, "torchscript:{p}"),
            ModelSpec::Jepa(p) => write!(f, "jepa:{p}"),
            ModelSpec::Sim => f.write_str("sim"),
        }
    }
}

impl FromStr for ModelSpec {
    type Err = ModelError;

    /// Parses `sim`, `torchscript:PATH`, `jepa:PATH`, or a bare path: `.pt`, `.ts`, `.jit` and
    /// `.torchscript` files are TorchScript, `.safetensors` and `.json` files (or a stem with a
    /// `.json` sidecar next to it) are JEPA models.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("sim") {
            return Ok(ModelSpec::Sim);
        }
        if let Some(p) = s
            .strip_prefix("torchscript:")
            .or_else(|| s.strip_prefix("ts:"))
        {
            return Ok(ModelSpec::TorchScript(p.to_string()));
        }
        if let Some(p) = s.strip_prefix("jepa:") {
            return Ok(ModelSpec::Jepa(p.to_string()));
        }
        let path = Path::new(s);
        match path.extension().and_then(|e| e.to_str()) {
            Some("pt" | "ts" | "jit" | "torchscript") => Ok(ModelSpec::TorchScript(s.to_string())),
            Some("safetensors" | "json") => Ok(ModelSpec::Jepa(s.to_string())),
            _ if crate::jepa::jepa_paths(path).1.is_file() => Ok(ModelSpec::Jepa(s.to_string())),
            _ => Err(ModelError::InvalidConfig(format!(
                "cannot tell what kind of model `{s}` is: write sim, torchscript:PATH or jepa:PATH"
            ))),
        }
    }
}

/// How to load a model: the device, the precision it computes in, and the threads of the
/// simulator-backed model ([`load_model_with`], [`load_model_for_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Where learned models compute (the simulator-backed model always runs on the CPU).
    pub device: DeviceChoice,
    /// What they compute in ([`Precision::Bf16`] is refused for the simulator-backed model).
    pub precision: Precision,
    /// Threads the simulator-backed model rolls out on (`SimModel::with_threads`); the
    /// other models ignore it.
    pub sim_threads: usize,
}

impl Default for LoadOptions {
    /// `auto` device, float32, and the simulator on every core.
    fn default() -> Self {
        LoadOptions {
            device: DeviceChoice::Auto,
            precision: Precision::Fp32,
            sim_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Loads the model `spec` names for `scenario` on `device`, and checks that the scenario
/// observes every field the model reads (same dtype and shape) and that the action sizes agree.
/// A TorchScript model is given the scenario's whole observation.
///
/// The simulator-backed model builds the scenario itself and computes on the CPU whatever
/// `device` says. A JEPA model whose sidecar names a scenario of another family is refused; one
/// trained on a variant of the same family (another door width, ...) loads with a warning.
///
/// # Errors
/// The model's load errors, or [`ModelError::Incompatible`] naming the quantity that differs.
///
/// The simulator-backed model rolls out on every core ([`std::thread::available_parallelism`]);
/// [`load_model_with_threads`] sets how many.
#[cfg(feature = "sim")]
pub fn load_model(
    spec: &ModelSpec,
    scenario: &ScenarioConfig,
    device: DeviceChoice,
) -> Result<Arc<dyn WorldModel>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    load_model_with_threads(spec, scenario, device, cores)
}

/// [`load_model`] with the number of threads the simulator-backed model rolls out on
/// ([`SimModel::with_threads`]; the other models ignore it). A process that plans on `W`
/// threads at once gives it `cores / W`, so that no more threads than cores compute.
///
/// # Errors
/// As [`load_model`]; [`ModelError::InvalidConfig`] for 0 threads.
#[cfg(feature = "sim")]
pub fn load_model_with_threads(
    spec: &ModelSpec,
    scenario: &ScenarioConfig,
    device: DeviceChoice,
    sim_threads: usize,
) -> Result<Arc<dyn WorldModel>> {
    let opts = LoadOptions {
        device,
        precision: Precision::Fp32,
        sim_threads,
    };
    load_model_with(spec, scenario, &opts)
}

/// [`load_model`] with every option: device, precision ([`Precision::Bf16`] converts a
/// TorchScript or native JEPA model's weights to bfloat16) and simulator threads.
///
/// # Errors
/// As [`load_model`]; [`ModelError::InvalidConfig`] for 0 threads; [`ModelError::Precision`]
/// for bf16 with the simulator-backed model ([`ModelSpec::check_precision`]).
#[cfg(feature = "sim")]
pub fn load_model_with(
    spec: &ModelSpec,
    scenario: &ScenarioConfig,
    opts: &LoadOptions,
) -> Result<Arc<dyn WorldModel>> {
    spec.check_precision(opts.precision)?;
    let env_spec = scenario.spec();
    let obs_spec = env_spec.observation.clone();
    let action_dim = env_spec.action_dim() as i64;
    let context = format!("scenario `{}`", scenario.kind());
    let model: Arc<dyn WorldModel> = match spec {
        ModelSpec::Sim => {
            Arc::new(SimModel::from_config(scenario)?.with_threads(opts.sim_threads)?)
        }
        ModelSpec::TorchScript(path) => Arc::new(TorchScriptModel::load_with_precision(
            path,
            &obs_spec,
            action_dim,
            opts.device.resolve()?,
            opts.precision,
        )?),
        ModelSpec::Jepa(path) => {
            let model = JepaModel::load(path, opts.device.resolve()?)?;
            check_trained_for(&model, scenario)?;
            Arc::new(model.with_precision(opts.precision)?)
        }
    };
    check_fits(model.as_ref(), &obs_spec, action_dim, &context)?;
    Ok(model)
}

/// Loads a model for explicit sizes, without a scenario (`zplan model inspect --obs-shape`).
///
/// # Errors
/// The model's load errors; [`ModelError::InvalidConfig`] for [`ModelSpec::Sim`], which needs a
/// scenario; [`ModelError::Incompatible`] when a JEPA model has other sizes.
pub fn load_model_for(
    spec: &ModelSpec,
    obs_spec: &ObsSpec,
    action_dim: i64,
    device: DeviceChoice,
) -> Result<Arc<dyn WorldModel>> {
    let opts = LoadOptions {
        device,
        ..LoadOptions::default()
    };
    load_model_for_with(spec, obs_spec, action_dim, &opts)
}

/// [`load_model_for`] with a precision (`opts.sim_threads` is unused: the simulator-backed
/// model needs a scenario).
///
/// # Errors
/// As [`load_model_for`], and [`ModelSpec::check_precision`]'s.
pub fn load_model_for_with(
    spec: &ModelSpec,
    obs_spec: &ObsSpec,
    action_dim: i64,
    opts: &LoadOptions,
) -> Result<Arc<dyn WorldModel>> {
    spec.check_precision(opts.precision)?;
    let model: Arc<dyn WorldModel> = match spec {
        ModelSpec::Sim => {
            return Err(ModelError::InvalidConfig(
                "the simulator-backed model needs a scenario".into(),
            ));
        }
        ModelSpec::TorchScript(path) => Arc::new(TorchScriptModel::load_with_precision(
            path,
            obs_spec,
            action_dim,
            opts.device.resolve()?,
            opts.precision,
        )?),
        ModelSpec::Jepa(path) => Arc::new(JepaModel::load_with_precision(
            path,
            opts.device.resolve()?,
            opts.precision,
        )?),
    };
    check_fits(model.as_ref(), obs_spec, action_dim, "the requested sizes")?;
    Ok(model)
}

/// Errors unless observations of `obs_spec` provide every field `model` reads (same dtype and
/// shape) and the model takes actions of `action_dim`.
///
/// # Errors
/// [`ModelError::Incompatible`], naming the field, the shape the model expects and the one the
/// observation has.
pub fn check_fits(
    model: &dyn WorldModel,
    obs_spec: &ObsSpec,
    action_dim: i64,
    context: &str,
) -> Result<()> {
    let incompatible = |what: &str, expected: String, actual: String| ModelError::Incompatible {
        model: model.name().to_string(),
        context: context.to_string(),
        what: what.to_string(),
        expected,
        actual,
    };
    for f in model.obs_spec().fields() {
        match obs_spec.field(&f.name) {
            None => {
                return Err(incompatible(
                    &format!("observation field `{}`", f.name),
                    format!("absent (the observation has: {obs_spec})"),
                    f.describe(),
                ))
            }
            Some(have) if have.dtype != f.dtype || have.shape != f.shape => {
                return Err(incompatible(
                    &format!("observation field `{}`", f.name),
                    have.describe(),
                    f.describe(),
                ))
            }
            Some(_) => {}
        }
    }
    if model.action_dim() != action_dim {
        return Err(incompatible(
            "the action size",
            action_dim.to_string(),
            model.action_dim().to_string(),
        ));
    }
    Ok(())
}

/// Refuses a JEPA model trained for another scenario family; warns for another variant.
#[cfg(feature = "sim")]
fn check_trained_for(model: &JepaModel, scenario: &ScenarioConfig) -> Result<()> {
    match model.scenario_config() {
        Ok(Some(trained)) if trained.kind() != scenario.kind() => Err(ModelError::Incompatible {
            model: model.name().to_string(),
            context: format!("scenario `{}`", scenario.kind()),
            what: "the scenario family it was trained for".into(),
            expected: format!("`{}`", scenario.kind()),
            actual: format!("`{}`", trained.kind()),
        }),
        Ok(Some(trained)) if &trained != scenario => {
            tracing::warn!(
                model = model.name(),
                "the model was trained on another `{}` configuration",
                scenario.kind()
            );
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(
                model = model.name(),
                "cannot read the scenario stored with the model: {e}"
            );
            Ok(())
        }
    }
}

/// Converts the scenario JSON of a sidecar.
#[cfg(feature = "sim")]
pub(crate) fn scenario_from_json(
    value: &serde_json::Value,
    origin: &Path,
) -> Result<ScenarioConfig> {
    serde_json::from_value(value.clone()).map_err(|e| ModelError::Sidecar {
        path: PathBuf::from(origin),
        reason: format!("the stored scenario is not a valid scenario config: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!("sim".parse::<ModelSpec>().unwrap(), ModelSpec::Sim);
        assert_eq!(
            "m/a.pt".parse::<ModelSpec>().unwrap(),
            ModelSpec::TorchScript("m/a.pt".into())
        );
        assert_eq!(
            "torchscript:m/a".parse::<ModelSpec>().unwrap(),
            ModelSpec::TorchScript("m/a".into())
        );
        assert_eq!(
            "m/a.safetensors".parse::<ModelSpec>().unwrap(),
            ModelSpec::Jepa("m/a.safetensors".into())
        );
        assert_eq!(
            "jepa:m/a".parse::<ModelSpec>().unwrap(),
            ModelSpec::Jepa("m/a".into())
        );
        assert!("m/unknown".parse::<ModelSpec>().is_err());
        for spec in [
            ModelSpec::Sim,
            ModelSpec::Jepa("x".into()),
            ModelSpec::TorchScript("y.pt".into()),
        ] {
            assert_eq!(spec.to_string().parse::<ModelSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn bf16_needs_weights() {
        for spec in [
            ModelSpec::Jepa("m".into()),
            ModelSpec::TorchScript("m.pt".into()),
        ] {
            for p in Precision::ALL {
                assert!(spec.check_precision(p).is_ok());
            }
        }
        assert!(ModelSpec::Sim.check_precision(Precision::Fp32).is_ok());
        let err = ModelSpec::Sim
            .check_precision(Precision::Bf16)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`Sim`") && err.contains("no") && err.contains("weights"),
            "{err}"
        );
    }

    #[test]
    fn serde_forms() {
        let spec: ModelSpec = ron::from_str("TorchScript(\"models/reach.pt\")").unwrap();
        assert_eq!(spec, ModelSpec::TorchScript("models/reach.pt".into()));
        assert_eq!(ron::from_str::<ModelSpec>("Sim").unwrap(), ModelSpec::Sim);
        assert_eq!(
            ModelSpec::Jepa("m".into()).relative_to(Path::new("/suite")),
            ModelSpec::Jepa("/suite/m".into())
        );
        assert_eq!(
            ModelSpec::Jepa("/abs".into()).relative_to(Path::new("/suite")),
            ModelSpec::Jepa("/abs".into())
        );
    }
}
