//! World models brought from PyTorch as TorchScript modules.

use crate::error::{summarize, TchContext};
use crate::util::{fmt_shape, seeded_uniform, to_float_on, to_kind, validate_shape, Site};
use crate::{ModelError, ObsBatch, Precision, Result, WorldModel};
use std::path::{Path, PathBuf};
use tch::{CModule, Device, IValue, Kind, Tensor};
use zplan_obs::{Dtype, ObsSpec};

/// Batch size of the load-time probe.
const PROBE_BATCH: i64 = 2;
/// Horizon of the load-time probe of `rollout`.
const PROBE_HORIZON: i64 = 3;

/// A TorchScript module that follows zplan's world-model contract (see `models/README.md`):
///
/// - `encode(obs) -> [B, *latent_shape]`, where `obs` is one float32 tensor `[B, *shape]` when
///   the observation has a single field (a state vector, or an image `[B, C, H, W]` scaled to
///   `[0, 1]`), and a `Dict[str, Tensor]` of float32 tensors keyed by field name (`image`,
///   `proprio`, `state`) when it has several
/// - `predict(z: [B, *latent_shape], action: [B, A]) -> [B, *latent_shape]`
/// - optional `rollout(z: [B, *latent_shape], actions: [B, H, A]) -> [B, H, *latent_shape]`,
///   used instead of looping `predict` when present.
///
/// [`TorchScriptModel::load`] probes the module with a batch of two seeded random observations
/// and actions, so that a model that does not fit fails at load time with one clear error
/// rather than deep inside a planner. The latent shape is whatever `encode` returns.
///
/// Parameters are frozen at load (`requires_grad = false`): inference never records autograd,
/// and [`WorldModel::rollout_grad`] differentiates with respect to the actions only.
///
/// With [`Precision::Bf16`] ([`TorchScriptModel::load_with_precision`]) the module's floating
/// point parameters and buffers are converted to bfloat16 (`module.to(torch.bfloat16)`), every
/// input is converted to bfloat16 before a method is called, and outputs (bfloat16, or float32
/// if the module converts them itself) are returned as float32.
#[derive(Debug)]
pub struct TorchScriptModel {
    // `CModule` is `Send + Sync`: TorchScript methods may be called from several threads.
    module: CModule,
    name: String,
    path: PathBuf,
    device: Device,
    obs_spec: ObsSpec,
    action_dim: i64,
    latent_shape: Vec<i64>,
    has_rollout: bool,
    precision: Precision,
}

/// Time limit of a TorchScript model's load-time probe: `ZPLAN_PROBE_TIMEOUT_S` seconds,
/// default 60.
fn probe_time_limit() -> std::time::Duration {
    let secs = std::env::var("ZPLAN_PROBE_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(60.0);
    std::time::Duration::from_secs_f64(secs)
}

/// Probes `model` on a thread of its own and gives up after [`probe_time_limit`]: a method
/// that never returns (a `while True` in the export) fails the load with
/// [`ModelError::ProbeTimeout`] instead of hanging `model inspect` or a run. The stuck thread
/// is abandoned (libtorch offers no way to interrupt it); the process can go on or exit.
fn probe_with_time_limit(mut model: TorchScriptModel) -> Result<TorchScriptModel> {
    let limit = probe_time_limit();
    let name = model.name.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("zplan-probe".into())
        .spawn(move || {
            let r = model.probe().map(|()| model);
            let _ = tx.send(r);
        })
        .map_err(|e| ModelError::Internal(format!("starting the probe thread: {e}")))?;
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(ModelError::ProbeTimeout {
            model: name,
            seconds: limit.as_secs_f64(),
        }),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(ModelError::Internal(format!(
            "the probe of `{name}` panicked"
        ))),
    }
}

impl TorchScriptModel {
    /// Loads a TorchScript file onto `device` and probes it with observations of `obs_spec`
    /// and actions of size `action_dim`.
    ///
    /// # Errors
    /// [`ModelError::NotFound`] for a missing file, [`ModelError::NotTorchScript`] for a file
    /// libtorch cannot load, [`ModelError::MissingMethod`] when `encode` or `predict` is
    /// missing, [`ModelError::ShapeMismatch`] / [`ModelError::WrongKind`] when a probe output
    /// does not follow the contract, [`ModelError::NonFinite`] for NaN/Inf probe outputs and
    /// [`ModelError::Torch`] when a method fails on the probe inputs.
    pub fn load(
        path: impl AsRef<Path>,
        obs_spec: &ObsSpec,
        action_dim: i64,
        device: Device,
    ) -> Result<Self> {
        Self::load_with_precision(path, obs_spec, action_dim, device, Precision::Fp32)
    }

    /// [`TorchScriptModel::load`] computing in `precision`: with [`Precision::Bf16`] the
    /// module's floating-point parameters and buffers are converted to bfloat16 before the
    /// probe, which then runs in bfloat16.
    ///
    /// # Errors
    /// As [`TorchScriptModel::load`]; a module that cannot compute in bfloat16 (one that
    /// creates float32 tensors and mixes them with its bfloat16 inputs) fails the probe with
    /// [`ModelError::Torch`], whose message says so.
    pub fn load_with_precision(
        path: impl AsRef<Path>,
        obs_spec: &ObsSpec,
        action_dim: i64,
        device: Device,
        precision: Precision,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        for f in obs_spec.fields() {
            let shape: Vec<i64> = f.shape.iter().map(|&d| d as i64).collect();
            validate_shape(&format!("shape of observation field `{}`", f.name), &shape)?;
        }
        if action_dim <= 0 {
            return Err(ModelError::InvalidConfig(format!(
                "action size must be positive, got {action_dim}"
            )));
        }
        crate::error::check_model_file(&path)?;
        let mut module =
            CModule::load_on_device(&path, device).map_err(|e| ModelError::NotTorchScript {
                path: path.clone(),
                reason: load_failure(&e),
            })?;
        let name = format!("torchscript:{}", path.display());
        module
            .f_set_eval()
            .ctx(|| format!("{name}: switching to eval mode"))?;
        if precision != Precision::Fp32 {
            convert_module(&mut module, device, precision.kind(), &name)?;
        }
        for (pname, mut p) in module
            .named_parameters()
            .ctx(|| format!("{name}: listing parameters"))?
        {
            let _ = p
                .f_requires_grad_(false)
                .ctx(|| format!("{name}: freezing parameter `{pname}`"))?;
        }
        for method in ["encode", "predict"] {
            if !has_method(&module, method) {
                return Err(ModelError::MissingMethod {
                    model: name,
                    method,
                });
            }
        }
        let has_rollout = has_method(&module, "rollout");
        let model = TorchScriptModel {
            module,
            name,
            path,
            device,
            obs_spec: obs_spec.clone(),
            action_dim,
            latent_shape: Vec::new(),
            has_rollout,
            precision,
        };
        let model = probe_with_time_limit(model)?;
        tracing::debug!(
            model = %model.name,
            latent = %fmt_shape(&model.latent_shape),
            rollout = model.has_rollout,
            precision = %model.precision,
            "loaded TorchScript world model"
        );
        Ok(model)
    }

    /// Runs every method once on seeded random inputs and records the latent shape.
    /// (Called through [`probe_with_time_limit`].)
    fn probe(&mut self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let b = PROBE_BATCH;
        let mut inputs = Vec::new();
        for (k, f) in self.obs_spec.fields().iter().enumerate() {
            let mut size = vec![b];
            size.extend(f.shape.iter().map(|&d| d as i64));
            // Images arrive scaled to [0, 1]; vectors are normalised-ish values.
            let (lo, hi) = match f.dtype {
                Dtype::U8 => (0.0, 1.0),
                Dtype::F32 => (-1.0, 1.0),
            };
            let t = seeded_uniform(&size, lo, hi, 0x5eed + k as u64, self.device)?;
            inputs.push((f.name.clone(), t));
        }
        let z = self.call_encode(inputs)?;
        let z_size = z.size();
        let site = Site {
            model: &self.name,
            method: "encode",
        };
        if z_size.len() < 2 || z_size[0] != b {
            return Err(site.shape_err("output", format!("[B={b}, *latent_shape]"), &z_size));
        }
        site.check_finite(&z)?;
        self.latent_shape = z_size[1..].to_vec();

        let a = seeded_uniform(&[b, self.action_dim], -1.0, 1.0, 0xac7, self.device)?;
        let next = self.predict_raw(&z, &a)?;
        Site {
            model: &self.name,
            method: "predict",
        }
        .check_finite(&next)?;

        if self.has_rollout {
            let actions = seeded_uniform(
                &[b, PROBE_HORIZON, self.action_dim],
                -1.0,
                1.0,
                0xac8,
                self.device,
            )?;
            let zs = self.rollout_fused(&z, &actions)?;
            Site {
                model: &self.name,
                method: "rollout",
            }
            .check_finite(&zs)?;
            self.warn_if_rollout_disagrees(&z, &actions, &zs)?;
        }
        Ok(())
    }

    /// The contract says `rollout` equals `predict` looped; a model that breaks it still loads
    /// (the fused method may legitimately differ in the last bits), with a warning.
    fn warn_if_rollout_disagrees(&self, z: &Tensor, actions: &Tensor, zs: &Tensor) -> Result<()> {
        let mut cur = z.shallow_clone();
        let mut worst = 0f64;
        for t in 0..PROBE_HORIZON {
            let a = actions.f_select(1, t).ctx(|| "probe".into())?;
            cur = self.predict_raw(&cur, &a)?;
            let diff = zs
                .f_select(1, t)
                .and_then(|r| r.f_sub(&cur))
                .and_then(|d| d.f_abs())
                .and_then(|d| d.f_max())
                .and_then(|m| m.f_double_value(&[]))
                .ctx(|| "probe".into())?;
            let scale = cur
                .f_abs()
                .and_then(|c| c.f_max())
                .and_then(|m| m.f_double_value(&[]))
                .unwrap_or(1.0);
            worst = worst.max(diff / (1.0 + scale));
        }
        if worst > self.precision.tolerance() {
            tracing::warn!(
                model = %self.name,
                "`rollout` disagrees with looped `predict` on the probe (relative difference {worst:.2e})"
            );
        }
        Ok(())
    }

    /// Calls `encode` with float32 fields (one tensor alone, or a `Dict[str, Tensor]`),
    /// converted to the model's precision; checks the output's kind and returns it as float32.
    fn call_encode(&self, fields: Vec<(String, Tensor)>) -> Result<Tensor> {
        let described: Vec<String> = fields
            .iter()
            .map(|(n, t)| format!("{n} {}", fmt_shape(&t.size())))
            .collect();
        let fields = fields
            .into_iter()
            .map(|(n, t)| Ok((n, self.input(&t)?)))
            .collect::<Result<Vec<_>>>()?;
        let input = if fields.len() == 1 {
            IValue::Tensor(
                fields
                    .into_iter()
                    .next()
                    .map(|(_, t)| t)
                    .unwrap_or_default(),
            )
        } else {
            IValue::GenericDict(
                fields
                    .into_iter()
                    .map(|(n, t)| (IValue::String(n), IValue::Tensor(t)))
                    .collect(),
            )
        };
        let kind = if described.len() == 1 {
            "a tensor"
        } else {
            "a Dict[str, Tensor]"
        };
        let out = self
            .module
            .method_is("encode", &[input])
            .map_err(|source| ModelError::Torch {
                context: format!(
                    "model `{}`: `encode` failed on {kind} ({}) (does the model expect these inputs? see the image contract in models/README.md){}",
                    self.name,
                    described.join(", "),
                    self.precision_hint()
                ),
                source,
            })?;
        match out {
            IValue::Tensor(t) => self.output("encode", t),
            other => Err(ModelError::WrongKind {
                model: self.name.clone(),
                method: "encode",
                what: "output",
                actual: format!("{:?}", ivalue_kind(&other)),
                expected: "a tensor",
            }),
        }
    }

    /// An input converted to the precision the module computes in.
    fn input(&self, t: &Tensor) -> Result<Tensor> {
        to_kind(t, self.precision.kind())
    }

    /// A method's output checked for its kind (float32, or with bf16 also bfloat16) and
    /// returned as float32.
    fn output(&self, method: &'static str, t: Tensor) -> Result<Tensor> {
        Site {
            model: &self.name,
            method,
        }
        .check_precision("output", &t, self.precision)?;
        to_kind(&t, Kind::Float)
    }

    /// What to add to a method's failure in bf16 (empty in fp32).
    fn precision_hint(&self) -> &'static str {
        match self.precision {
            Precision::Fp32 => "",
            Precision::Bf16 => {
                " (precision bf16: the module's parameters and inputs are bfloat16; tensors it creates must take their dtype from its inputs, e.g. torch.zeros(n, dtype=z.dtype))"
            }
        }
    }

    /// Calls a method of the module with its inputs converted to the model's precision;
    /// `shape_hint` names the input in the error. The output is returned as the module gave
    /// it.
    fn call(&self, method: &str, inputs: &[&Tensor], shape_hint: &[i64]) -> Result<Tensor> {
        let inputs = inputs
            .iter()
            .map(|t| self.input(t))
            .collect::<Result<Vec<_>>>()?;
        self.module
            .method_ts(method, &inputs)
            .map_err(|source| ModelError::Torch {
                context: format!(
                    "model `{}`: `{method}` failed on input of shape {} (does the model expect this shape?){}",
                    self.name,
                    fmt_shape(shape_hint),
                    self.precision_hint()
                ),
                source,
            })
    }

    /// One `predict` call with the output checked against `[B, *latent_shape]`.
    fn predict_raw(&self, z: &Tensor, a: &Tensor) -> Result<Tensor> {
        let next = self.output("predict", self.call("predict", &[z, a], &z.size())?)?;
        let site = Site {
            model: &self.name,
            method: "predict",
        };
        let b = z.size().first().copied().unwrap_or(-1);
        site.check_shape("output", &next, &[("B", b)], &self.latent_shape)?;
        Ok(next)
    }

    /// The module's own `rollout`, output checked against `[B, H, *latent_shape]`.
    fn rollout_fused(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor> {
        let size = actions.size();
        let zs = self.output("rollout", self.call("rollout", &[z0, actions], &size)?)?;
        let site = Site {
            model: &self.name,
            method: "rollout",
        };
        let (b, h) = match size.as_slice() {
            [b, h, ..] => (*b, *h),
            _ => (-1, -1),
        };
        site.check_shape("output", &zs, &[("B", b), ("H", h)], &self.latent_shape)?;
        Ok(zs)
    }

    /// Validates inputs and rolls out in the caller's grad mode.
    fn rollout_impl(&self, z0: &Tensor, actions: &Tensor, method: &'static str) -> Result<Tensor> {
        let site = Site {
            model: &self.name,
            method,
        };
        let z0 = to_float_on(z0, self.device)?;
        let actions = to_float_on(actions, self.device)?;
        let b = z0.size().first().copied().unwrap_or(-1);
        site.check_shape("input `z0`", &z0, &[("B", b)], &self.latent_shape)?;
        let h = actions.size().get(1).copied().unwrap_or(-1);
        site.check_shape(
            "input `actions`",
            &actions,
            &[("B", b), ("H", h)],
            &[self.action_dim],
        )?;
        if h == 0 {
            let mut size = vec![b, 0];
            size.extend_from_slice(&self.latent_shape);
            return Tensor::f_zeros(&size, (tch::Kind::Float, self.device))
                .ctx(|| "empty rollout".into());
        }
        if self.has_rollout {
            return self.rollout_fused(&z0, &actions);
        }
        let mut z = z0;
        let mut out = Vec::with_capacity(h as usize);
        for t in 0..h {
            let a = actions
                .f_select(1, t)
                .ctx(|| format!("{}: selecting action step {t}", self.name))?;
            z = self.predict_raw(&z, &a)?;
            out.push(z.shallow_clone());
        }
        Tensor::f_stack(&out, 1).ctx(|| format!("{}: stacking the rollout", self.name))
    }

    /// One prediction step: `predict(z [B, *latent_shape], action [B, A]) -> [B, *latent_shape]`,
    /// without autograd.
    pub fn predict(&self, z: &Tensor, action: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let site = Site {
            model: &self.name,
            method: "predict",
        };
        let z = to_float_on(z, self.device)?;
        let action = to_float_on(action, self.device)?;
        let b = z.size().first().copied().unwrap_or(-1);
        site.check_shape("input `z`", &z, &[("B", b)], &self.latent_shape)?;
        site.check_shape("input `action`", &action, &[("B", b)], &[self.action_dim])?;
        self.predict_raw(&z, &action)
    }

    /// Whether the module has its own `rollout` method (otherwise `predict` is looped).
    pub fn has_rollout(&self) -> bool {
        self.has_rollout
    }

    /// The file the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl WorldModel for TorchScriptModel {
    fn name(&self) -> &str {
        &self.name
    }
    fn device(&self) -> Device {
        self.device
    }
    fn obs_spec(&self) -> &ObsSpec {
        &self.obs_spec
    }
    fn action_dim(&self) -> i64 {
        self.action_dim
    }
    fn latent_shape(&self) -> &[i64] {
        &self.latent_shape
    }

    fn encode(&self, obs: &ObsBatch) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let site = Site {
            model: &self.name,
            method: "encode",
        };
        let b = obs.batch_size();
        let mut inputs = Vec::with_capacity(self.obs_spec.fields().len());
        for f in self.obs_spec.fields() {
            let t = obs.float(&f.name, &self.name, self.device)?;
            let shape: Vec<i64> = f.shape.iter().map(|&d| d as i64).collect();
            site.check_shape(
                &format!("observation field `{}`", f.name),
                &t,
                &[("B", b)],
                &shape,
            )?;
            inputs.push((f.name.clone(), t));
        }
        let z = self.call_encode(inputs)?;
        site.check_shape("output", &z, &[("B", b)], &self.latent_shape)?;
        Ok(z)
    }

    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        self.rollout_impl(z0, actions, "rollout")
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn supports_grad(&self) -> bool {
        true
    }

    fn rollout_grad(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor> {
        tch::with_grad(|| self.rollout_impl(z0, actions, "rollout_grad"))
    }
}

/// Converts the module's floating-point parameters and buffers to `kind` on `device`
/// (`module.to(device, dtype)`). tch's `CModule::to` has no fallible form and panics on a
/// libtorch error; the panic is caught here and returned as [`ModelError::Torch`].
fn convert_module(module: &mut CModule, device: Device, kind: Kind, name: &str) -> Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        module.to(device, kind, false)
    }))
    .map_err(|payload| {
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "libtorch failed".into());
        ModelError::Torch {
            context: format!("{name}: converting the module's parameters to {kind:?}"),
            source: tch::TchError::Torch(text),
        }
    })
}

/// A short name for an IValue's variant (for errors).
fn ivalue_kind(v: &IValue) -> &'static str {
    match v {
        IValue::None => "None",
        IValue::Tensor(_) => "Tensor",
        IValue::Double(_) => "float",
        IValue::Int(_) => "int",
        IValue::Bool(_) => "bool",
        IValue::Tuple(_) => "tuple",
        IValue::String(_) => "str",
        IValue::GenericDict(_) => "dict",
        IValue::GenericList(_) | IValue::TensorList(_) => "list",
        _ => "another value",
    }
}

/// Why libtorch could not load a file, with a hint for the common mistakes.
fn load_failure(err: &tch::TchError) -> String {
    let text = summarize(err);
    let text = text
        .split(" This is an internal miniz error")
        .next()
        .unwrap_or(&text)
        .to_string();
    if text.contains("constants.pkl") {
        format!("{text} (this looks like torch.save of a Python object, not a scripted module)")
    } else if text.contains("not a ZIP archive") {
        format!("{text} (not a file written by torch.jit.save)")
    } else {
        text
    }
}

/// Whether the module has a method called `name`.
///
/// tch exposes no method list, so we call the method with no arguments: libtorch answers
/// "Method 'name' is not defined" for a missing one and a schema error (missing argument)
/// without running anything for one that exists.
fn has_method(module: &CModule, name: &str) -> bool {
    match module.method_is::<IValue>(name, &[]) {
        Ok(_) => true,
        Err(e) => !e
            .to_string()
            .contains(&format!("Method '{name}' is not defined")),
    }
}
