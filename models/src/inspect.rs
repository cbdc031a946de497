//! Timing a model's batched encode and rollout (`zplan model inspect`).

use crate::device::device_name;
use crate::util::{fmt_shape, seeded_uniform};
use crate::{ModelError, Result, WorldModel};
use std::time::Instant;
use tch::{Device, Tensor};

/// What `zplan model inspect` prints about a loaded model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InspectReport {
    /// The model's name.
    pub name: String,
    /// Device, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// Shape of one observation.
    pub obs_shape: Vec<i64>,
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
        writeln!(f, "obs shape:      {}", fmt_shape(&self.obs_shape))?;
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

/// Times a batched encode and rollout on seeded random inputs: observations uniform in
/// `[-0.1, 0.1]` (near the origin, a valid state for the bundled scenarios) and actions uniform
/// in `[-1, 1]`. Use [`inspect_with`] to time real observations (the simulator-backed model
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
    let mut size = vec![batch];
    size.extend_from_slice(model.obs_shape());
    let obs = seeded_uniform(&size, -0.1, 0.1, 1, Device::Cpu)?;
    inspect_with(model, &obs, horizon)
}

/// Like [`inspect`] with the given observations `[B, *obs_shape]`.
///
/// # Errors
/// Any error of the model, or [`ModelError::InvalidConfig`] for an empty batch or `horizon < 1`.
pub fn inspect_with(model: &dyn WorldModel, obs: &Tensor, horizon: i64) -> Result<InspectReport> {
    let batch = obs.size().first().copied().unwrap_or(0);
    if batch < 1 || horizon < 1 {
        return Err(ModelError::InvalidConfig(format!(
            "inspect needs batch >= 1 and horizon >= 1, got {batch} and {horizon}"
        )));
    }
    let device = model.device();
    let obs = crate::util::to_float_on(obs, device)?;
    let actions = seeded_uniform(&[batch, horizon, model.action_dim()], -1.0, 1.0, 2, device)?;
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };

    let t0 = Instant::now();
    let z = model.encode(&obs)?;
    let _ = model.rollout(&z, &actions)?;
    sync();
    let warmup_ms = t0.elapsed().as_secs_f64() * 1e3;

    let mut encode_s = 0.0;
    let mut rollout_s = 0.0;
    for _ in 0..REPEATS {
        let t = Instant::now();
        let z = model.encode(&obs)?;
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
        obs_shape: model.obs_shape().to_vec(),
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
