//! The native JEPA networks as a shareable, inference-only world model.

use super::config::JepaConfig;
use super::nets::{Frozen, JepaNets};
use crate::{ModelError, ObsBatch, Precision, Result, WorldModel};
use std::path::Path;
use std::sync::Mutex;
use tch::{Device, Tensor};
use zplan_obs::{Dtype, FieldSpec, ObsSpec, IMAGE, PROPRIO, STATE};

/// The observation fields a JEPA of `c` reads: a state vector, or an image (u8
/// `[C, H, W]`) plus, with `obs_dim > 0`, a proprio vector.
fn obs_spec_of(c: &JepaConfig) -> ObsSpec {
    let Some(im) = &c.image else {
        return crate::obs::state_spec(c.obs_dim.max(1) as usize);
    };
    let mut fields = vec![FieldSpec {
        name: IMAGE.into(),
        dtype: Dtype::U8,
        shape: vec![im.channels as usize, im.height as usize, im.width as usize],
        names: Vec::new(),
    }];
    if c.obs_dim > 0 {
        fields.push(FieldSpec::unnamed(PROPRIO, c.obs_dim as usize));
    }
    ObsSpec::new(fields).unwrap_or_else(|_| crate::obs::state_spec(1))
}

/// A native JEPA world model for planning: [`JepaNets`] behind the [`WorldModel`] trait.
///
/// Latent shape `[latent_dim]`. `encode` normalises observations with the statistics stored
/// next to the weights; `rollout` loops the residual predictor over the horizon in Rust with one
/// batched call per step, under `no_grad`; `rollout_grad` records autograd with respect to the
/// inputs only (the weights are detached from the training graph).
///
/// # Why it is `Sync` without `unsafe`
/// `tch::Tensor` is `Send` but not `Sync`, because a `&Tensor` allows in-place mutation from
/// several threads. This model keeps its (detached) weight handles in a `Mutex` and, on each
/// call, locks it only long enough to take new handles on the same storage (reference-count
/// bumps, a few microseconds), then computes unlocked. Each thread thus owns its handles, and
/// the shared storage is only ever read: the weights are never mutated after construction.
pub struct JepaModel {
    name: String,
    device: Device,
    obs_spec: ObsSpec,
    action_dim: i64,
    latent_shape: Vec<i64>,
    proprio_latent: Option<std::ops::Range<usize>>,
    precision: Precision,
    frameskip: usize,
    frozen: Mutex<Frozen>,
    nets: Mutex<JepaNets>,
}

impl std::fmt::Debug for JepaModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JepaModel")
            .field("name", &self.name)
            .field("device", &self.device)
            .field("latent_shape", &self.latent_shape)
            .field("precision", &self.precision)
            .finish_non_exhaustive()
    }
}

impl JepaModel {
    pub(crate) fn from_nets(nets: JepaNets, source: Option<&Path>) -> Self {
        let name = match source {
            Some(p) => format!("jepa:{}", p.display()),
            None => "jepa:<in memory>".to_string(),
        };
        let mut frozen = nets.frozen_view(true);
        frozen.name = name.clone();
        let c = &nets.config;
        JepaModel {
            device: nets.device(),
            obs_spec: obs_spec_of(c),
            action_dim: c.action_dim,
            latent_shape: vec![c.latent_dim],
            proprio_latent: c.proprio_latent(),
            precision: Precision::Fp32,
            frameskip: c.frameskip.max(1),
            name,
            frozen: Mutex::new(frozen),
            nets: Mutex::new(nets),
        }
    }

    /// Freshly initialised networks (seeded by `config.seed`) as a model.
    ///
    /// # Errors
    /// [`crate::ModelError::InvalidConfig`] for invalid sizes.
    pub fn new(config: JepaConfig, device: Device) -> Result<Self> {
        Ok(JepaNets::new(config, device)?.into_model())
    }

    /// Loads `<name>.safetensors` + `<name>.json` (see [`JepaNets::load`]); `path` may name
    /// either file or their common stem.
    ///
    /// # Errors
    /// As [`JepaNets::load`].
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Self> {
        let nets = JepaNets::load(path.as_ref(), device)?;
        let model = JepaModel::from_nets(nets, Some(path.as_ref()));
        model.probe()?;
        Ok(model)
    }

    /// Loads like [`JepaModel::load`], then converts to `precision` ([`JepaModel::with_precision`]).
    ///
    /// # Errors
    /// As [`JepaModel::load`] and [`JepaModel::with_precision`].
    pub fn load_with_precision(
        path: impl AsRef<Path>,
        device: Device,
        precision: Precision,
    ) -> Result<Self> {
        JepaModel::load(path, device)?.with_precision(precision)
    }

    /// The model computing in `precision`: with [`Precision::Bf16`] the encoder's and
    /// predictor's weights are converted to bfloat16 (a copy used for inference; the float32
    /// networks are kept, so [`JepaModel::save`] and [`JepaModel::into_nets`] still give the
    /// float32 weights), observations are normalised in float32 and encoded in bfloat16,
    /// latents stay bfloat16 between predictor steps, and `encode`, `rollout`,
    /// `rollout_grad` and `predict` return float32. The model is probed again (encode and a
    /// two-step rollout must stay finite).
    ///
    /// # Errors
    /// [`ModelError::Torch`] when libtorch cannot convert the weights;
    /// [`ModelError::NonFinite`] when the converted model's probe overflows.
    pub fn with_precision(self, precision: Precision) -> Result<Self> {
        if precision == self.precision {
            return Ok(self);
        }
        let fp32 = self
            .nets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .frozen_view(true);
        let mut frozen = fp32.to_kind(precision.kind())?;
        frozen.name = self.name.clone();
        let model = JepaModel {
            precision,
            frozen: Mutex::new(frozen),
            ..self
        };
        model.probe()?;
        Ok(model)
    }

    /// Encodes two seeded random observations of the model's spec and rolls them two steps
    /// forward: weights that are finite but absurd (every entry 1e38) overflow here, at load,
    /// instead of in every plan.
    fn probe(&self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let mut batch: Option<ObsBatch> = None;
        for (k, f) in self.obs_spec().fields().iter().enumerate() {
            let mut size = vec![2i64];
            size.extend(f.shape.iter().map(|&d| d as i64));
            let t = match f.dtype {
                Dtype::U8 => {
                    crate::util::seeded_uniform(&size, 0.0, 255.0, 0x5eed + k as u64, Device::Cpu)?
                        .f_to_kind(tch::Kind::Uint8)?
                }
                Dtype::F32 => {
                    crate::util::seeded_uniform(&size, -1.0, 1.0, 0x5eed + k as u64, Device::Cpu)?
                }
            };
            let t = t.f_to_device(self.device)?;
            batch = Some(match batch {
                None => ObsBatch::single(&f.name, t),
                Some(b) => b.with(&f.name, t)?,
            });
        }
        let Some(batch) = batch else {
            return Ok(());
        };
        let non_finite = |method| ModelError::NonFinite {
            model: self.name.clone(),
            method,
        };
        let z = self.encode(&batch)?;
        if !crate::util::all_finite(&z)? {
            return Err(non_finite("encode"));
        }
        let actions =
            crate::util::seeded_uniform(&[2, 2, self.action_dim()], -1.0, 1.0, 0xac7, self.device)?;
        let zs = self.rollout(&z, &actions)?;
        if !crate::util::all_finite(&zs)? {
            return Err(non_finite("rollout"));
        }
        Ok(())
    }

    /// Saves weights and sidecar (see [`JepaNets::save`]).
    ///
    /// # Errors
    /// As [`JepaNets::save`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.nets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .save(path)
    }

    /// Architecture sizes.
    pub fn config(&self) -> JepaConfig {
        self.frozen().config
    }

    /// The scenario stored in the sidecar (a serialised `zplan_sim::ScenarioConfig`), if any.
    pub fn scenario_json(&self) -> Option<serde_json::Value> {
        self.nets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .scenario
            .clone()
    }

    /// The scenario stored in the sidecar, parsed.
    ///
    /// # Errors
    /// [`crate::ModelError::Sidecar`] if the stored JSON is not a valid scenario config.
    #[cfg(feature = "sim")]
    pub fn scenario_config(&self) -> Result<Option<zplan_sim::ScenarioConfig>> {
        self.nets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .scenario_config()
    }

    /// The free-form training information stored in the sidecar.
    pub fn training_info(&self) -> serde_json::Value {
        self.nets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .training
            .clone()
    }

    /// Gives the networks back, e.g. to fine-tune them.
    pub fn into_nets(self) -> JepaNets {
        self.nets.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// One predictor step `z [B, latent_dim]`, `action [B, action_dim]` → `[B, latent_dim]`,
    /// without autograd (K control steps with the action held when `config.frameskip = K`).
    pub fn predict(&self, z: &Tensor, action: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        self.frozen().predict(z, action, "predict")
    }

    /// New handles on the weights for one computation (see the type's docs).
    fn frozen(&self) -> Frozen {
        self.frozen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shallow_clone()
    }
}

impl WorldModel for JepaModel {
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
        let frozen = self.frozen();
        if frozen.config.is_pixel() {
            let image = obs.field(IMAGE).ok_or_else(|| ModelError::MissingField {
                model: self.name.clone(),
                field: IMAGE.into(),
                present: obs
                    .fields()
                    .map(|(n, _)| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            let vector = if frozen.config.obs_dim > 0 {
                obs.float(PROPRIO, &self.name, self.device)?
            } else {
                Tensor::f_zeros([obs.batch_size(), 0], (tch::Kind::Float, self.device)).map_err(
                    |source| ModelError::Torch {
                        context: "empty proprio".into(),
                        source,
                    },
                )?
            };
            return frozen.encode_obs(image, &vector, "encode");
        }
        let state = obs.float(STATE, &self.name, self.device)?;
        frozen.encode(&state, "encode")
    }

    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        self.frozen().rollout(z0, actions, "rollout")
    }

    fn rollout_owned(&self, z0: &Tensor, actions: &Tensor) -> Result<crate::Rollout> {
        let pred = self.rollout(z0, actions)?;
        // SAFETY: `Frozen::rollout` returns a tensor it has just created (`Tensor::stack` of
        // the steps, its float32 conversion when computing in bfloat16, or `zeros` for an
        // empty horizon) and keeps no handle to; nothing else can reach its storage.
        Ok(unsafe { crate::Rollout::exclusive(pred) })
    }

    fn proprio_latent(&self) -> Option<std::ops::Range<usize>> {
        self.proprio_latent.clone()
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn frameskip(&self) -> usize {
        self.frameskip
    }

    fn supports_grad(&self) -> bool {
        true
    }

    fn rollout_grad(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor> {
        let frozen = self.frozen();
        tch::with_grad(|| frozen.rollout(z0, actions, "rollout_grad"))
    }
}
