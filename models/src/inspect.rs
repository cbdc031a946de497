//! Timing a model's batched encode and rollout (`zplan model inspect`).

use crate::device::device_name;
use crate::util::{fmt_shape, seeded_uniform};
use crate::{ModelError, ObsBatch, Precision, Result, WorldModel};
use std::time::Instant;
use tch::{Device, Kind};
use zplan_obs::Dtype;

/// What `zplan model inspect` prints about a loaded model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InspectReport {
    /// The model's name.
    pub name: String,
    /// Device, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// The observation fields the model reads (`image u8 [3, 64, 64], ...`).
    pub observation: String,
    /// Action size.
    pub action_dim: i64,
    /// Shape of one latent.
    pub latent_shape: Vec<i64>,
    /// Whether `rollout_grad` is supported.
    pub supports_grad: bool,
    /// The precision the model computes in.
    pub precision: Precision,
    /// How far its latents and predictions are from the float32 model's on the same inputs
    /// (filled in by the caller with [`compare_precision`]; `None` for float32).
    pub vs_fp32: Option<PrecisionDiff>,
    /// Flattened latent entries of the agent's own state (`WorldModel::proprio_latent`).
    pub proprio_latent: Option<std::ops::Range<usize>>,
    /// Batch size used for timing.
    pub batch: i64,
    /// Horizon used for timing.
    pub horizon: i64,
    /// The first (warm-up) encode + rollout, milliseconds: TorchScript optimises on first calls.
    pub warmup_ms: f64,
    /// Mean time of one batched encode, milliseconds.
    pub encode_ms: f64,
    /// Mean time of one batched rollout, milliseconds.
    pub rollout_ms: f64,
    /// `batch * horizon / rollout time`: latent steps per second.
    pub latent_steps_per_s: f64,
}

impl std::fmt::Display for InspectReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "model:          {}", self.name)?;
        writeln!(f, "device:         {}", self.device)?;
        writeln!(f, "observation:    {}", self.observation)?;
        writeln!(f, "action dim:     {}", self.action_dim)?;
        writeln!(f, "latent shape:   {}", fmt_shape(&self.latent_shape))?;
        writeln!(
            f,
            "gradients:      {}",
            if self.supports_grad { "yes" } else { "no" }
        )?;
        match self.precision {
            Precision::Fp32 => writeln!(f, "precision:      fp32")?,
            Precision::Bf16 => writeln!(
                f,
                "precision:      bf16 (weights and latents; float32 in and out)"
            )?,
        }
        if let Some(d) = &self.vs_fp32 {
            writeln!(f, "{d}")?;
        }
        if let Some(r) = &self.proprio_latent {
            writeln!(f, "proprio latent: entries {}..{}", r.start, r.end)?;
        }
        writeln!(f, "warm-up:        {:.2} ms", self.warmup_ms)?;
        writeln!(
            f,
            "encode  B={:<5}      {:.3} ms",
            self.batch, self.encode_ms
        )?;
        writeln!(
            f,
            "rollout B={:<5} H={:<3} {:.3} ms",
            self.batch, self.horizon, self.rollout_ms
        )?;
        write!(
            f,
            "throughput:     {:.0} latent steps/s",
            self.latent_steps_per_s
        )
    }
}

/// Number of timed repetitions after the warm-up.
const REPEATS: u32 = 3;

/// Times a batched encode and rollout on seeded random inputs: f32 observation fields uniform
/// in `[-0.1, 0.1]` (near the origin, a valid state for the bundled scenarios), u8 fields
/// (images) uniform in `0..=255`, and actions uniform in `[-1, 1]`. Use [`inspect_with`] to time real observations (the simulator-backed model
/// rejects states its scenario cannot represent).
///
/// # Errors
/// Any error of the model, or [`ModelError::InvalidConfig`] for `batch < 1` or `horizon < 1`.
pub fn inspect(model: &dyn WorldModel, batch: i64, horizon: i64) -> Result<InspectReport> {
    if batch < 1 {
        return Err(ModelError::InvalidConfig(format!(
            "inspect needs batch >= 1, got {batch}"
        )));
    }
    inspect_with(model, &random_batch(model, batch)?, horizon)
}

/// Seeded random observations of every field `model` reads (see [`inspect`]).
///
/// # Errors
/// libtorch errors.
pub fn random_batch(model: &dyn WorldModel, batch: i64) -> Result<ObsBatch> {
    let mut out: Option<ObsBatch> = None;
    for (k, f) in model.obs_spec().fields().iter().enumerate() {
        let mut size = vec![batch];
        size.extend(f.shape.iter().map(|&d| d as i64));
        let seed = 1 + k as u64;
        let t = match f.dtype {
            Dtype::F32 => seeded_uniform(&size, -0.1, 0.1, seed, Device::Cpu)?,
            Dtype::U8 => seeded_uniform(&size, 0.0, 255.99, seed, Device::Cpu)?
                .f_to_kind(Kind::Uint8)
                .map_err(|source| ModelError::Torch {
                    context: "random image observations".into(),
                    source,
                })?,
        };
        out = Some(match out {
            None => ObsBatch::single(&f.name, t),
            Some(b) => b.with(&f.name, t)?,
        });
    }
    out.ok_or_else(|| ModelError::InvalidConfig("the model reads no observation field".into()))
}

/// Like [`inspect`] with the given observations.
///
/// # Errors
/// Any error of the model, or [`ModelError::InvalidConfig`] for an empty batch or `horizon < 1`.
pub fn inspect_with(model: &dyn WorldModel, obs: &ObsBatch, horizon: i64) -> Result<InspectReport> {
    let batch = obs.batch_size();
    if batch < 1 || horizon < 1 {
        return Err(ModelError::InvalidConfig(format!(
            "inspect needs batch >= 1 and horizon >= 1, got {batch} and {horizon}"
        )));
    }
    let device = model.device();
    let actions = seeded_uniform(&[batch, horizon, model.action_dim()], -1.0, 1.0, 2, device)?;
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };

    let t0 = Instant::now();
    let z = model.encode(obs)?;
    let _ = model.rollout(&z, &actions)?;
    sync();
    let warmup_ms = t0.elapsed().as_secs_f64() * 1e3;

    let mut encode_s = 0.0;
    let mut rollout_s = 0.0;
    for _ in 0..REPEATS {
        let t = Instant::now();
        let z = model.encode(obs)?;
        sync();
        encode_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = model.rollout(&z, &actions)?;
        sync();
        rollout_s += t.elapsed().as_secs_f64();
    }
    let encode_ms = encode_s * 1e3 / REPEATS as f64;
    let rollout_ms = rollout_s * 1e3 / REPEATS as f64;
    Ok(InspectReport {
        name: model.name().to_string(),
        device: device_name(device),
        observation: model.obs_spec().to_string(),
        action_dim: model.action_dim(),
        latent_shape: model.latent_shape().to_vec(),
        supports_grad: model.supports_grad(),
        precision: model.precision(),
        vs_fp32: None,
        proprio_latent: model.proprio_latent(),
        batch,
        horizon,
        warmup_ms,
        encode_ms,
        rollout_ms,
        latent_steps_per_s: (batch * horizon) as f64 / (rollout_ms / 1e3).max(1e-12),
    })
}

/// How far a model computing in another precision is from the same model in float32, on the
/// same observations and actions ([`compare_precision`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PrecisionDiff {
    /// The precision compared with float32.
    pub precision: Precision,
    /// Largest `|z - z_fp32|` over the batch's latents.
    pub latent_max_abs: f64,
    /// `latent_max_abs / max |z_fp32|`.
    pub latent_rel: f64,
    /// Horizon of the compared rollouts.
    pub horizon: i64,
    /// Largest `|pred - pred_fp32|` over every predicted latent, each model rolling out from
    /// its own encoding (so encoder and predictor errors add up, as in planning).
    pub rollout_max_abs: f64,
    /// `rollout_max_abs / max |pred_fp32|`.
    pub rollout_rel: f64,
}

impl std::fmt::Display for PrecisionDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} vs fp32:   latents max |diff| {:.2e} ({:.2} % of max |z|), rollout H={} max |diff| {:.2e} ({:.2} %)",
            self.precision,
            self.latent_max_abs,
            100.0 * self.latent_rel,
            self.horizon,
            self.rollout_max_abs,
            100.0 * self.rollout_rel
        )
    }
}

/// Encodes `obs` and rolls the latents out `horizon` steps (seeded actions uniform in
/// `[-1, 1]`, the same for both) with `fp32` and with `other` (the same model loaded in
/// another precision), and reports the largest absolute and relative differences.
///
/// # Errors
/// Any error of either model; [`ModelError::InvalidConfig`] for `horizon < 1` or models whose
/// latent shapes differ.
pub fn compare_precision(
    fp32: &dyn WorldModel,
    other: &dyn WorldModel,
    obs: &ObsBatch,
    horizon: i64,
) -> Result<PrecisionDiff> {
    if horizon < 1 || fp32.latent_shape() != other.latent_shape() {
        return Err(ModelError::InvalidConfig(format!(
            "comparing precisions needs horizon >= 1 (got {horizon}) and the same latent shape (got {} and {})",
            fmt_shape(fp32.latent_shape()),
            fmt_shape(other.latent_shape())
        )));
    }
    let _guard = tch::no_grad_guard();
    let batch = obs.batch_size();
    let actions = seeded_uniform(
        &[batch, horizon, fp32.action_dim()],
        -1.0,
        1.0,
        3,
        fp32.device(),
    )?;
    let torch = |source| ModelError::Torch {
        context: "comparing precisions".into(),
        source,
    };
    // (max |a - b|, max |b|), in float64 on the host.
    let diff = |a: &tch::Tensor, b: &tch::Tensor| -> Result<(f64, f64)> {
        let a = a
            .f_to_device(Device::Cpu)
            .and_then(|t| t.f_to_kind(Kind::Double));
        let b = b
            .f_to_device(Device::Cpu)
            .and_then(|t| t.f_to_kind(Kind::Double));
        let (a, b) = (a.map_err(torch)?, b.map_err(torch)?);
        let max_abs = |t: &tch::Tensor| {
            t.f_abs()
                .and_then(|t| t.f_max())
                .and_then(|t| t.f_double_value(&[]))
                .map_err(torch)
        };
        Ok((max_abs(&a.f_sub(&b).map_err(torch)?)?, max_abs(&b)?))
    };
    let z32 = fp32.encode(obs)?;
    let z = other.encode(obs)?;
    let (latent_max_abs, z_scale) = diff(&z, &z32)?;
    let pred32 = fp32.rollout(&z32, &actions)?;
    let pred = other.rollout(&z, &actions)?;
    let (rollout_max_abs, pred_scale) = diff(&pred, &pred32)?;
    Ok(PrecisionDiff {
        precision: other.precision(),
        latent_max_abs,
        latent_rel: latent_max_abs / z_scale.max(f64::MIN_POSITIVE),
        horizon,
        rollout_max_abs,
        rollout_rel: rollout_max_abs / pred_scale.max(f64::MIN_POSITIVE),
    })
}
