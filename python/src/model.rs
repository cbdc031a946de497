//! `zplan.load_model` and `zplan.Model`: world models (TorchScript, native JEPA, simulator).
use crate::convert::{f32_array, model_error, observation_from_py, read_f32, runtime, value_error};
use crate::env::scenario_from_py;
use pyo3::prelude::*;
use std::str::FromStr;
use std::sync::Arc;
use tch::{Kind, Tensor};
use zplan_models::{DeviceChoice, LoadOptions, ModelSpec, ObsBatch, Precision, WorldModel};
use zplan_obs::{ObsSpec, Observation};

/// A loaded world model: encode observations to latents, roll latents forward under actions.
///
/// Made by `zplan.load_model`. Safe to share between threads; planning releases the GIL.
#[pyclass(module = "zplan._zplan", frozen)]
pub struct Model {
    pub(crate) inner: Arc<dyn WorldModel>,
    pub(crate) spec: String,
}

/// Parses a device string (`auto`, `cpu`, `cuda`, `cuda:N`).
pub fn device_from_str(s: &str) -> PyResult<DeviceChoice> {
    DeviceChoice::from_str(s).map_err(|e| value_error(format!("device `{s}`: {e}")))
}

impl Model {
    /// Encodes one observation to a latent `[1, *latent]` on the model's device.
    pub fn encode_obs(&self, obs: &Observation) -> PyResult<Tensor> {
        let batch = ObsBatch::from_observations(self.inner.obs_spec(), &[obs], self.inner.device())
            .map_err(model_error)?;
        self.inner.encode(&batch).map_err(model_error)
    }

    /// Reads a Python observation for this model.
    pub fn read_obs(&self, value: &Bound<'_, PyAny>, what: &str) -> PyResult<Observation> {
        observation_from_py(value, self.inner.obs_spec(), what)
    }
}

/// Loads a world model.
///
/// `model`: `"sim"`, `"torchscript:PATH"`, `"jepa:PATH"`, or a path (`.pt` is TorchScript,
/// a JEPA stem/`.json`/`.safetensors` is native). `scenario` (a scenario path or environment)
/// gives the observation spec and action size the model must fit; the simulator-backed model
/// and TorchScript models need it, a JEPA model reads its sizes from its sidecar. `device`:
/// `auto`, `cpu`, `cuda`, `cuda:N`. `threads`: rollout threads of the simulator-backed model.
/// `precision`: `fp32`, or `bf16` (TorchScript and JEPA models compute in bfloat16; latents
/// and predictions are still returned as float32).
#[pyfunction]
#[pyo3(signature = (model, scenario = None, device = "cpu", threads = 1, precision = "fp32"))]
pub fn load_model(
    py: Python<'_>,
    model: &str,
    scenario: Option<&Bound<'_, PyAny>>,
    device: &str,
    threads: usize,
    precision: &str,
) -> PyResult<Model> {
    let spec = ModelSpec::from_str(model).map_err(model_error)?;
    let device = device_from_str(device)?;
    let precision = Precision::from_str(precision).map_err(|e| value_error(e.to_string()))?;
    spec.check_precision(precision)
        .map_err(|e| value_error(e.to_string()))?;
    let scenario = scenario.map(scenario_from_py).transpose()?;
    if threads == 0 {
        return Err(value_error("threads: must be at least 1"));
    }
    let inner = py.detach(|| -> PyResult<Arc<dyn WorldModel>> {
        match (&spec, scenario) {
            (_, Some(sc)) => {
                let opts = LoadOptions {
                    device,
                    precision,
                    sim_threads: threads,
                };
                zplan_models::load_model_with(&spec, &sc, &opts).map_err(model_error)
            }
            (ModelSpec::Jepa(path), None) => {
                let m = zplan_models::JepaModel::load_with_precision(
                    path,
                    device.resolve().map_err(model_error)?,
                    precision,
                )
                .map_err(model_error)?;
                Ok(Arc::new(m))
            }
            (ModelSpec::Sim, None) => Err(value_error(
                "the simulator-backed model needs scenario= (a scenario file or environment)",
            )),
            (ModelSpec::TorchScript(_), None) => Err(value_error(
                "a TorchScript model needs scenario= (its observation spec and action size)",
            )),
        }
    })?;
    Ok(Model {
        inner,
        spec: spec.to_string(),
    })
}

fn spec_json(spec: &ObsSpec) -> PyResult<String> {
    serde_json::to_string(spec).map_err(runtime)
}

/// `tensor` (any float kind, any device) as a flat f32 vector and its shape.
pub fn tensor_to_vec(t: &Tensor) -> PyResult<(Vec<f32>, Vec<usize>)> {
    let shape: Vec<usize> = t.size().iter().map(|&d| d.max(0) as usize).collect();
    let flat = t
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view([-1]);
    let v = Vec::<f32>::try_from(&flat).map_err(runtime)?;
    Ok((v, shape))
}

fn tensor_from(values: Vec<f32>, shape: &[usize], device: tch::Device) -> Tensor {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::from_slice(&values)
        .view(dims.as_slice())
        .to_device(device)
}

#[pymethods]
impl Model {
    /// The model's identity (e.g. `jepa:models/trained/reach`).
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// The spec it was loaded from.
    #[getter]
    fn spec(&self) -> &str {
        &self.spec
    }

    /// Action size.
    #[getter]
    fn action_dim(&self) -> i64 {
        self.inner.action_dim()
    }

    /// Shape of one latent.
    #[getter]
    fn latent_shape(&self) -> Vec<i64> {
        self.inner.latent_shape().to_vec()
    }

    /// Device it computes on (`cpu`, `cuda:0`).
    #[getter]
    fn device(&self) -> String {
        zplan_models::device_name(self.inner.device())
    }

    /// The observation fields it reads, as JSON.
    fn obs_spec_json(&self) -> PyResult<String> {
        spec_json(self.inner.obs_spec())
    }

    /// Encodes one observation (a dict of fields, or the single field's array): float32
    /// `[1, *latent]`.
    fn encode<'py>(&self, py: Python<'py>, obs: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let obs = self.read_obs(obs, "obs")?;
        let (v, shape) = py.detach(|| tensor_to_vec(&self.encode_obs(&obs)?))?;
        f32_array(py, v, &shape)
    }

    /// Rolls latents `z0` `[B, *latent]` forward under `actions` `[B, H, A]`: float32
    /// `[B, H, *latent]`.
    fn rollout<'py>(
        &self,
        py: Python<'py>,
        z0: &Bound<'py, PyAny>,
        actions: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (zv, zs) = read_f32(z0, "z0")?;
        let (av, ash) = read_f32(actions, "actions")?;
        let latent: Vec<usize> = self
            .inner
            .latent_shape()
            .iter()
            .map(|&d| d as usize)
            .collect();
        if zs.len() != latent.len() + 1 || zs[1..] != latent[..] {
            return Err(value_error(format!(
                "z0: expected shape [B, {}], got {}",
                latent
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                zplan_obs::fmt_shape(&zs)
            )));
        }
        let a = self.inner.action_dim() as usize;
        if ash.len() != 3 || ash[0] != zs[0] || ash[2] != a {
            return Err(value_error(format!(
                "actions: expected shape [{}, H, {a}], got {}",
                zs[0],
                zplan_obs::fmt_shape(&ash)
            )));
        }
        if let Some(x) = av.iter().find(|x| !x.is_finite()) {
            return Err(value_error(format!("actions: {x} is not finite")));
        }
        let device = self.inner.device();
        let out = py.detach(|| -> PyResult<(Vec<f32>, Vec<usize>)> {
            let _guard = tch::no_grad_guard();
            let z = tensor_from(zv, &zs, device);
            let acts = tensor_from(av, &ash, device);
            let out = self.inner.rollout(&z, &acts).map_err(model_error)?;
            tensor_to_vec(&out)
        })?;
        f32_array(py, out.0, &out.1)
    }

    fn __repr__(&self) -> String {
        format!(
            "zplan.Model({}, latent={:?}, action_dim={}, device={})",
            self.inner.name(),
            self.inner.latent_shape(),
            self.inner.action_dim(),
            zplan_models::device_name(self.inner.device())
        )
    }
}
