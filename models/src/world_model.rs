//! The seam between planners and world models.

use crate::{ObsBatch, Result};
use tch::{Device, Tensor};
use zplan_obs::ObsSpec;

/// A batched, device-aware world model: encodes observations into latents and rolls latents
/// forward under action sequences.
///
/// Required: every method except [`WorldModel::rollout_grad`] (defaults to "unsupported") and
/// [`WorldModel::supports_grad`]. Inference methods (`encode`, `rollout`) run without autograd
/// whatever the calling thread's grad mode. One loaded model may be shared by several threads
/// (`Send + Sync`): implementations never mutate weights during inference.
///
/// Shapes: observations are typed batches ([`ObsBatch`]: one tensor `[B, *shape]` per field of
/// [`WorldModel::obs_spec`], u8 images still u8), actions `[B, H, A]`, latents
/// `[B, *latent_shape]`; rollouts return `[B, H, *latent_shape]` (the latent after each
/// action, not including `z0`). Latents and actions are float32 on [`WorldModel::device`].
pub trait WorldModel: Send + Sync {
    /// Short human-readable identity, e.g. `"torchscript:models/reach.pt"`.
    fn name(&self) -> &str;
    /// Device the model computes on; inputs are moved there.
    fn device(&self) -> Device;
    /// The observation fields the model reads, with their dtypes and shapes. A scenario must
    /// provide each of them (it may observe more); see [`ObsSpec::provides`].
    fn obs_spec(&self) -> &ObsSpec;
    /// Action size `A`.
    fn action_dim(&self) -> i64;
    /// Shape of one latent (without batch); free-form (vector, tokens, ...).
    fn latent_shape(&self) -> &[i64];
    /// Encodes a batch of observations into latents `[B, *latent_shape]`. u8 fields are
    /// scaled to `[0, 1]` on the model's device ([`ObsBatch::float`]).
    fn encode(&self, obs: &ObsBatch) -> Result<Tensor>;
    /// Encodes a batch of state vectors `[B, *shape]` (the `state` field alone): shorthand for
    /// `encode(&ObsBatch::state(obs))`, for models that read a state vector.
    fn encode_state(&self, obs: &Tensor) -> Result<Tensor> {
        self.encode(&ObsBatch::state(obs.shallow_clone()))
    }
    /// Rolls `z0` `[B, *latent_shape]` forward under `actions` `[B, H, A]`, returning
    /// `[B, H, *latent_shape]`. The result is the caller's to read (planners read CPU results
    /// in place): never a view of state that the model, or another thread, writes later.
    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor>;
    /// The flattened latent entries that encode the agent's own state (proprioception), when
    /// the model keeps them apart (a native JEPA trained with proprio fields); `None` (the
    /// default) when the latent does not separate them. Energies use it to weight the agent's
    /// latent apart from the scene's (`proprio_weight`).
    fn proprio_latent(&self) -> Option<std::ops::Range<usize>> {
        None
    }
    /// Whether `encode` reads the true simulator state that only the closed-loop runner
    /// attaches ([`zplan_obs::Observation::with_true_state`]): true for the simulator-backed
    /// model alone. Default false.
    fn needs_true_state(&self) -> bool {
        false
    }
    /// Whether [`WorldModel::rollout_grad`] is available (differentiable models).
    fn supports_grad(&self) -> bool {
        false
    }
    /// Like [`WorldModel::rollout`] but records autograd so gradients flow to `actions`.
    fn rollout_grad(&self, _z0: &Tensor, _actions: &Tensor) -> Result<Tensor> {
        Err(crate::ModelError::GradUnsupported(self.name().to_string()))
    }
}

impl std::fmt::Debug for dyn WorldModel + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorldModel")
            .field("name", &self.name())
            .field("device", &self.device())
            .field("obs_spec", &self.obs_spec().to_string())
            .field("action_dim", &self.action_dim())
            .field("latent_shape", &self.latent_shape())
            .finish()
    }
}
