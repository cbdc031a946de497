//! Architecture sizes and observation normalisation of the native JEPA networks.

use crate::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// Nonlinearity between hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Activation {
    /// Gaussian error linear unit (exact, not the tanh approximation).
    #[default]
    Gelu,
    /// Rectified linear unit.
    Relu,
    /// Sigmoid linear unit (swish).
    Silu,
    /// Hyperbolic tangent.
    Tanh,
}

/// Sizes of the native JEPA networks (state observations).
///
/// - encoder: MLP `obs_dim → enc_hidden (× enc_layers) → latent_dim`, applied to normalised
///   observations; with `proprio` fields (the agent's own state), two MLPs of the same depth:
///   the scene encoder (every other field → the first `latent_dim - proprio_latent_dim`
///   entries) and the proprio encoder (the `proprio` fields → the last `proprio_latent_dim`
///   entries), so an energy can weight the agent's latent apart from the scene's (DINO-WM's
///   proprio/visual split);
/// - predictor: residual MLP, `z' = z + f([z, a])` with
///   `f: latent_dim + action_dim → pred_hidden (× pred_layers) → latent_dim`;
/// - inverse-dynamics head (when `inverse_layers > 0`): MLP
///   `[z_t, z_{t+1}] → inverse_hidden (× inverse_layers) → action_dim`.
///
/// Stored in the sidecar file next to the weights, so loading rebuilds the same architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JepaConfig {
    /// Observation size.
    pub obs_dim: i64,
    /// Action size.
    pub action_dim: i64,
    /// Latent size.
    pub latent_dim: i64,
    /// Hidden width of the encoder.
    pub enc_hidden: i64,
    /// Hidden layers of the encoder (0 = a single linear map).
    pub enc_layers: usize,
    /// Hidden width of the predictor.
    pub pred_hidden: i64,
    /// Hidden layers of the predictor (0 = a single linear map).
    pub pred_layers: usize,
    /// Hidden width of the inverse-dynamics head.
    #[serde(default)]
    pub inverse_hidden: i64,
    /// Hidden layers of the inverse-dynamics head; 0 = no inverse head.
    #[serde(default)]
    pub inverse_layers: usize,
    /// Nonlinearity between hidden layers.
    #[serde(default)]
    pub activation: Activation,
    /// Layer normalisation after every hidden linear layer (before the nonlinearity).
    #[serde(default)]
    pub layer_norm: bool,
    /// Seed of the weight initialisation (a ChaCha8 stream, independent of libtorch's global
    /// RNG, so construction is reproducible on any thread).
    #[serde(default)]
    pub seed: u64,
    /// Observation indices of the agent's own state (proprioception), encoded apart from the
    /// rest; empty (the default) = one encoder for the whole observation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proprio: Vec<usize>,
    /// Latent entries (the last ones) of the proprio encoder; 0 without `proprio`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub proprio_latent_dim: i64,
    /// Image encoder for camera observations (`None`: a state-vector model). With it the
    /// model reads the `image` field through a CNN, which writes the first
    /// `latent_dim - proprio_latent_dim` latent entries, and, when `obs_dim > 0`, the
    /// `proprio` field (`obs_dim` entries, normalised) through the proprio MLP, which writes
    /// the last `proprio_latent_dim` (DINO-WM's visual/proprio split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<super::image::ImageEncoderConfig>,
    /// Control steps one predictor step covers (DINO-WM's frameskip; 1, the default, is one
    /// step per action). With `frameskip = k` the predictor maps `z_t` and an action held for
    /// `k` steps to `z_{t+k}` (it is trained on the mean action of each `k`-step window); a
    /// rollout averages each block of `k` actions, steps once per block, and fills the steps
    /// inside a block by linear interpolation between its ends. Planning with an action block
    /// that is a multiple of `k` then reads only the predictor's own outputs, at `1 / k` of
    /// the predictor calls.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub frameskip: usize,
}

/// `[inp, hidden × layers, out]`.
fn mlp_dims(inp: i64, hidden: i64, layers: usize, out: i64) -> Vec<i64> {
    let mut d = vec![inp];
    d.extend(std::iter::repeat_n(hidden, layers));
    d.push(out);
    d
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

impl JepaConfig {
    /// Defaults for state observations: latent 64, hidden 256, two hidden layers in encoder and
    /// predictor, GELU, no layer norm, no inverse head, seed 0.
    pub fn new(obs_dim: i64, action_dim: i64) -> Self {
        JepaConfig {
            obs_dim,
            action_dim,
            latent_dim: 64,
            enc_hidden: 256,
            enc_layers: 2,
            pred_hidden: 256,
            pred_layers: 2,
            inverse_hidden: 0,
            inverse_layers: 0,
            activation: Activation::Gelu,
            layer_norm: false,
            seed: 0,
            proprio: Vec::new(),
            proprio_latent_dim: 0,
            image: None,
            frameskip: 1,
        }
    }

    /// Defaults for camera observations: an image encoder for `[channels, height, width]`
    /// images (convolutions of 16, 32, 32 channels), `proprio_dim` proprio entries (0 = none;
    /// otherwise 8 latent entries for them), latent 64, predictor 256 × 2, layer norm.
    pub fn pixels(
        channels: i64,
        height: i64,
        width: i64,
        proprio_dim: i64,
        action_dim: i64,
    ) -> Self {
        JepaConfig {
            image: Some(super::image::ImageEncoderConfig::new(
                channels, height, width,
            )),
            proprio_latent_dim: if proprio_dim > 0 { 8 } else { 0 },
            enc_hidden: 64,
            enc_layers: 1,
            ..JepaConfig::new(proprio_dim, action_dim)
        }
    }

    /// Whether the model reads camera images.
    pub fn is_pixel(&self) -> bool {
        self.image.is_some()
    }

    /// The flattened latent entries that encode the `proprio` fields (the last
    /// `proprio_latent_dim`), or `None` without a proprio encoder.
    pub fn proprio_latent(&self) -> Option<std::ops::Range<usize>> {
        (!self.proprio.is_empty() || (self.is_pixel() && self.proprio_latent_dim > 0))
            .then(|| (self.latent_dim - self.proprio_latent_dim) as usize..self.latent_dim as usize)
    }

    /// Observation indices the scene encoder reads: every index not in `proprio`, ascending.
    pub fn scene_fields(&self) -> Vec<usize> {
        (0..self.obs_dim.max(0) as usize)
            .filter(|i| !self.proprio.contains(i))
            .collect()
    }

    /// Sizes `[in, hidden…, out]` of the encoder MLPs: the scene encoder (the whole
    /// observation without proprio fields) and, with proprio fields, the proprio encoder.
    pub fn encoder_dims(&self) -> (Vec<i64>, Option<Vec<i64>>) {
        let enc =
            |inp: usize, out: i64| mlp_dims(inp as i64, self.enc_hidden, self.enc_layers, out);
        if let Some(im) = &self.image {
            // The scene "MLP" of a pixel model is the CNN's output layer.
            let (c, h, w) = im.feature_shape();
            let scene = vec![c * h * w, self.latent_dim - self.proprio_latent_dim];
            let proprio =
                (self.obs_dim > 0).then(|| enc(self.obs_dim as usize, self.proprio_latent_dim));
            return (scene, proprio);
        }
        if self.proprio.is_empty() {
            return (enc(self.obs_dim.max(0) as usize, self.latent_dim), None);
        }
        (
            enc(
                self.scene_fields().len(),
                self.latent_dim - self.proprio_latent_dim,
            ),
            Some(enc(self.proprio.len(), self.proprio_latent_dim)),
        )
    }

    /// Sizes `[latent + action, hidden…, latent]` of the predictor MLP.
    pub fn predictor_dims(&self) -> Vec<i64> {
        mlp_dims(
            self.latent_dim + self.action_dim,
            self.pred_hidden,
            self.pred_layers,
            self.latent_dim,
        )
    }

    /// Sizes `[2 latent, hidden…, action]` of the inverse-dynamics head's MLP.
    pub fn inverse_dims(&self) -> Vec<i64> {
        mlp_dims(
            2 * self.latent_dim,
            self.inverse_hidden,
            self.inverse_layers,
            self.action_dim,
        )
    }

    /// Whether the configuration has an inverse-dynamics head.
    pub fn has_inverse(&self) -> bool {
        self.inverse_layers > 0
    }

    /// Checks that every size is positive (hidden widths only where layers use them).
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        self.validate_sizes()?;
        self.check_memory()
    }

    /// Estimated parameter count (saturating): encoder, predictor, inverse-dynamics head and
    /// proprio encoder, from the sizes alone (before anything is allocated).
    pub fn param_estimate(&self) -> u64 {
        let u = |v: i64| v.max(0) as u64;
        let mul = |a: u64, b: u64| a.saturating_mul(b);
        let mlp = |inp: u64, hidden: u64, layers: usize, out: u64| -> u64 {
            if layers == 0 {
                return mul(inp.saturating_add(1), out);
            }
            mul(inp.saturating_add(1), hidden)
                .saturating_add(mul(mul(hidden.saturating_add(1), hidden), layers as u64))
                .saturating_add(mul(hidden.saturating_add(1), out))
        };
        let (lat, act) = (u(self.latent_dim), u(self.action_dim));
        let encoder = match &self.image {
            Some(im) => {
                let mut c_in = u(im.channels);
                let mut convs = 0u64;
                for &w in &im.widths {
                    convs = convs.saturating_add(mul(mul(9, c_in), u(w)).saturating_add(u(w)));
                    c_in = u(w);
                }
                let (c, h, w) = im.feature_shape();
                let head = match im.head {
                    super::image::ImageHead::Linear => {
                        mul(mul(mul(u(c), u(h)), u(w)).saturating_add(1), lat)
                    }
                    super::image::ImageHead::Keypoints { count, context, .. } => {
                        mul(u(c).saturating_add(1), u(count)).saturating_add(mul(
                            mul(mul(u(c), u(h)), u(w)).saturating_add(1),
                            u(context),
                        ))
                    }
                };
                convs
                    .saturating_add(head)
                    .saturating_add(mul(mul(u(im.channels), u(im.height)), mul(u(im.width), 2)))
            }
            None => mlp(u(self.obs_dim), u(self.enc_hidden), self.enc_layers, lat),
        };
        let predictor = mlp(
            lat.saturating_add(act),
            u(self.pred_hidden),
            self.pred_layers,
            lat,
        );
        let inverse = mlp(
            mul(lat, 2),
            u(self.inverse_hidden),
            self.inverse_layers,
            act,
        );
        let proprio = mlp(
            self.proprio.len() as u64,
            u(self.enc_hidden),
            self.enc_layers.max(1),
            u(self.proprio_latent_dim),
        );
        encoder
            .saturating_add(predictor)
            .saturating_add(inverse)
            .saturating_add(proprio)
    }

    /// Refuses sizes whose weights (online and EMA target copies, f32) would not fit in the
    /// memory limit ([`zplan_io::memory_limit`]), with the estimate in the message.
    pub fn check_memory(&self) -> Result<()> {
        let params = self.param_estimate();
        zplan_io::check_memory(
            || {
                format!(
                    "JEPA with latent_dim {}, pred_hidden {}, action_dim {} (about {params} parameters)",
                    self.latent_dim, self.pred_hidden, self.action_dim
                )
            },
            zplan_io::bytes_of(&[params, 4, 2]),
        )
        .map_err(|e| ModelError::InvalidConfig(e.to_string()))
    }

    fn validate_sizes(&self) -> Result<()> {
        if !(1..=64).contains(&self.frameskip) {
            return Err(ModelError::InvalidConfig(format!(
                "JepaConfig.frameskip must be between 1 and 64 control steps, got {}",
                self.frameskip
            )));
        }
        if let Some(im) = &self.image {
            return self.validate_pixel(im);
        }
        let mut checks = vec![
            ("obs_dim", self.obs_dim),
            ("action_dim", self.action_dim),
            ("latent_dim", self.latent_dim),
        ];
        if self.enc_layers > 0 {
            checks.push(("enc_hidden", self.enc_hidden));
        }
        if self.pred_layers > 0 {
            checks.push(("pred_hidden", self.pred_hidden));
        }
        if self.inverse_layers > 0 {
            checks.push(("inverse_hidden", self.inverse_hidden));
        }
        for (name, v) in checks {
            if v <= 0 {
                return Err(ModelError::InvalidConfig(format!(
                    "JepaConfig.{name} must be positive, got {v}"
                )));
            }
        }
        for (name, v) in [
            ("enc_layers", self.enc_layers),
            ("pred_layers", self.pred_layers),
            ("inverse_layers", self.inverse_layers),
        ] {
            if v > 64 {
                return Err(ModelError::InvalidConfig(format!(
                    "JepaConfig.{name} = {v} is implausibly deep (max 64)"
                )));
            }
        }
        self.validate_proprio()
    }

    fn validate_pixel(&self, im: &super::image::ImageEncoderConfig) -> Result<()> {
        im.validate()?;
        let bad = |m: String| Err(ModelError::InvalidConfig(format!("JepaConfig.{m}")));
        for (name, v) in [
            ("action_dim", self.action_dim),
            ("latent_dim", self.latent_dim),
        ] {
            if v <= 0 {
                return bad(format!("{name} must be positive, got {v}"));
            }
        }
        if self.obs_dim < 0 {
            return bad(format!(
                "obs_dim must be >= 0 (proprio entries), got {}",
                self.obs_dim
            ));
        }
        if self.pred_layers > 0 && self.pred_hidden <= 0 {
            return bad(format!(
                "pred_hidden must be positive, got {}",
                self.pred_hidden
            ));
        }
        if self.inverse_layers > 0 && self.inverse_hidden <= 0 {
            return bad(format!(
                "inverse_hidden must be positive, got {}",
                self.inverse_hidden
            ));
        }
        if !self.proprio.is_empty() {
            return bad("proprio must be empty for a pixel model (its whole vector input is the proprio field)".into());
        }
        if self.obs_dim == 0 && self.proprio_latent_dim != 0 {
            return bad(format!(
                "proprio_latent_dim = {} needs proprio entries (obs_dim is 0)",
                self.proprio_latent_dim
            ));
        }
        if self.obs_dim > 0 {
            if self.enc_layers > 0 && self.enc_hidden <= 0 {
                return bad(format!(
                    "enc_hidden must be positive, got {}",
                    self.enc_hidden
                ));
            }
            if !(self.proprio_latent_dim > 0 && self.proprio_latent_dim < self.latent_dim) {
                return bad(format!(
                    "proprio_latent_dim = {} must be in 1..{} with proprio entries",
                    self.proprio_latent_dim, self.latent_dim
                ));
            }
        }
        if let Some(scene) = im.head.latent() {
            let have = self.latent_dim - self.proprio_latent_dim;
            if scene != have {
                return bad(format!(
                    "latent_dim = {} leaves {have} scene entries after {} proprio entries, but \
                     the image head {:?} writes {scene}",
                    self.latent_dim, self.proprio_latent_dim, im.head
                ));
            }
        }
        Ok(())
    }

    fn validate_proprio(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidConfig(format!("JepaConfig.{m}")));
        if self.proprio.is_empty() {
            if self.proprio_latent_dim != 0 {
                return bad(format!(
                    "proprio_latent_dim = {} needs proprio fields (proprio is empty)",
                    self.proprio_latent_dim
                ));
            }
            return Ok(());
        }
        for (k, &i) in self.proprio.iter().enumerate() {
            if i as i64 >= self.obs_dim {
                return bad(format!(
                    "proprio[{k}] = {i} is not an observation index (obs_dim {})",
                    self.obs_dim
                ));
            }
            if self.proprio[..k].contains(&i) {
                return bad(format!("proprio[{k}] = {i} is listed twice"));
            }
        }
        if self.proprio.len() as i64 >= self.obs_dim {
            return bad(format!(
                "proprio lists all {} observation fields; the scene encoder needs at least one",
                self.obs_dim
            ));
        }
        if !(self.proprio_latent_dim > 0 && self.proprio_latent_dim < self.latent_dim) {
            return bad(format!(
                "proprio_latent_dim = {} must be in 1..{} (below latent_dim, which also holds the scene latent)",
                self.proprio_latent_dim, self.latent_dim
            ));
        }
        Ok(())
    }
}

/// Observation normalisation `(obs - mean) / std`, applied inside `encode`; statistics come from
/// the training data and travel with the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObsNorm {
    /// Per-entry mean.
    pub mean: Vec<f32>,
    /// Per-entry standard deviation (positive).
    pub std: Vec<f32>,
}

impl ObsNorm {
    /// Smallest standard deviation [`ObsNorm::from_data`] keeps: constant entries are not blown up.
    pub const MIN_STD: f32 = 1e-3;

    /// Mean 0, std 1: no normalisation.
    pub fn identity(obs_dim: usize) -> Self {
        ObsNorm {
            mean: vec![0.0; obs_dim],
            std: vec![1.0; obs_dim],
        }
    }

    /// Statistics of a data set `[N, obs_dim]` (population std, floored at
    /// [`ObsNorm::MIN_STD`]).
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for a tensor that is not `[N >= 1, D]` or holds NaN/Inf.
    pub fn from_data(data: &tch::Tensor) -> Result<Self> {
        use crate::error::TchContext;
        let size = data.size();
        if size.len() != 2 || size[0] < 1 || size[1] < 1 {
            return Err(ModelError::InvalidConfig(format!(
                "observation statistics need data [N >= 1, obs_dim], got {}",
                crate::util::fmt_shape(&size)
            )));
        }
        let data = data
            .f_to_kind(tch::Kind::Double)
            .ctx(|| "observation statistics".into())?;
        let mean = data
            .f_mean_dim(0, false, tch::Kind::Double)
            .ctx(|| "observation mean".into())?;
        let std = data
            .f_std_dim(0, false, false)
            .ctx(|| "observation std".into())?;
        let norm = ObsNorm {
            mean: crate::util::to_vec_f32(&mean)?,
            std: crate::util::to_vec_f32(&std)?
                .into_iter()
                .map(|s| s.max(Self::MIN_STD))
                .collect(),
        };
        norm.validate(size[1] as usize)?;
        Ok(norm)
    }

    /// Checks sizes and that every mean is finite and every std finite and positive.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] describing the first problem.
    pub fn validate(&self, obs_dim: usize) -> Result<()> {
        if self.mean.len() != obs_dim || self.std.len() != obs_dim {
            return Err(ModelError::InvalidConfig(format!(
                "observation normalisation has {} means and {} stds, expected {obs_dim} each",
                self.mean.len(),
                self.std.len()
            )));
        }
        if let Some(i) = self.mean.iter().position(|m| !m.is_finite()) {
            return Err(ModelError::InvalidConfig(format!(
                "observation mean[{i}] is not finite"
            )));
        }
        // Written so that NaN fails: `!(s > 0)` is true for NaN.
        if let Some(i) = self.std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(ModelError::InvalidConfig(format!(
                "observation std[{i}] = {} must be finite and positive",
                self.std[i]
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_field() {
        let mut c = JepaConfig::new(4, 2);
        assert!(c.validate().is_ok());
        c.latent_dim = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("latent_dim"), "{err}");
        let mut c = JepaConfig::new(4, 2);
        c.inverse_layers = 1;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("inverse_hidden"));
    }

    #[test]
    fn proprio_split_is_validated() {
        let mut c = JepaConfig::new(6, 2);
        c.latent_dim = 8;
        assert_eq!(c.proprio_latent(), None);
        c.proprio = vec![0, 1];
        c.proprio_latent_dim = 3;
        c.validate().unwrap();
        assert_eq!(c.proprio_latent(), Some(5..8));
        assert_eq!(c.scene_fields(), vec![2, 3, 4, 5]);
        let err = |f: &dyn Fn(&mut JepaConfig)| {
            let mut c = c.clone();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(err(&|c| c.proprio = vec![0, 6]).contains("proprio[1] = 6"));
        assert!(err(&|c| c.proprio = vec![1, 1]).contains("twice"));
        assert!(err(&|c| c.proprio = (0..6).collect()).contains("scene encoder"));
        assert!(err(&|c| c.proprio_latent_dim = 8).contains("proprio_latent_dim"));
        assert!(err(&|c| {
            c.proprio.clear();
        })
        .contains("needs proprio fields"));
    }

    #[test]
    fn obs_norm_from_data_and_validate() {
        let data = tch::Tensor::from_slice(&[1f32, 5., 3., 5.]).reshape([2, 2]);
        let n = ObsNorm::from_data(&data).unwrap();
        assert_eq!(n.mean, vec![2.0, 5.0]);
        assert_eq!(n.std, vec![1.0, ObsNorm::MIN_STD]);
        assert!(ObsNorm {
            mean: vec![0.0],
            std: vec![f32::NAN]
        }
        .validate(1)
        .is_err());
        assert!(ObsNorm {
            mean: vec![0.0],
            std: vec![0.0]
        }
        .validate(1)
        .is_err());
        assert!(ObsNorm::identity(3).validate(2).is_err());
    }
}
