//! `zplan train`: JEPA world-model training on collected data (tch, CPU or CUDA).
//!
//! Online encoder `E`, target encoder `Ē` (EMA of `E`), action-conditioned residual predictor
//! `P`. For a window `o_t..o_{t+K}`, `a_t..a_{t+K-1}`:
//!
//! ```text
//! z_0 = E(o_t);  ẑ_k = P(ẑ_{k-1}, a_{t+k-1});  loss_pred = mean_k ||ẑ_k − sg(Ē(o_{t+k}))||²
//! loss = loss_pred + w_var · VICReg-variance(E(o)) + w_cov · VICReg-covariance(E(o))
//!      + w_inv · ||I(E(o_t), E(o_{t+1})) − a_t||²      (optional inverse dynamics)
//! ```
//!
//! Multi-step prediction trains the predictor on its own rollouts (as the planner uses it);
//! the variance/covariance terms keep the latent from collapsing; the inverse-dynamics term
//! forces the latent to keep what actions change. Observation normalisation statistics come
//! from the training split and are saved with the weights.

use crate::collect::{DatasetMeta, FORMAT, FORMAT_V1};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};
use zplan_models::jepa::{JepaConfig, JepaNets, ObsNorm};

/// Training hyper-parameters (all have CLI flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Latent size.
    pub latent_dim: i64,
    /// Hidden width of encoder and predictor.
    pub hidden: i64,
    /// Hidden layers of the predictor.
    pub layers: usize,
    /// Hidden layers of the encoder (0 = a linear map of the normalised observation, which keeps
    /// latent distances monotone along straight lines in state space: see README).
    pub enc_layers: usize,
    /// Prediction steps K per window.
    pub rollout_steps: usize,
    /// Windows per batch.
    pub batch: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// EMA decay of the target encoder (0 = stop-gradient copy of the online encoder).
    pub ema: f64,
    /// Weight of the VICReg variance term.
    pub var_weight: f64,
    /// Weight of the VICReg covariance term.
    pub cov_weight: f64,
    /// Weight of the inverse-dynamics term (0 = no inverse head).
    pub inverse_weight: f64,
    /// Fraction of episodes held out for validation.
    pub val_fraction: f64,
    /// Seed (initialisation, split, batches).
    pub seed: u64,
    /// Validate (and checkpoint) every this many steps.
    pub eval_every: usize,
    /// Stop after this many minutes even if `steps` are not done (the best model is kept).
    pub time_limit_min: f64,
    /// Observation field names of the agent's own state, encoded apart (empty: one encoder).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proprio: Vec<String>,
    /// Latent entries of the proprio encoder (used with `proprio`).
    #[serde(default = "default_proprio_latent_dim")]
    pub proprio_latent_dim: i64,
    /// Pixel models: output channels of the image encoder's convolutions (empty =
    /// 16, 32, 32).
    #[serde(default)]
    pub conv_widths: Vec<i64>,
    /// Pixel models: stride (1 or 2) of each convolution of `conv_widths` (empty: all 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conv_strides: Vec<i64>,
    /// Pixel models: layer-normalise the image latent.
    #[serde(default = "default_true")]
    pub image_layer_norm: bool,
    /// Pixel models: keypoints of a spatial soft-argmax image head (0: the linear head). The
    /// scene latent is then `2 × keypoints` entries and `latent_dim` is set from it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keypoints: i64,
    /// Pixel models with keypoints: the VICReg variance floor of each keypoint's spread
    /// `sqrt(var x + var y)` (image coordinates in `[-1, 1]`) instead of the default unit
    /// floor on every coordinate (0: the default). A keypoint that tracks something which
    /// moves little or along one axis only (a door that slides along its wall) then keeps
    /// tracking it instead of being pushed onto the most mobile body.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub keypoint_std: f64,
    /// Pixel models with keypoints: linear context features of the whole feature map after the
    /// keypoint coordinates (0: none), for what is not a point (where a door is).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keypoint_context: i64,
    /// Pixel models with keypoints: order `n` of the orientation moment each keypoint also
    /// writes (0: none; see `ImageHead::Keypoints`): 4 for a square body, 2 for an elongated
    /// one. Each keypoint's moment pair is a VICReg unit with the `keypoint_std` floor.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keypoint_moment: i64,
    /// Pixel models with keypoints: gain on the keypoint maps' logits (default 1; see
    /// `ImageHead::Keypoints`), for large full-resolution maps.
    #[serde(default = "default_gain")]
    pub keypoint_gain: f64,
    /// Pixel models with two or more keypoints: weight of the cross-keypoint correlation
    /// penalty (0: none), the mean squared correlation between coordinates of different
    /// keypoints ([`keypoint_correlation`]). Unlike VICReg's covariance term it does not
    /// shrink with a keypoint's spread, so a second keypoint cannot satisfy it by following
    /// the first one at a small scale: it must find something else that varies (a door).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub keypoint_decorrelation: f64,
    /// Pixel models with keypoints: the last this many keypoints are *static* (0: none): a
    /// penalty (`static_weight` × their mean squared deviation from their own window mean)
    /// keeps them still within each training window, while the variance floor still makes
    /// them differ between episodes. What is fixed within an episode but drawn per episode
    /// (two_rooms_doors' door) is then the only thing they can track (slow features).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub static_keypoints: i64,
    /// Pixel models with keypoints and proprio fields: weight of a penalty on the correlation
    /// between the keypoint coordinates and the proprio fields (0: none; the mean squared
    /// correlation, [`cross_correlation`]). The proprio encoder already holds the agent's own
    /// position, so the keypoints are pushed to track what proprio does not tell: the body
    /// the agent moves (push_pixels' block) rather than the agent (its pusher).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub proprio_decorrelation: f64,
    /// Pixel models with keypoints: the largest spread `E[|dz|^2]` of each keypoint map about
    /// its keypoint (image coordinates in `[-1, 1]`; 0: free). A penalty
    /// `keypoint_spread_weight × mean(relu(spread - keypoint_spread))` keeps each map on
    /// one body instead of a haze over the background, so its keypoint follows the body at
    /// full amplitude; about the spread of the body's silhouette (`2a²/3` for a square of
    /// half side `a`) or a little more.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub keypoint_spread: f64,
    /// Weight of the `keypoint_spread` penalty (default 1).
    #[serde(default = "default_gain")]
    pub keypoint_spread_weight: f64,
    /// Pixel models with keypoint moments: the radius of the window around each keypoint in
    /// which the moment reads the map's sigmoid mask (0: the softmax itself; see
    /// `ImageHead::Keypoints`).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub keypoint_moment_radius: f64,
    /// Pixel models with keypoints: read each keypoint map as a sigmoid mask over the whole
    /// image (keypoint = its centroid; moment and spread about it) instead of a softmax
    /// (see `ImageHead::Keypoints`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keypoint_mask: bool,
    /// Pixel models: input image normalisation, per pixel (the default) or per colour channel.
    #[serde(default)]
    pub image_norm: zplan_models::jepa::ImageNorm,
    /// Weight of the static-keypoint penalty (used with `static_keypoints`).
    #[serde(default = "default_static_weight")]
    pub static_weight: f64,
}

fn default_gain() -> f64 {
    1.0
}

fn default_static_weight() -> f64 {
    10.0
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn default_true() -> bool {
    true
}

fn default_proprio_latent_dim() -> i64 {
    4
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            latent_dim: 32,
            hidden: 128,
            layers: 2,
            enc_layers: 2,
            rollout_steps: 6,
            batch: 256,
            steps: 6000,
            lr: 1e-3,
            weight_decay: 1e-4,
            ema: 0.99,
            var_weight: 1.0,
            cov_weight: 0.04,
            inverse_weight: 0.1,
            val_fraction: 0.1,
            seed: 0,
            eval_every: 250,
            time_limit_min: 15.0,
            proprio: Vec::new(),
            proprio_latent_dim: default_proprio_latent_dim(),
            conv_widths: Vec::new(),
            conv_strides: Vec::new(),
            image_layer_norm: true,
            keypoints: 0,
            keypoint_std: 0.0,
            keypoint_context: 0,
            keypoint_moment: 0,
            keypoint_gain: default_gain(),
            keypoint_decorrelation: 0.0,
            static_keypoints: 0,
            proprio_decorrelation: 0.0,
            keypoint_spread: 0.0,
            keypoint_spread_weight: default_gain(),
            keypoint_moment_radius: 0.0,
            keypoint_mask: false,
            image_norm: Default::default(),
            static_weight: default_static_weight(),
        }
    }
}

impl TrainConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        let pos = |name: &str, v: f64| -> Result<()> {
            if !(v > 0.0 && v.is_finite()) {
                bail!("--{name} must be a positive number, got {v}");
            }
            Ok(())
        };
        let nonneg = |name: &str, v: f64| -> Result<()> {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("--{name} must be >= 0, got {v}");
            }
            Ok(())
        };
        pos("latent-dim", self.latent_dim as f64)?;
        pos("hidden", self.hidden as f64)?;
        pos("rollout-steps", self.rollout_steps as f64)?;
        pos("batch", self.batch as f64)?;
        pos("steps", self.steps as f64)?;
        pos("lr", self.lr)?;
        pos("eval-every", self.eval_every as f64)?;
        pos("time-limit-min", self.time_limit_min)?;
        nonneg("weight-decay", self.weight_decay)?;
        nonneg("var-weight", self.var_weight)?;
        nonneg("cov-weight", self.cov_weight)?;
        nonneg("inverse-weight", self.inverse_weight)?;
        nonneg("keypoint-std", self.keypoint_std)?;
        nonneg("keypoint-decorrelation", self.keypoint_decorrelation)?;
        nonneg("static-weight", self.static_weight)?;
        nonneg("proprio-decorrelation", self.proprio_decorrelation)?;
        nonneg("keypoint-spread", self.keypoint_spread)?;
        nonneg("keypoint-spread-weight", self.keypoint_spread_weight)?;
        if !(self.keypoint_moment_radius.is_finite()
            && (0.0..=2.0).contains(&self.keypoint_moment_radius))
        {
            bail!(
                "--keypoint-moment-radius must be in [0, 2] (image coordinates), got {}",
                self.keypoint_moment_radius
            );
        }
        if self.keypoint_moment_radius > 0.0 && self.keypoint_moment == 0 {
            bail!(
                "--keypoint-moment-radius needs --keypoint-moment (it is where the moment reads)"
            );
        }
        if self.keypoint_mask && self.keypoints == 0 {
            bail!("--keypoint-mask needs --keypoints (it is how each keypoint map is read)");
        }
        if self.keypoint_spread > 0.0 && self.keypoints == 0 {
            bail!("--keypoint-spread needs --keypoints (it bounds each keypoint map's spread)");
        }
        if self.proprio_decorrelation > 0.0 && self.keypoints == 0 {
            bail!("--proprio-decorrelation needs --keypoints (it decorrelates the keypoints from proprio)");
        }
        if self.static_keypoints < 0 || self.static_keypoints > self.keypoints {
            bail!(
                "--static-keypoints ({}) must be between 0 and --keypoints ({}): the static ones are the last keypoints",
                self.static_keypoints,
                self.keypoints
            );
        }
        if self.keypoint_decorrelation > 0.0 && self.keypoints < 2 {
            bail!(
                "--keypoint-decorrelation needs --keypoints 2 or more (it decorrelates keypoints from each other), got {}",
                self.keypoints
            );
        }
        if !(0..=1024).contains(&self.keypoint_context) {
            bail!(
                "--keypoint-context must be in 0..=1024, got {}",
                self.keypoint_context
            );
        }
        if self.keypoint_moment != 0 && !(2..=8).contains(&self.keypoint_moment) {
            bail!(
                "--keypoint-moment must be an order in 2..=8 (4 for a square body, 2 for an elongated one), got {}",
                self.keypoint_moment
            );
        }
        if !(self.keypoint_gain.is_finite()
            && self.keypoint_gain > 0.0
            && self.keypoint_gain <= 1000.0)
        {
            bail!(
                "--keypoint-gain must be in (0, 1000], got {}",
                self.keypoint_gain
            );
        }
        if self.keypoint_moment > 0 && self.keypoints == 0 {
            bail!("--keypoint-moment needs --keypoints (each keypoint's attention map has the moment)");
        }
        if !self.conv_strides.is_empty() {
            if self.conv_strides.len() != self.conv_widths.len() {
                bail!(
                    "--conv-strides has {} entries but --conv-widths has {}: give one stride per convolution",
                    self.conv_strides.len(),
                    self.conv_widths.len()
                );
            }
            if let Some(s) = self.conv_strides.iter().find(|&&s| s != 1 && s != 2) {
                bail!("--conv-strides entries must be 1 or 2, got {s}");
            }
        }
        if self.keypoint_context > 0 && self.keypoints == 0 {
            bail!("--keypoint-context needs --keypoints (its features follow the keypoints)");
        }
        if self.keypoint_std > 0.0 && self.keypoints == 0 {
            bail!("--keypoint-std needs --keypoints (it is the variance floor of each keypoint)");
        }
        if !(0..=256).contains(&self.keypoints) {
            bail!("--keypoints must be in 1..=256, got {}", self.keypoints);
        }
        if !self.proprio.is_empty() {
            pos("proprio-latent-dim", self.proprio_latent_dim as f64)?;
            if self.proprio_latent_dim >= self.latent_dim {
                bail!(
                    "--proprio-latent-dim ({}) must be below --latent-dim ({}): the latent also holds the scene",
                    self.proprio_latent_dim,
                    self.latent_dim
                );
            }
        }
        if !(0.0..1.0).contains(&self.ema) {
            bail!("--ema must be in [0, 1), got {}", self.ema);
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            bail!(
                "--val-fraction must be in (0, 1), got {}",
                self.val_fraction
            );
        }
        Ok(())
    }
}

/// A loaded, checked dataset.
pub struct Dataset {
    /// Metadata from `meta.json`.
    pub meta: DatasetMeta,
    /// `[N, T+1, D]` float32.
    pub obs: Tensor,
    /// `[N, T, A]` float32.
    pub actions: Tensor,
}

/// Loads a dataset for state-vector training: its `meta.json` and either its chunks (format
/// v2: the observed `state` field of every chunk, each chunk checked, see
/// [`crate::dataset::read_chunk`]) or `data.safetensors` (format v1), checked against each
/// other (shapes, finiteness, the scenario's sizes); every problem names the file and what was
/// expected.
pub fn load_dataset(dir: &Path) -> Result<Dataset> {
    let meta = read_meta(dir)?;
    let meta_path = dir.join("meta.json");
    match meta.format.as_str() {
        FORMAT => load_chunked(dir, meta),
        FORMAT_V1 => load_v1(dir, meta),
        other => bail!(
            "{}: format `{other}`, expected `{FORMAT}` (or the older `{FORMAT_V1}`)",
            meta_path.display()
        ),
    }
}

/// Largest `meta.json` read: 64 MiB (it lists chunks and planner-driven episodes; a million
/// episodes take about 10 MB).
pub const MAX_META_BYTES: u64 = 64 << 20;

/// Reads, parses and checks `DIR/meta.json` (a regular file of at most [`MAX_META_BYTES`],
/// see [`zplan_io::read_text`]; then [`parse_meta`]).
pub fn read_meta(dir: &Path) -> Result<DatasetMeta> {
    let meta_path = dir.join("meta.json");
    let text = zplan_io::read_text(&meta_path, "a dataset description", MAX_META_BYTES)?;
    parse_meta(&text, &meta_path)
}

/// Parses `meta.json` text read from `path` (named in errors) and validates its scenario, so
/// that nothing downstream works from sizes the simulator would refuse.
pub fn parse_meta(text: &str, path: &Path) -> Result<DatasetMeta> {
    let meta: DatasetMeta = serde_json::from_str(text)
        .with_context(|| format!("{}: not a zplan dataset description", path.display()))?;
    meta.scenario
        .validate()
        .with_context(|| format!("{}: `scenario`", path.display()))?;
    Ok(meta)
}

/// Reads several datasets' `meta.json` as one: the episodes of `dirs[0]`, then `dirs[1]`, ...
/// (chunk files named by their full paths, planner-driven episodes renumbered). Every dataset
/// must come from the same scenario (kind and settings), observe the same fields and have the
/// same episode length; the first one's collection settings are kept. One directory reads as
/// [`read_meta`].
///
/// # Errors
/// [`read_meta`]'s for each directory, or the first mismatch, naming both directories.
pub fn read_metas(dirs: &[std::path::PathBuf]) -> Result<DatasetMeta> {
    let first_dir = dirs.first().context("no dataset directory given")?;
    let mut merged = read_meta(first_dir)?;
    if dirs.len() == 1 {
        return Ok(merged);
    }
    let resolve = |dir: &Path| -> Result<PathBuf> {
        std::fs::canonicalize(dir)
            .with_context(|| format!("{}: cannot resolve the directory", dir.display()))
    };
    let absolute = |dir: &Path, file: &str| -> Result<String> {
        let p = dir.join(file);
        p.to_str()
            .map(str::to_owned)
            .with_context(|| format!("{}: not a UTF-8 path", p.display()))
    };
    let source = |dir: &Path, m: &DatasetMeta| crate::collect::DatasetSource {
        dir: dir.display().to_string(),
        episodes: m.episodes,
        collect: m.collect.clone(),
    };
    merged.sources = vec![source(first_dir, &merged)];
    let first_abs = resolve(first_dir)?;
    for c in &mut merged.chunks {
        c.file = absolute(&first_abs, &c.file)?;
    }
    for dir in &dirs[1..] {
        let m = read_meta(dir)?;
        let differs = |what: &str| -> anyhow::Error {
            anyhow::anyhow!(
                "{} and {}: the datasets differ in {what}; --data directories must come from one scenario",
                first_dir.display(),
                dir.display()
            )
        };
        if m.scenario != merged.scenario {
            return Err(differs("scenario"));
        }
        if m.observation != merged.observation {
            return Err(differs("observed fields"));
        }
        if m.steps != merged.steps {
            return Err(differs(&format!(
                "episode length ({} against {} steps)",
                merged.steps, m.steps
            )));
        }
        let offset = merged.episodes;
        let dir_abs = resolve(dir)?;
        for c in &m.chunks {
            merged.chunks.push(crate::dataset::ChunkInfo {
                file: absolute(&dir_abs, &c.file)?,
                first_episode: offset + c.first_episode,
                episodes: c.episodes,
            });
        }
        merged
            .planner_episodes
            .extend(m.planner_episodes.iter().map(|e| e + offset));
        merged.episodes += m.episodes;
        merged.sources.push(source(dir, &m));
    }
    Ok(merged)
}

/// Whether a dataset holds camera images (`zplan train` then trains a pixel JEPA).
pub fn is_pixel_dataset(meta: &DatasetMeta) -> bool {
    meta.observation
        .as_ref()
        .is_some_and(|o| o.field(zplan_obs::IMAGE).is_some())
}

/// Format v2: concatenates the observed state vectors of every chunk.
fn load_chunked(dir: &Path, meta: DatasetMeta) -> Result<Dataset> {
    let meta_path = dir.join("meta.json");
    let spec = meta.scenario.spec();
    let obs_spec = meta
        .observation
        .clone()
        .with_context(|| format!("{}: no `observation` spec", meta_path.display()))?;
    if obs_spec != spec.observation {
        bail!(
            "{}: observation {obs_spec} does not match the scenario's {} (mismatched scenario)",
            meta_path.display(),
            spec.observation
        );
    }
    if obs_spec.field(zplan_obs::STATE).is_none() {
        bail!(
            "{}: the data observes {obs_spec}, with no `state` field: `zplan train` trains on \
             state vectors (collect from a scenario with `observation: (state: true, ..)`)",
            meta_path.display()
        );
    }
    if meta.chunks.is_empty() {
        bail!("{}: lists no chunks", meta_path.display());
    }
    let (s_dim, a_dim, t) = (spec.state_dim(), spec.action_dim(), meta.steps as usize);
    let mut expected_first = 0;
    let mut obs = Vec::new();
    let mut actions = Vec::new();
    for c in &meta.chunks {
        if c.first_episode != expected_first || c.episodes == 0 {
            bail!(
                "{}: chunk `{}` starts at episode {} with {} episodes, expected to start at {expected_first}",
                meta_path.display(),
                c.file,
                c.first_episode,
                c.episodes
            );
        }
        expected_first += c.episodes;
        let chunk = crate::dataset::read_chunk(dir, c, &obs_spec, s_dim, a_dim, t)?;
        let state = chunk
            .field(zplan_obs::STATE)
            .map(|t| t.shallow_clone())
            .context("state field")?;
        obs.push(state);
        actions.push(chunk.actions);
    }
    if expected_first != meta.episodes {
        bail!(
            "{}: the chunks hold {expected_first} episodes, `episodes` says {}",
            meta_path.display(),
            meta.episodes
        );
    }
    let obs = Tensor::f_cat(&obs, 0)?;
    let actions = Tensor::f_cat(&actions, 0)?;
    Ok(Dataset { meta, obs, actions })
}

/// Format v1: one `data.safetensors` with `obs [N, T+1, D]`.
fn load_v1(dir: &Path, meta: DatasetMeta) -> Result<Dataset> {
    let meta_path = dir.join("meta.json");
    let data_path = dir.join("data.safetensors");
    let tensors = Tensor::read_safetensors(&data_path)
        .with_context(|| format!("reading {}", data_path.display()))?;
    let get = |name: &str| -> Result<Tensor> {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shallow_clone())
            .with_context(|| format!("{}: missing tensor `{name}`", data_path.display()))
    };
    let obs = get("obs")?;
    let actions = get("actions")?;
    let spec = meta.scenario.spec();
    let (d, a) = (spec.state_dim() as i64, spec.action_dim() as i64);
    if meta.obs_names != spec.state_names {
        bail!(
            "{}: observation fields {:?} do not match the scenario's {:?} (mismatched scenario)",
            meta_path.display(),
            meta.obs_names,
            spec.state_names
        );
    }
    let os = obs.size();
    let as_ = actions.size();
    if os.len() != 3 || os[2] != d || os[1] < 2 {
        bail!(
            "{}: tensor `obs` has shape {os:?}, expected [N, T+1, {d}] with T >= 1",
            data_path.display()
        );
    }
    if as_.len() != 3 || as_[0] != os[0] || as_[1] != os[1] - 1 || as_[2] != a {
        bail!(
            "{}: tensor `actions` has shape {as_:?}, expected [{}, {}, {a}] to match `obs` {os:?}",
            data_path.display(),
            os[0],
            os[1] - 1
        );
    }
    if obs.kind() != Kind::Float || actions.kind() != Kind::Float {
        bail!(
            "{}: `obs` and `actions` must be float32 (got {:?}, {:?})",
            data_path.display(),
            obs.kind(),
            actions.kind()
        );
    }
    for (name, t) in [("obs", &obs), ("actions", &actions)] {
        if let Some(first) = crate::dataset::first_non_finite(t)? {
            bail!(
                "{}: tensor `{name}` contains NaN or Inf (first at index {first:?})",
                data_path.display()
            );
        }
    }
    Ok(Dataset { meta, obs, actions })
}

/// Latent health on validation data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatentHealth {
    /// Per-dimension standard deviation of validation latents.
    pub per_dim_std: Vec<f64>,
    /// Smallest per-dimension std.
    pub min_std: f64,
    /// Mean per-dimension std.
    pub mean_std: f64,
    /// Dimensions with std below 0.01 (collapsed).
    pub collapsed_dims: usize,
    /// R² of a linear probe latent → true state (fit on train, scored on validation), per state
    /// field and averaged.
    pub probe_r2: f64,
    /// R² per state field.
    pub probe_r2_per_field: Vec<f64>,
}

/// What training produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// Steps done.
    pub steps: usize,
    /// Best validation loss and the step it occurred at.
    pub best_val_loss: f64,
    /// Step of the best validation loss.
    pub best_step: usize,
    /// Validation loss at step 0 (before training).
    pub initial_val_loss: f64,
    /// (step, train loss, val loss) at each evaluation.
    pub curve: Vec<(usize, f64, f64)>,
    /// Latent health of the saved model.
    pub health: LatentHealth,
    /// Seconds spent.
    pub seconds: f64,
    /// Where the model was saved.
    pub model_path: PathBuf,
}

struct Split {
    obs: Tensor,     // [n, T+1, D]
    actions: Tensor, // [n, T, A]
}

impl Split {
    fn windows(&self) -> i64 {
        let s = self.obs.size();
        s[0] * (s[1] - 1)
    }
}

/// Gathers windows starting at (episode, t) pairs into obs `[B, K+1, D]` and actions `[B, K, A]`.
fn gather(
    split: &Split,
    starts: &[(i64, i64)],
    k: i64,
    device: Device,
) -> Result<(Tensor, Tensor)> {
    let ep: Vec<i64> = starts.iter().map(|s| s.0).collect();
    let t0: Vec<i64> = starts.iter().map(|s| s.1).collect();
    let ep = Tensor::from_slice(&ep);
    let t0 = Tensor::from_slice(&t0);
    let offs = Tensor::arange(k + 1, (Kind::Int64, Device::Cpu));
    let tt = t0.unsqueeze(1) + &offs.unsqueeze(0); // [B, K+1]
    let e2 = ep.unsqueeze(1).expand([starts.len() as i64, k + 1], false);
    let o = split
        .obs
        .f_index(&[Some(e2.shallow_clone()), Some(tt.shallow_clone())])?; // [B, K+1, D]
    let tta = tt.f_narrow(1, 0, k)?;
    let ea = e2.f_narrow(1, 0, k)?;
    let a = split.actions.f_index(&[Some(ea), Some(tta)])?;
    Ok((o.f_to_device(device)?, a.f_to_device(device)?))
}

/// VICReg's variance and covariance terms of latents `z [N, L]`.
///
/// Variance: a hinge `relu(floor - std)` averaged over units. By default every latent entry is
/// a unit with floor 1. With `keypoints = Some((k, floor))` the first `2k` entries are `k`
/// keypoints' `(x, y)`, and each keypoint is one unit whose std is its spread
/// `sqrt(var x + var y)`, with that floor; the other entries keep the unit floor.
pub(crate) fn vicreg(z: &Tensor, keypoints: Option<(i64, f64)>) -> Result<(Tensor, Tensor)> {
    let b = z.size()[0] as f64;
    let d = z.size()[1];
    let zc = z - z.f_mean_dim(0, true, Kind::Float)?;
    let var = zc.f_square()?.f_sum_dim_intlist(0, false, Kind::Float)? / (b - 1.0); // [L]
    let hinge = |v: &Tensor, floor: f64| -> Result<Tensor> {
        Ok((v + 1e-4)
            .f_sqrt()?
            .f_mul_scalar(-1.0)?
            .f_add_scalar(floor)?
            .f_relu()?)
    };
    let var_loss = match keypoints {
        Some((k, floor)) if k > 0 && 2 * k <= d => {
            let spread = var
                .f_narrow(0, 0, 2 * k)?
                .f_reshape([k, 2])?
                .f_sum_dim_intlist(1, false, Kind::Float)?;
            let units = Tensor::f_cat(
                &[
                    hinge(&spread, floor)?,
                    hinge(&var.f_narrow(0, 2 * k, d - 2 * k)?, 1.0)?,
                ],
                0,
            )?;
            units.f_mean(Kind::Float)?
        }
        _ => hinge(&var, 1.0)?.f_mean(Kind::Float)?,
    };
    let cov = zc.f_transpose(0, 1)?.f_matmul(&zc)? / (b - 1.0);
    let eye = Tensor::eye(d, (Kind::Float, z.device()));
    let off: Tensor = cov * (eye * -1.0 + 1.0);
    let cov_loss = off.f_square()?.f_sum(Kind::Float)? / d as f64;
    Ok((var_loss, cov_loss))
}

/// Variance added to each coordinate's before the correlation is taken in
/// [`keypoint_correlation`]: a coordinate that moves less than about 0.1 (image coordinates in
/// `[-1, 1]`, e.g. the fixed x of a door in a vertical wall) contributes little.
const CORRELATION_EPS: f64 = 0.01;

/// The mean squared correlation between coordinates of different keypoints among the first
/// `2k` entries of `z [N, L]` (keypoint `i` is entries `2i, 2i+1`):
/// `corr_ij = cov_ij / sqrt((var_i + ε)(var_j + ε))`, averaged over the `4k(k-1)` ordered
/// pairs `(i, j)` of coordinates that belong to different keypoints. 0 when the keypoints
/// move independently; 0.5 when keypoint 2 is a scaled copy of keypoint 1 (its x follows x,
/// its y follows y), whatever the scale.
pub(crate) fn keypoint_correlation(z: &Tensor, k: i64) -> Result<Tensor> {
    let b = z.size()[0] as f64;
    let kp = z.f_narrow(1, 0, 2 * k)?;
    let zc = &kp - kp.f_mean_dim(0, true, Kind::Float)?;
    let cov = zc.f_transpose(0, 1)?.f_matmul(&zc)? / (b - 1.0); // [2k, 2k]
    let sd = (cov.f_diagonal(0, 0, 1)? + CORRELATION_EPS).f_sqrt()?;
    let corr = &cov / sd.f_unsqueeze(1)?.f_mul(&sd.f_unsqueeze(0)?)?;
    // Mask of coordinate pairs from different keypoints: ones minus the 2 x 2 diagonal blocks.
    let blocks = Tensor::eye(k, (Kind::Float, z.device()))
        .f_repeat_interleave_self_int(2, Some(0), None)?
        .f_repeat_interleave_self_int(2, Some(1), None)?;
    let mask = blocks * -1.0 + 1.0;
    let pairs = (4 * k * (k - 1)) as f64;
    Ok(corr.f_square()?.f_mul(&mask)?.f_sum(Kind::Float)? / pairs)
}

/// The mean squared correlation between every column of `a [N, m]` and every column of
/// `b [N, p]` (`corr = cov / sqrt((var_a + ε)(var_b + ε))`): 0 when the two sets vary
/// independently, 1 when a column of `a` is an affine copy of one of `b` (and no other).
pub(crate) fn cross_correlation(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let n = a.size()[0] as f64;
    let ac = a - a.f_mean_dim(0, true, Kind::Float)?;
    let bc = b - b.f_mean_dim(0, true, Kind::Float)?;
    let cov = ac.f_transpose(0, 1)?.f_matmul(&bc)? / (n - 1.0); // [m, p]
    let va =
        (ac.f_square()?.f_sum_dim_intlist(0, false, Kind::Float)? / (n - 1.0)) + CORRELATION_EPS;
    let vb =
        (bc.f_square()?.f_sum_dim_intlist(0, false, Kind::Float)? / (n - 1.0)) + CORRELATION_EPS;
    let corr2 = cov.f_square()? / va.f_unsqueeze(1)?.f_mul(&vb.f_unsqueeze(0)?)?;
    Ok(corr2.f_mean(Kind::Float)?)
}

/// The mean squared deviation of keypoints `first..first + count` from their own mean over
/// the frames of each window, for online latents `z_all [B, K+1, L]` (0 when they never move
/// within a window).
pub(crate) fn within_window_motion(z_all: &Tensor, first: i64, count: i64) -> Result<Tensor> {
    let kp = z_all.f_narrow(2, 2 * first, 2 * count)?;
    let dev = &kp - kp.f_mean_dim(1, true, Kind::Float)?;
    Ok(dev.f_square()?.f_mean(Kind::Float)?)
}

/// The training objective and its prediction part (the validation metric).
pub(crate) struct Losses {
    pub(crate) total: Tensor,
    pub(crate) pred: Tensor,
}

fn batch_loss(
    nets: &JepaNets,
    target: &zplan_models::jepa::TargetEncoder,
    obs: &Tensor,
    actions: &Tensor,
    cfg: &TrainConfig,
    action_scale: &(Tensor, Tensor),
) -> Result<Losses> {
    let s = obs.size();
    let (b, k1, d) = (s[0], s[1], s[2]);
    let k = k1 - 1;
    let all = nets.encode(&obs.f_reshape([b * k1, d])?)?; // online encodings of every frame
    let latent = all.size()[1];
    let z_all = all.f_reshape([b, k1, latent])?;
    let tgt = target
        .encode(&obs.f_narrow(1, 1, k)?.f_reshape([b * k, d])?)?
        .f_reshape([b, k, latent])?;
    jepa_objective(nets, &all, &z_all, &tgt, actions, cfg, action_scale)
}

/// The JEPA objective from the online latents of every frame (`all [B·(K+1), L]`, the same as
/// `z_all [B, K+1, L]`) and the target latents of frames 1..K (`tgt [B, K, L]`): multi-step
/// prediction from frame 0, VICReg on the online latents, inverse dynamics on frames 0 → 1.
pub(crate) fn jepa_objective(
    nets: &JepaNets,
    all: &Tensor,
    z_all: &Tensor,
    tgt: &Tensor,
    actions: &Tensor,
    cfg: &TrainConfig,
    action_scale: &(Tensor, Tensor),
) -> Result<Losses> {
    let k = tgt.size()[1];
    let mut z = z_all.f_select(1, 0)?;
    let mut pred = Tensor::zeros([], (Kind::Float, z.device()));
    for step in 0..k {
        z = nets.predict(&z, &actions.f_select(1, step)?)?;
        // Out of place: autograd must see every step's term.
        pred = pred.f_add(
            &(&z - tgt.f_select(1, step)?)
                .f_square()?
                .f_mean(Kind::Float)?,
        )?;
    }
    let pred = pred / k as f64;
    // Keypoint units of the variance floor: each keypoint's (x, y), then each moment pair.
    let units = cfg.keypoints * if cfg.keypoint_moment > 0 { 2 } else { 1 };
    let kp = (cfg.keypoint_std > 0.0).then_some((units, cfg.keypoint_std));
    let (var_l, cov_l) = vicreg(all, kp)?;
    let mut total = &pred + var_l * cfg.var_weight + cov_l * cfg.cov_weight;
    if cfg.static_keypoints > 0 {
        let first = cfg.keypoints - cfg.static_keypoints;
        let motion = within_window_motion(z_all, first, cfg.static_keypoints)?;
        total = total.f_add(&(motion * cfg.static_weight))?;
    }
    if cfg.keypoint_decorrelation > 0.0 {
        let corr = keypoint_correlation(all, cfg.keypoints)?;
        total = total.f_add(&(corr * cfg.keypoint_decorrelation))?;
    }
    if cfg.inverse_weight > 0.0 {
        let z0 = z_all.f_select(1, 0)?;
        let z1 = z_all.f_select(1, 1)?;
        let a_hat = nets.inverse(&z0, &z1)?;
        let a0 = (actions.f_select(1, 0)? - &action_scale.0) / &action_scale.1;
        total =
            total.f_add(&((a_hat - a0).f_square()?.f_mean(Kind::Float)? * cfg.inverse_weight))?;
    }
    Ok(Losses { total, pred })
}

/// The episode split of a chunked dataset for `rollout_steps`-step windows: `(episodes, first
/// validation episode)`; the last `val_fraction` of the episodes (at least one, and at least
/// one left for training) validate.
pub(crate) fn episode_split(meta: &DatasetMeta, cfg: &TrainConfig) -> Result<(i64, i64)> {
    let k = cfg.rollout_steps as i64;
    let steps = meta.steps as i64;
    if steps < k {
        bail!("episodes have {steps} steps, fewer than --rollout-steps {k}");
    }
    let n_ep = meta.episodes as i64;
    if n_ep < 2 {
        bail!("the dataset has {n_ep} episode(s); at least 2 are needed for a validation split");
    }
    let n_val = ((n_ep as f64 * cfg.val_fraction).round() as i64).clamp(1, n_ep - 1);
    Ok((n_ep, n_ep - n_val))
}

/// The cosine learning-rate schedule: `lr` decays to 5 % of itself over `steps`.
pub(crate) fn cosine_lr(lr: f64, step: usize, steps: usize) -> f64 {
    let frac = step as f64 / steps.max(1) as f64;
    lr * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos()))
}

/// The training progress bar (steps, elapsed, ETA, losses), hidden without `progress`.
pub(crate) fn progress_bar(steps: usize, progress: bool) -> indicatif::ProgressBar {
    let bar = if progress {
        indicatif::ProgressBar::new(steps as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Saves the best networks with their training record to `out`, removes the checkpoint copy,
/// and writes `out.loss.png` and `out.train.json` (the report).
pub(crate) fn finish(
    mut best_nets: JepaNets,
    report: &TrainReport,
    cfg: &TrainConfig,
    dataset: serde_json::Value,
    out: &Path,
) -> Result<()> {
    best_nets.training = serde_json::json!({
        "config": cfg,
        "dataset": dataset,
        "best_step": report.best_step,
        "best_val_loss": report.best_val_loss,
        "initial_val_loss": report.initial_val_loss,
        "latent_min_std": report.health.min_std,
        "probe_r2": report.health.probe_r2,
    });
    best_nets.save(out)?;
    // The final model is the best checkpoint plus its report; drop the now redundant copy.
    let (ckpt_weights, ckpt_sidecar) = zplan_models::jepa::jepa_paths(&checkpoint_path(out));
    for f in [ckpt_weights, ckpt_sidecar] {
        if let Err(e) = std::fs::remove_file(&f) {
            tracing::warn!("could not remove checkpoint {}: {e}", f.display());
        }
    }
    let stem = out.with_extension("");
    plot_curve(
        &PathBuf::from(format!("{}.loss.png", stem.display())),
        &report.curve,
    )?;
    std::fs::write(
        format!("{}.train.json", stem.display()),
        serde_json::to_string_pretty(report)?,
    )?;
    Ok(())
}

fn eval_loss(
    nets: &JepaNets,
    target: &zplan_models::jepa::TargetEncoder,
    split: &Split,
    starts: &[(i64, i64)],
    cfg: &TrainConfig,
    scale: &(Tensor, Tensor),
    device: Device,
) -> Result<f64> {
    let _g = tch::no_grad_guard();
    let mut sum = 0.0;
    let mut n = 0.0;
    for chunk in starts.chunks(1024) {
        let (o, a) = gather(split, chunk, cfg.rollout_steps as i64, device)?;
        let l = batch_loss(nets, target, &o, &a, cfg, scale)?;
        sum += l.pred.double_value(&[]) * chunk.len() as f64;
        n += chunk.len() as f64;
    }
    Ok(sum / n.max(1.0))
}

/// Per-dimension latent std and a linear-probe R² (latent → true state) on validation data.
pub fn latent_health(
    nets: &JepaNets,
    train_obs: &Tensor,
    val_obs: &Tensor,
) -> Result<LatentHealth> {
    let _g = tch::no_grad_guard();
    let device = nets.device();
    let d = train_obs.size()[train_obs.dim() - 1];
    let tr = train_obs.f_reshape([-1, d])?;
    let va = val_obs.f_reshape([-1, d])?;
    // Subsample to keep the probe cheap.
    let cap = |t: &Tensor| -> Result<Tensor> {
        let n = t.size()[0];
        let stride = (n / 20_000).max(1);
        Ok(t.f_slice(0, 0, n, stride)?.f_to_device(device)?)
    };
    let (tr, va) = (cap(&tr)?, cap(&va)?);
    let ztr = nets.encode(&tr)?;
    let zva = nets.encode(&va)?;
    health_of(&ztr, &tr, &zva, &va)
}

/// Per-dimension std of validation latents `zva [N, L]` and the R² of a ridge probe from
/// latents to labels (fit on `ztr → ytr`, scored on `zva → yva`; labels `[N, S]`).
pub fn health_of(ztr: &Tensor, ytr: &Tensor, zva: &Tensor, yva: &Tensor) -> Result<LatentHealth> {
    let _g = tch::no_grad_guard();
    let device = ztr.device();
    let (tr, va) = (ytr.f_to_device(device)?, yva.f_to_device(device)?);
    let std = zva.f_std_dim(0, true, false)?.f_to_device(Device::Cpu)?;
    let per_dim_std: Vec<f64> = Vec::<f32>::try_from(&std)?
        .into_iter()
        .map(f64::from)
        .collect();
    let ones = |z: &Tensor| -> Result<Tensor> {
        Ok(Tensor::f_cat(
            &[
                z.shallow_clone(),
                Tensor::ones([z.size()[0], 1], (Kind::Float, device)),
            ],
            1,
        )?)
    };
    let xtr = ones(ztr)?.f_to_kind(Kind::Double)?;
    let xva = ones(zva)?.f_to_kind(Kind::Double)?;
    // Ridge-regularised normal equations: W = (XᵀX + λI)⁻¹ XᵀY.
    let p = xtr.size()[1];
    let xtx =
        xtr.f_transpose(0, 1)?.f_matmul(&xtr)? + Tensor::eye(p, (Kind::Double, device)) * 1e-6;
    let w = Tensor::f_linalg_solve(
        &xtx,
        &xtr.f_transpose(0, 1)?
            .f_matmul(&tr.f_to_kind(Kind::Double)?)?,
        true,
    )?;
    let pred = xva.f_matmul(&w)?;
    let y = va.f_to_kind(Kind::Double)?;
    let ss_res = (&y - pred)
        .f_square()?
        .f_sum_dim_intlist(0, false, Kind::Double)?;
    let ss_tot = (&y - y.f_mean_dim(0, true, Kind::Double)?)
        .f_square()?
        .f_sum_dim_intlist(0, false, Kind::Double)?;
    let r2 = ((ss_res / ss_tot.f_clamp_min(1e-12)?) * -1.0 + 1.0).f_to_device(Device::Cpu)?;
    let probe_r2_per_field: Vec<f64> = Vec::<f64>::try_from(&r2)?;
    // Fields that never vary in validation (constant) carry no information; skip them in the mean.
    let var: Vec<f64> =
        Vec::<f64>::try_from(&y.f_var_dim(0, false, false)?.f_to_device(Device::Cpu)?)?;
    let informative: Vec<f64> = probe_r2_per_field
        .iter()
        .zip(&var)
        .filter(|(_, v)| **v > 1e-9)
        .map(|(r, _)| *r)
        .collect();
    let probe_r2 = informative.iter().sum::<f64>() / informative.len().max(1) as f64;
    let min_std = per_dim_std.iter().copied().fold(f64::INFINITY, f64::min);
    let mean_std = per_dim_std.iter().sum::<f64>() / per_dim_std.len().max(1) as f64;
    let collapsed_dims = per_dim_std.iter().filter(|s| **s < 0.01).count();
    Ok(LatentHealth {
        per_dim_std,
        min_std,
        mean_std,
        collapsed_dims,
        probe_r2,
        probe_r2_per_field,
    })
}

pub(crate) fn plot_curve(path: &Path, curve: &[(usize, f64, f64)]) -> Result<()> {
    use plotters::prelude::*;
    crate::plots::ensure_font();
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let xmax = curve.last().map(|c| c.0).unwrap_or(1).max(1) as f64;
        let vals: Vec<f64> = curve
            .iter()
            .flat_map(|c| [c.1, c.2])
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let ymin = vals.iter().copied().fold(f64::INFINITY, f64::min).max(1e-8);
        let ymax = vals.iter().copied().fold(0.0, f64::max).max(ymin * 10.0);
        let mut chart = ChartBuilder::on(&root)
            .caption("JEPA training: latent prediction loss", ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, (ymin * 0.9..ymax * 1.1).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                curve.iter().map(|c| (c.0 as f64, c.1)),
                BLUE.stroke_width(2),
            ))?
            .label("train (total)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
        chart
            .draw_series(LineSeries::new(
                curve.iter().map(|c| (c.0 as f64, c.2)),
                RED.stroke_width(2),
            ))?
            .label("validation (prediction)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

/// Trains a JEPA model on `data` and saves the weights of the best validation loss to `out`
/// (`out.safetensors` + `out.json`), with `out.loss.png` and `out.train.json` (the report).
/// While training, the best weights so far are kept in `out.best-checkpoint.*` (removed at the
/// end).
pub fn train(
    data: &Dataset,
    cfg: &TrainConfig,
    out: &Path,
    device: Device,
    progress: bool,
) -> Result<TrainReport> {
    cfg.validate()?;
    if cfg.keypoints > 0 {
        bail!("--keypoints is an image encoder head: it needs a camera dataset (an `image` field)");
    }
    if cfg.image_norm != zplan_models::jepa::ImageNorm::Pixel {
        bail!(
            "--image-norm normalises camera images: it needs a camera dataset (an `image` field)"
        );
    }
    let started = Instant::now();
    let s = data.obs.size();
    let (n_ep, t1, d) = (s[0], s[1], s[2]);
    let a_dim = data.actions.size()[2];
    let k = cfg.rollout_steps as i64;
    if t1 - 1 < k {
        bail!(
            "episodes have {} steps, fewer than --rollout-steps {k}",
            t1 - 1
        );
    }
    let n_val = ((n_ep as f64 * cfg.val_fraction).round() as i64).clamp(1, n_ep - 1);
    if n_ep < 2 {
        bail!("the dataset has {n_ep} episode(s); at least 2 are needed for a validation split");
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut eps: Vec<i64> = (0..n_ep).collect();
    eps.shuffle(&mut rng);
    let pick = |idx: &[i64]| -> Result<Split> {
        let i = Tensor::from_slice(idx);
        Ok(Split {
            obs: data.obs.f_index_select(0, &i)?,
            actions: data.actions.f_index_select(0, &i)?,
        })
    };
    let val = pick(&eps[..n_val as usize])?;
    let train = pick(&eps[n_val as usize..])?;
    let starts = |sp: &Split| -> Vec<(i64, i64)> {
        let n = sp.obs.size()[0];
        (0..n)
            .flat_map(|e| (0..t1 - k).map(move |t| (e, t)))
            .collect()
    };
    let train_starts = starts(&train);
    let mut val_starts = starts(&val);
    val_starts.shuffle(&mut rng);
    val_starts.truncate(8192);

    let mut jcfg = JepaConfig::new(d, a_dim);
    jcfg.latent_dim = cfg.latent_dim;
    jcfg.enc_hidden = cfg.hidden;
    jcfg.pred_hidden = cfg.hidden;
    jcfg.enc_layers = cfg.enc_layers;
    jcfg.pred_layers = cfg.layers;
    if cfg.inverse_weight > 0.0 {
        jcfg.inverse_hidden = cfg.hidden;
        jcfg.inverse_layers = 1;
    }
    jcfg.seed = cfg.seed;
    if !cfg.proprio.is_empty() {
        jcfg.proprio = proprio_indices(&cfg.proprio, &data.meta.obs_names)?;
        jcfg.proprio_latent_dim = cfg.proprio_latent_dim;
    }
    let mut nets = JepaNets::new(jcfg, device)?;
    nets.set_obs_norm(ObsNorm::from_data(&train.obs.f_reshape([-1, d])?)?)?;
    nets.scenario = Some(serde_json::to_value(&data.meta.scenario)?);
    let low = Tensor::from_slice(&data.meta.action_low).f_to_device(device)?;
    let high = Tensor::from_slice(&data.meta.action_high).f_to_device(device)?;
    let scale = (
        ((&low + &high) * 0.5),
        ((&high - &low) * 0.5).f_clamp_min(1e-6)?,
    );
    let mut target = nets.target_encoder()?;
    let mut opt = nn::AdamW {
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(&nets.vs, cfg.lr)?;

    let ckpt = checkpoint_path(out);
    let initial_val = eval_loss(&nets, &target, &val, &val_starts, cfg, &scale, device)?;
    let mut best = (f64::INFINITY, 0usize);
    let mut curve = vec![(0usize, f64::NAN, initial_val)];
    let bar = progress_bar(cfg.steps, progress);
    let mut running = 0.0;
    let mut running_n = 0.0;
    let mut step = 0;
    let deadline = started + std::time::Duration::from_secs_f64(cfg.time_limit_min * 60.0);
    let _ = train.windows();
    while step < cfg.steps {
        let batch: Vec<(i64, i64)> = (0..cfg.batch)
            .map(|_| train_starts[rand::Rng::random_range(&mut rng, 0..train_starts.len())])
            .collect();
        let (o, a) = gather(&train, &batch, k, device)?;
        // Cosine learning-rate decay to 5 % of the initial rate.
        opt.set_lr(cosine_lr(cfg.lr, step, cfg.steps));
        let l = batch_loss(&nets, &target, &o, &a, cfg, &scale)?;
        opt.zero_grad();
        l.total.f_backward()?;
        opt.step();
        target.ema_update(&nets, cfg.ema)?;
        let lv = l.total.double_value(&[]);
        if !lv.is_finite() {
            bail!("training diverged at step {step} (loss {lv}); lower --lr");
        }
        running += lv;
        running_n += 1.0;
        step += 1;
        bar.inc(1);
        if step % cfg.eval_every == 0 || step == cfg.steps || Instant::now() >= deadline {
            let v = eval_loss(&nets, &target, &val, &val_starts, cfg, &scale, device)?;
            curve.push((step, running / running_n, v));
            bar.set_message(format!("train {:.4} val {:.4}", running / running_n, v));
            running = 0.0;
            running_n = 0.0;
            if v < best.0 {
                best = (v, step);
                nets.training = serde_json::json!({ "step": step, "val_loss": v, "config": cfg });
                nets.save(&ckpt)?;
            }
            if Instant::now() >= deadline {
                tracing::warn!("time limit reached at step {step}");
                break;
            }
        }
    }
    bar.finish_and_clear();
    // The saved model is the best checkpoint.
    let best_nets = JepaNets::load(&ckpt, device)?;
    let health = latent_health(&best_nets, &train.obs, &val.obs)?;
    let report = TrainReport {
        steps: step,
        best_val_loss: best.0,
        best_step: best.1,
        initial_val_loss: initial_val,
        curve,
        health,
        seconds: started.elapsed().as_secs_f64(),
        model_path: out.to_path_buf(),
    };
    let dataset =
        serde_json::json!({ "episodes": n_ep, "steps": t1 - 1, "collect": data.meta.collect });
    finish(best_nets, &report, cfg, dataset, out)?;
    Ok(report)
}

/// Indices of the `--proprio` field names in the dataset's observation names.
fn proprio_indices(names: &[String], obs_names: &[String]) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let i = obs_names
            .iter()
            .position(|o| o == n.trim())
            .with_context(|| {
                format!(
                    "--proprio: `{n}` is not an observation field of this dataset (fields: {})",
                    obs_names.join(", ")
                )
            })?;
        if out.contains(&i) {
            bail!("--proprio: `{n}` is listed twice");
        }
        out.push(i);
    }
    if out.len() == obs_names.len() {
        bail!("--proprio names every observation field; leave at least one for the scene encoder");
    }
    Ok(out)
}

pub(crate) fn checkpoint_path(out: &Path) -> PathBuf {
    let stem = out.with_extension("");
    PathBuf::from(format!("{}.best-checkpoint.safetensors", stem.display()))
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    /// 64 samples of one keypoint sliding along y only (x fixed, y std about 0.3) and one
    /// free latent entry of std about 2.
    fn door_like() -> Tensor {
        let n = 64;
        let y = Tensor::linspace(-0.5, 0.5, n, (Kind::Float, Device::Cpu));
        let x = Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let free = Tensor::linspace(-3.5, 3.5, n, (Kind::Float, Device::Cpu));
        Tensor::stack(&[x, y, free], 1)
    }

    #[test]
    fn keypoint_floor_spares_a_keypoint_that_moves_along_one_axis() {
        let z = door_like();
        let (pooled, _) = vicreg(&z, Some((1, 0.1))).unwrap();
        assert_abs_diff_eq!(pooled.double_value(&[]), 0.0, epsilon = 1e-6);
        // The unit floor on every coordinate penalises the fixed x and the small y spread.
        let (unit, _) = vicreg(&z, None).unwrap();
        assert!(unit.double_value(&[]) > 0.5, "{}", unit.double_value(&[]));
    }

    /// 64 samples of two keypoints. Keypoint 1 moves over the image; keypoint 2 is keypoint 1
    /// scaled by `scale` (a copy), or with `scale = None` sits at a fixed x and slides in y
    /// along a sawtooth unrelated to keypoint 1 (a door).
    fn two_keypoints(scale: Option<f64>) -> Tensor {
        let n = 64;
        let opts = (Kind::Float, Device::Cpu);
        let t = Tensor::linspace(0.0, std::f64::consts::TAU, n, opts);
        let (x1, y1) = (t.cos() * 0.6, (&t * 2.0).sin() * 0.6);
        let (x2, y2) = match scale {
            Some(s) => (&x1 * s, &y1 * s),
            None => (
                Tensor::zeros([n], opts),
                (Tensor::arange(n, opts).fmod(8.0) - 3.5) * 0.08,
            ),
        };
        Tensor::stack(&[x1, y1, x2, y2], 1)
    }

    #[test]
    fn keypoint_correlation_does_not_shrink_like_the_covariance_term() {
        // Keypoint 2 follows keypoint 1 at a quarter of its spread: VICReg's covariance term
        // falls 16-fold, the correlation penalty only about 2-fold (the ε of small spreads).
        let small = two_keypoints(Some(0.25));
        let large = two_keypoints(Some(1.0));
        let c_small = keypoint_correlation(&small, 2).unwrap().double_value(&[]);
        let c_large = keypoint_correlation(&large, 2).unwrap().double_value(&[]);
        // var/(var + eps) = 0.18/0.19 on the two correlated pairs: 0.45.
        assert!((0.4..=0.5).contains(&c_large), "{c_large}");
        assert!(c_small > 0.2, "{c_small}");
        let (_, cov_small) = vicreg(&small, None).unwrap();
        let (_, cov_large) = vicreg(&large, None).unwrap();
        assert!(cov_small.double_value(&[]) < 0.1 * cov_large.double_value(&[]));
    }

    #[test]
    fn keypoint_correlation_is_small_for_independent_keypoints() {
        let door = keypoint_correlation(&two_keypoints(None), 2)
            .unwrap()
            .double_value(&[]);
        assert!(door < 0.02, "{door}");
    }

    #[test]
    fn within_window_motion_sees_only_the_moving_keypoint() {
        // 4 windows of 3 frames, 2 keypoints: keypoint 0 moves within each window, keypoint 1
        // differs between windows but is still within each.
        let opts = (Kind::Float, Device::Cpu);
        let t = Tensor::arange(3, opts)
            .view([1, 3, 1])
            .expand([4, 3, 1], false);
        let w = Tensor::arange(4, opts)
            .view([4, 1, 1])
            .expand([4, 3, 1], false);
        let z = Tensor::cat(&[&t * 0.1, &t * 0.1, &w * 0.3, &w * -0.2], 2);
        let moving = within_window_motion(&z, 0, 1).unwrap().double_value(&[]);
        let still = within_window_motion(&z, 1, 1).unwrap().double_value(&[]);
        // Frames 0, 0.1, 0.2 about their mean 0.1: mean squared deviation 0.02 / 3.
        assert_abs_diff_eq!(moving, 0.02 / 3.0, epsilon = 1e-6);
        assert_abs_diff_eq!(still, 0.0, epsilon = 1e-9);
    }

    #[test]
    fn keypoint_options_that_cannot_apply_are_refused_by_name() {
        let one = TrainConfig {
            keypoints: 1,
            ..TrainConfig::default()
        };
        let cases = [
            (
                "--static-keypoints",
                TrainConfig {
                    static_keypoints: 2,
                    ..one.clone()
                },
            ),
            (
                "--keypoint-decorrelation",
                TrainConfig {
                    keypoint_decorrelation: 1.0,
                    ..one.clone()
                },
            ),
        ];
        for (flag, cfg) in cases {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(flag), "{flag}: {err}");
        }
        one.validate().unwrap();
    }

    #[test]
    fn keypoint_floor_still_penalises_a_keypoint_that_never_moves() {
        let z = door_like();
        let _ = z.narrow(1, 1, 1).fill_(0.25);
        let (l, _) = vicreg(&z, Some((1, 0.1))).unwrap();
        // One of two units (the keypoint, spread 0 -> hinge 0.1 - 0.01) is penalised.
        assert_abs_diff_eq!(l.double_value(&[]), (0.1 - 0.01) / 2.0, epsilon = 1e-3);
    }
}
