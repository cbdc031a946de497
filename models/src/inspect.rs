//! Timing a model's batched encode and rollout (`zplan model inspect`).

use crate::device::device_name;
use crate::util::{fmt_shape, seeded_uniform};
use crate::{ModelError, ObsBatch, Result, WorldModel};
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
        proprio_latent: model.proprio_latent(),
        batch,
        horizon,
        warmup_ms,
        encode_ms,
        rollout_ms,
        latent_steps_per_s: (batch * horizon) as f64 / (rollout_ms / 1e3).max(1e-12),
    })
}
