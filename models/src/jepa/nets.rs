//! The trainable JEPA networks: encoder, predictor and optional inverse-dynamics head.

use super::config::{JepaConfig, ObsNorm};
use super::encoder::ObsEncoder;
use super::mlp::Mlp;
use super::sidecar::{jepa_paths, JepaSidecar, SIDECAR_FORMAT, SIDECAR_VERSION};
use crate::error::TchContext;
use crate::util::{fmt_shape, Site};
use crate::{ModelError, Result};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// The networks of a native JEPA world model, with their [`nn::VarStore`] exposed for training.
///
/// All methods run in the caller's grad mode: a trainer calls them with grad enabled and
/// optimises `vs` (e.g. `nn::AdamW::default().build(&nets.vs, lr)`); for planning, turn the
/// networks into a [`super::JepaModel`] with [`JepaNets::into_model`].
///
/// Variables: `encoder.*`, `predictor.*`, with proprio fields `proprio_encoder.*`, and with an
/// inverse head `inverse.*`; these are the tensor names in the safetensors file.
pub struct JepaNets {
    /// All trainable variables (encoder, predictor, inverse head).
    pub vs: nn::VarStore,
    /// Architecture sizes.
    pub config: JepaConfig,
    /// Observation (normalised) → latent.
    pub encoder: ObsEncoder,
    /// `[z, a]` → latent change (the predictor adds it to `z`).
    pub predictor: Mlp,
    /// `[z_t, z_{t+1}]` → action, when `config.inverse_layers > 0`.
    pub inverse: Option<Mlp>,
    /// The scenario the networks are trained for (a serialised `zplan_sim::ScenarioConfig`).
    pub scenario: Option<serde_json::Value>,
    /// Free-form training information, saved in the sidecar.
    pub training: serde_json::Value,
    obs_norm: ObsNorm,
    norm_mean: Tensor,
    norm_inv_std: Tensor,
}

impl std::fmt::Debug for JepaNets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JepaNets")
            .field("config", &self.config)
            .field("device", &self.vs.device())
            .field("encoder", &self.encoder)
            .field("predictor", &self.predictor)
            .field("inverse", &self.inverse)
            .finish_non_exhaustive()
    }
}

/// Normalisation tensors `(mean, 1/std)` on `device`.
fn norm_tensors(norm: &ObsNorm, device: Device) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = norm.std.iter().map(|s| 1.0 / s).collect();
    let mean = Tensor::f_from_slice(&norm.mean).and_then(|t| t.f_to_device(device));
    let inv = Tensor::f_from_slice(&inv).and_then(|t| t.f_to_device(device));
    Ok((
        mean.ctx(|| "observation mean".into())?,
        inv.ctx(|| "observation std".into())?,
    ))
}

impl JepaNets {
    /// Builds freshly initialised networks on `device`, with identity observation normalisation.
    ///
    /// Initialisation is deterministic: weights are drawn from a ChaCha8 stream seeded with
    /// `config.seed` (not from libtorch's global RNG, which `tch::manual_seed` shares across
    /// threads), so the same config gives bit-identical networks anywhere.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for invalid sizes.
    pub fn new(config: JepaConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
        let c = &config;
        let encoder = ObsEncoder::new(&root, c, &mut rng)?;
        let predictor = Mlp::new(
            &(&root / "predictor"),
            &c.predictor_dims(),
            c.activation,
            c.layer_norm,
            &mut rng,
        )?;
        let inverse = if c.has_inverse() {
            Some(Mlp::new(
                &(&root / "inverse"),
                &c.inverse_dims(),
                c.activation,
                c.layer_norm,
                &mut rng,
            )?)
        } else {
            None
        };
        let obs_norm = ObsNorm::identity(c.obs_dim as usize);
        let (norm_mean, norm_inv_std) = norm_tensors(&obs_norm, device)?;
        Ok(JepaNets {
            vs,
            config,
            encoder,
            predictor,
            inverse,
            scenario: None,
            training: serde_json::Value::Null,
            obs_norm,
            norm_mean,
            norm_inv_std,
        })
    }

    /// Records the scenario the networks are trained for (saved in the sidecar).
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] if the scenario cannot be serialised.
    #[cfg(feature = "sim")]
    pub fn set_scenario(&mut self, scenario: &zplan_sim::ScenarioConfig) -> Result<()> {
        let value = serde_json::to_value(scenario).map_err(|e| {
            ModelError::InvalidConfig(format!("cannot serialise the scenario: {e}"))
        })?;
        self.scenario = Some(value);
        Ok(())
    }

    /// The scenario the networks were trained for, if recorded.
    ///
    /// # Errors
    /// [`ModelError::Sidecar`] if the stored JSON is not a valid scenario config.
    #[cfg(feature = "sim")]
    pub fn scenario_config(&self) -> Result<Option<zplan_sim::ScenarioConfig>> {
        self.scenario
            .as_ref()
            .map(|v| crate::spec::scenario_from_json(v, Path::new("<sidecar>")))
            .transpose()
    }

    /// Device of the variables.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The observation normalisation applied by [`JepaNets::encode`].
    pub fn obs_norm(&self) -> &ObsNorm {
        &self.obs_norm
    }

    /// Sets the observation normalisation (set it from the training data before training and
    /// before creating a [`TargetEncoder`], which copies it).
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for wrong sizes or non-finite/non-positive entries.
    pub fn set_obs_norm(&mut self, norm: ObsNorm) -> Result<()> {
        norm.validate(self.config.obs_dim as usize)?;
        let (m, s) = norm_tensors(&norm, self.device())?;
        self.obs_norm = norm;
        self.norm_mean = m;
        self.norm_inv_std = s;
        Ok(())
    }

    /// Parameter count (all variables).
    pub fn num_parameters(&self) -> i64 {
        self.vs.variables().values().map(|t| t.numel() as i64).sum()
    }

    /// Normalises observations `[B, obs_dim]` with [`JepaNets::obs_norm`] (what `encode` feeds
    /// the encoder; useful to normalise a data set once and call `encoder.forward` directly).
    pub fn normalize_obs(&self, obs: &Tensor) -> Result<Tensor> {
        let site = Site {
            model: "jepa",
            method: "normalize_obs",
        };
        let b = obs.size().first().copied().unwrap_or(-1);
        site.check_shape("input `obs`", obs, &[("B", b)], &[self.config.obs_dim])?;
        obs.f_sub(&self.norm_mean)
            .and_then(|x| x.f_mul(&self.norm_inv_std))
            .ctx(|| "normalising observations".into())
    }

    /// Encodes observations `[B, obs_dim]` (normalised inside) into latents `[B, latent_dim]`.
    pub fn encode(&self, obs: &Tensor) -> Result<Tensor> {
        self.frozen_view(false).encode(obs, "encode")
    }

    /// Encodes camera observations of a pixel model: images `[B, C, H, W]` (u8, or float in
    /// `[0, 1]`) and proprio vectors `[B, obs_dim]` (normalised inside; `[B, 0]` without
    /// proprio) into latents `[B, latent_dim]`.
    pub fn encode_images(&self, image: &Tensor, vector: &Tensor) -> Result<Tensor> {
        self.frozen_view(false).encode_obs(image, vector, "encode")
    }

    /// As [`encode_images`](Self::encode_images), with each keypoint map's spread about its
    /// keypoint, `[B, count]`, for a keypoint head (`None` otherwise).
    pub fn encode_images_with_spread(
        &self,
        image: &Tensor,
        vector: &Tensor,
    ) -> Result<(Tensor, Option<Tensor>)> {
        self.frozen_view(false)
            .encode_obs_parts(image, vector, "encode")
    }

    /// One predictor step: `z [B, latent_dim]`, `action [B, action_dim]` → `z + f([z, a])`.
    /// With `config.frameskip = K > 1` one step covers K control steps, the action held.
    pub fn predict(&self, z: &Tensor, action: &Tensor) -> Result<Tensor> {
        self.frozen_view(false).predict(z, action, "predict")
    }

    /// Rolls `z0 [B, latent_dim]` forward under `actions [B, H, action_dim]`, returning the latents
    /// after each action, `[B, H, latent_dim]` (one batched predictor call per step; with
    /// `config.frameskip = K > 1`, one per block of K actions, their mean, the steps inside a
    /// block interpolated: see [`JepaConfig::frameskip`]).
    pub fn rollout(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor> {
        self.frozen_view(false).rollout(z0, actions, "rollout")
    }

    /// Inverse dynamics: `[z_t, z_{t+1}]` (each `[B, latent_dim]`) → predicted action `[B, action_dim]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] when the networks have no inverse head.
    pub fn inverse(&self, z: &Tensor, z_next: &Tensor) -> Result<Tensor> {
        let head = self.inverse.as_ref().ok_or_else(|| {
            ModelError::InvalidConfig(
                "these JEPA networks have no inverse-dynamics head (inverse_layers = 0)".into(),
            )
        })?;
        let x = Tensor::f_cat(&[z, z_next], -1).ctx(|| {
            format!(
                "inverse head: concatenating z {} and z_next {}",
                fmt_shape(&z.size()),
                fmt_shape(&z_next.size())
            )
        })?;
        head.forward(&x)
    }

    /// A target encoder: a separate copy of the encoder (own [`nn::VarStore`], frozen), for EMA
    /// or stop-gradient targets. Update it with [`TargetEncoder::ema_update`].
    pub fn target_encoder(&self) -> Result<TargetEncoder> {
        let mut vs = nn::VarStore::new(self.device());
        let encoder = ObsEncoder::new(
            &vs.root(),
            &self.config,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(0),
        )?;
        vs.freeze();
        let mut target = TargetEncoder {
            vs,
            encoder,
            obs_dim: self.config.obs_dim,
            norm_mean: self.norm_mean.shallow_clone(),
            norm_inv_std: self.norm_inv_std.shallow_clone(),
        };
        target.ema_update(self, 0.0)?;
        Ok(target)
    }

    /// A view of the networks for one computation; `detach` cuts it from autograd.
    pub(crate) fn frozen_view(&self, detach: bool) -> Frozen {
        let mlp = |m: &Mlp| {
            if detach {
                m.detached()
            } else {
                m.shallow_clone()
            }
        };
        Frozen {
            config: self.config.clone(),
            encoder: if detach {
                self.encoder.detached()
            } else {
                self.encoder.shallow_clone()
            },
            predictor: mlp(&self.predictor),
            norm_mean: self.norm_mean.shallow_clone(),
            norm_inv_std: self.norm_inv_std.shallow_clone(),
            name: "jepa".into(),
            kind: Kind::Float,
        }
    }

    /// The sidecar describing these networks.
    pub fn sidecar(&self) -> JepaSidecar {
        JepaSidecar {
            format: SIDECAR_FORMAT.into(),
            version: SIDECAR_VERSION,
            config: self.config.clone(),
            obs_norm: self.obs_norm.clone(),
            scenario: self.scenario.clone(),
            training: self.training.clone(),
            weights_sha256: None,
        }
    }

    /// Saves the weights to `<name>.safetensors` and the sidecar to `<name>.json`; `path` may be
    /// given as `<name>`, `<name>.safetensors` or `<name>.json`.
    ///
    /// # Errors
    /// [`ModelError::Io`] / [`ModelError::Weights`] when a file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let (weights, sidecar) = jepa_paths(path.as_ref());
        if let Some(dir) = weights.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
                action: "create directory",
                path: dir.to_path_buf(),
                cause: source,
            })?;
        }
        let vars: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        let named = vars
            .iter()
            .map(|(n, t)| {
                Ok((
                    n.clone(),
                    t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?,
                ))
            })
            .collect::<std::result::Result<Vec<_>, tch::TchError>>()
            .map_err(|e| ModelError::Weights {
                path: weights.clone(),
                reason: e.to_string(),
            })?;
        Tensor::write_safetensors(&named, &weights).map_err(|e| ModelError::Weights {
            path: weights.clone(),
            reason: e.to_string(),
        })?;
        let mut side = self.sidecar();
        side.weights_sha256 = Some(super::sidecar::sha256_file(&weights)?);
        side.write(&sidecar)
    }

    /// Loads networks saved by [`JepaNets::save`] onto `device`. The weights file must hold
    /// exactly the tensors the sidecar's architecture needs, with the same shapes, all finite.
    ///
    /// # Errors
    /// [`ModelError::NotFound`] for a missing file, [`ModelError::Sidecar`] for a bad sidecar,
    /// [`ModelError::Weights`] for unreadable or mismatched weights.
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Self> {
        let (weights, sidecar_path) = jepa_paths(path.as_ref());
        let sidecar = JepaSidecar::read(&sidecar_path)?;
        crate::error::check_model_file(&weights)?;
        super::sidecar::verify_weights(&weights, &sidecar_path, sidecar.weights_sha256.as_deref())?;
        let mut nets =
            JepaNets::new(sidecar.config.clone(), device).map_err(|e| ModelError::Sidecar {
                path: sidecar_path.clone(),
                reason: e.to_string(),
            })?;
        nets.set_obs_norm(sidecar.obs_norm)?;
        nets.scenario = sidecar.scenario;
        nets.training = sidecar.training;

        let bad = |reason: String| ModelError::Weights {
            path: weights.clone(),
            reason,
        };
        let loaded: BTreeMap<String, Tensor> = Tensor::read_safetensors(&weights)
            .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?
            .into_iter()
            .collect();
        let mut vars: BTreeMap<String, Tensor> = nets.vs.variables().into_iter().collect();
        if let Some(extra) = loaded.keys().find(|k| !vars.contains_key(*k)) {
            return Err(bad(format!(
                "unexpected tensor `{extra}`: the architecture in `{}` has no such variable",
                sidecar_path.display()
            )));
        }
        let _guard = tch::no_grad_guard();
        for (name, var) in vars.iter_mut() {
            let src = loaded
                .get(name)
                .ok_or_else(|| bad(format!("missing tensor `{name}`")))?;
            if src.size() != var.size() {
                return Err(bad(format!(
                    "tensor `{name}` has shape {}, the architecture in `{}` needs {}",
                    fmt_shape(&src.size()),
                    sidecar_path.display(),
                    fmt_shape(&var.size())
                )));
            }
            if !src.f_is_floating_point().unwrap_or(false) {
                return Err(bad(format!(
                    "tensor `{name}` is {:?}, expected float32",
                    src.kind()
                )));
            }
            if !crate::util::all_finite(src)? {
                return Err(bad(format!("tensor `{name}` contains NaN or Inf")));
            }
            let src = src
                .f_to_kind(Kind::Float)
                .and_then(|t| t.f_to_device(device))
                .map_err(|e| bad(e.to_string()))?;
            var.f_copy_(&src)
                .map_err(|e| bad(format!("copying `{name}`: {e}")))?;
        }
        Ok(nets)
    }

    /// Turns trained networks into a shareable inference model.
    pub fn into_model(self) -> super::JepaModel {
        super::JepaModel::from_nets(self, None)
    }
}

/// A frozen copy of the encoder for JEPA targets (EMA of the online encoder, or a fixed copy).
///
/// Its variables live in their own [`nn::VarStore`] (frozen: not trainable) with the same names as
/// the online encoder's, so [`TargetEncoder::ema_update`] pairs them by name.
pub struct TargetEncoder {
    /// The target's variables (`encoder.*`), frozen.
    pub vs: nn::VarStore,
    /// The target encoder network.
    pub encoder: ObsEncoder,
    obs_dim: i64,
    norm_mean: Tensor,
    norm_inv_std: Tensor,
}

impl std::fmt::Debug for TargetEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetEncoder")
            .field("encoder", &self.encoder)
            .finish_non_exhaustive()
    }
}

impl TargetEncoder {
    /// Encodes observations `[B, obs_dim]` (normalised with the statistics the online networks
    /// had when the target was created) without autograd.
    pub fn encode(&self, obs: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let site = Site {
            model: "jepa-target",
            method: "encode",
        };
        let b = obs.size().first().copied().unwrap_or(-1);
        site.check_shape("input `obs`", obs, &[("B", b)], &[self.obs_dim])?;
        let x = obs
            .f_sub(&self.norm_mean)
            .and_then(|x| x.f_mul(&self.norm_inv_std))
            .ctx(|| "target encoder: normalising observations".into())?;
        self.encoder.forward(&x)
    }

    /// Encodes camera observations (see [`JepaNets::encode_images`]) without autograd.
    pub fn encode_images(&self, image: &Tensor, vector: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let image = super::image::image_float(image, self.norm_mean.device())?;
        let x = vector
            .f_to_device(self.norm_mean.device())
            .and_then(|v| v.f_to_kind(Kind::Float))
            .and_then(|v| v.f_sub(&self.norm_mean))
            .and_then(|x| x.f_mul(&self.norm_inv_std))
            .ctx(|| "target encoder: normalising proprio".into())?;
        self.encoder.forward_image(&image, &x)
    }

    /// `target = decay * target + (1 - decay) * online` for every encoder variable (no autograd);
    /// `decay = 0` copies the online encoder.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for a decay outside `[0, 1]` or mismatched networks.
    pub fn ema_update(&mut self, online: &JepaNets, decay: f64) -> Result<()> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(ModelError::InvalidConfig(format!(
                "EMA decay must be in [0, 1], got {decay}"
            )));
        }
        let _guard = tch::no_grad_guard();
        let online_vars = online.vs.variables();
        for (name, mut t) in self.vs.variables() {
            let src = online_vars
                .get(&name)
                .filter(|s| s.size() == t.size())
                .ok_or_else(|| {
                    ModelError::InvalidConfig(format!(
                        "EMA update: online networks have no variable `{name}` of this shape"
                    ))
                })?;
            let _ = t
                .f_lerp_(src, 1.0 - decay)
                .ctx(|| format!("EMA update of `{name}`"))?;
        }
        Ok(())
    }
}

/// Handles on the inference weights for one call (encoder, predictor, normalisation).
///
/// `kind` is the element type of the encoder's and predictor's weights and of the latents
/// between predictor steps (float32, or bfloat16 for [`crate::Precision::Bf16`]). Inputs are
/// converted to it after the (float32) observation normalisation, and every result is
/// converted back to float32, so callers only ever see float32.
pub(crate) struct Frozen {
    pub config: JepaConfig,
    pub encoder: ObsEncoder,
    pub predictor: Mlp,
    pub norm_mean: Tensor,
    pub norm_inv_std: Tensor,
    pub name: String,
    pub kind: Kind,
}

impl Frozen {
    pub(crate) fn shallow_clone(&self) -> Frozen {
        Frozen {
            config: self.config.clone(),
            encoder: self.encoder.shallow_clone(),
            predictor: self.predictor.shallow_clone(),
            norm_mean: self.norm_mean.shallow_clone(),
            norm_inv_std: self.norm_inv_std.shallow_clone(),
            name: self.name.clone(),
            kind: self.kind,
        }
    }

    /// A copy whose encoder and predictor weights are converted to `kind` (new storage),
    /// computing in `kind`; the observation normalisation stays float32.
    pub(crate) fn to_kind(&self, kind: Kind) -> Result<Frozen> {
        Ok(Frozen {
            config: self.config.clone(),
            encoder: self.encoder.to_kind(kind)?,
            predictor: self.predictor.to_kind(kind)?,
            norm_mean: self.norm_mean.shallow_clone(),
            norm_inv_std: self.norm_inv_std.shallow_clone(),
            name: self.name.clone(),
            kind,
        })
    }

    /// `t` in the compute kind.
    fn compute(&self, t: &Tensor) -> Result<Tensor> {
        crate::util::to_kind(t, self.kind)
    }

    /// A result back in float32 (a no-op when computing in float32).
    fn output(t: &Tensor) -> Result<Tensor> {
        crate::util::to_kind(t, Kind::Float)
    }

    fn site(&self, method: &'static str) -> Site<'_> {
        Site {
            model: &self.name,
            method,
        }
    }

    fn device(&self) -> Device {
        self.norm_mean.device()
    }

    pub(crate) fn encode(&self, obs: &Tensor, method: &'static str) -> Result<Tensor> {
        let site = self.site(method);
        let b = obs.size().first().copied().unwrap_or(-1);
        site.check_shape("input `obs`", obs, &[("B", b)], &[self.config.obs_dim])?;
        let obs = crate::util::to_float_on(obs, self.device())?;
        let x = obs
            .f_sub(&self.norm_mean)
            .and_then(|x| x.f_mul(&self.norm_inv_std))
            .ctx(|| format!("{}: normalising observations", self.name))?;
        Self::output(&self.encoder.forward(&self.compute(&x)?)?)
    }

    /// A pixel model's encoding of images `[B, C, H, W]` and proprio vectors `[B, obs_dim]`.
    pub(crate) fn encode_obs(
        &self,
        image: &Tensor,
        vector: &Tensor,
        method: &'static str,
    ) -> Result<Tensor> {
        Ok(self.encode_obs_parts(image, vector, method)?.0)
    }

    /// [`encode_obs`](Self::encode_obs) with the keypoint maps' spreads (float32).
    pub(crate) fn encode_obs_parts(
        &self,
        image: &Tensor,
        vector: &Tensor,
        method: &'static str,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let site = self.site(method);
        let b = image.size().first().copied().unwrap_or(-1);
        site.check_shape(
            "input `proprio`",
            vector,
            &[("B", b)],
            &[self.config.obs_dim],
        )?;
        let image = super::image::image_float(image, self.device())?;
        let x = crate::util::to_float_on(vector, self.device())?
            .f_sub(&self.norm_mean)
            .and_then(|x| x.f_mul(&self.norm_inv_std))
            .ctx(|| format!("{}: normalising proprio", self.name))?;
        let (z, spread) = self
            .encoder
            .forward_image_parts(&self.compute(&image)?, &self.compute(&x)?)?;
        Ok((
            Self::output(&z)?,
            spread.map(|t| Self::output(&t)).transpose()?,
        ))
    }

    pub(crate) fn predict(
        &self,
        z: &Tensor,
        action: &Tensor,
        method: &'static str,
    ) -> Result<Tensor> {
        let site = self.site(method);
        let b = z.size().first().copied().unwrap_or(-1);
        site.check_shape("input `z`", z, &[("B", b)], &[self.config.latent_dim])?;
        site.check_shape(
            "input `action`",
            action,
            &[("B", b)],
            &[self.config.action_dim],
        )?;
        let z = self.compute(&crate::util::to_float_on(z, self.device())?)?;
        let action = self.compute(&crate::util::to_float_on(action, self.device())?)?;
        Self::output(&self.step(&z, &action)?)
    }

    /// `z + f([z, a])` without checks.
    fn step(&self, z: &Tensor, a: &Tensor) -> Result<Tensor> {
        let x = Tensor::f_cat(&[z, a], 1).ctx(|| format!("{}: predictor input", self.name))?;
        let dz = self.predictor.forward(&x)?;
        z.f_add(&dz).ctx(|| format!("{}: residual", self.name))
    }

    pub(crate) fn rollout(
        &self,
        z0: &Tensor,
        actions: &Tensor,
        method: &'static str,
    ) -> Result<Tensor> {
        let site = self.site(method);
        let b = z0.size().first().copied().unwrap_or(-1);
        site.check_shape("input `z0`", z0, &[("B", b)], &[self.config.latent_dim])?;
        let h = actions.size().get(1).copied().unwrap_or(-1);
        site.check_shape(
            "input `actions`",
            actions,
            &[("B", b), ("H", h)],
            &[self.config.action_dim],
        )?;
        let device = self.device();
        if h == 0 {
            return Tensor::f_zeros([b, 0, self.config.latent_dim], (Kind::Float, device))
                .ctx(|| "empty rollout".into());
        }
        let mut z = self.compute(&crate::util::to_float_on(z0, device)?)?;
        let actions = self.compute(&crate::util::to_float_on(actions, device)?)?;
        let mut out = Vec::with_capacity(h as usize);
        let k = self.config.frameskip.max(1) as i64;
        if k == 1 {
            for t in 0..h {
                let a = actions
                    .f_select(1, t)
                    .ctx(|| format!("{}: action step {t}", self.name))?;
                z = self.step(&z, &a)?;
                out.push(z.shallow_clone());
            }
        } else {
            // One predictor step per block of `k` actions (their mean), the steps inside a
            // block interpolated; a last, shorter block is interpolated part of the way.
            let mut t = 0;
            while t < h {
                let len = k.min(h - t);
                let a = actions
                    .f_narrow(1, t, len)
                    .and_then(|a| a.f_mean_dim(1, false, None))
                    .ctx(|| format!("{}: action block at step {t}", self.name))?;
                let next = self.step(&z, &a)?;
                for i in 1..=len {
                    out.push(if i == k {
                        next.shallow_clone()
                    } else {
                        z.f_lerp(&next, i as f64 / k as f64)
                            .ctx(|| format!("{}: interpolating step {}", self.name, t + i))?
                    });
                }
                z = next;
                t += len;
            }
        }
        let stacked =
            Tensor::f_stack(&out, 1).ctx(|| format!("{}: stacking the rollout", self.name))?;
        // A fresh float32 tensor either way: the stack itself, or its conversion.
        Self::output(&stacked)
    }
}
