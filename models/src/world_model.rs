//! The seam between planners and world models.

use crate::Result;
use tch::{Device, Tensor};

/// A batched, device-aware world model: encodes observations into latents and rolls latents
/// forward under action sequences.
///
/// Required: every method except [`WorldModel::rollout_grad`] (defaults to "unsupported") and
/// [`WorldModel::supports_grad`]. Inference methods (`encode`, `rollout`) run without autograd
/// whatever the calling thread's grad mode. One loaded model may be shared by several threads
/// (`Send + Sync`): implementations never mutate weights during inference.
///
/// Shapes: observations `[B, *obs_shape]`, actions `[B, H, A]`, latents `[B, *latent_shape]`;
/// rollouts return `[B, H, *latent_shape]` (the latent after each action, not including `z0`).
/// All float32 on [`WorldModel::device`].
pub trait WorldModel: Send + Sync {
    /// Short human-readable identity, e.g. `"torchscript:models/reach.pt"`.
    fn name(&self) -> &str;
    /// Device the model computes on; inputs are moved there.
    fn device(&self) -> Device;
    /// Shape of one observation (without batch).
    fn obs_shape(&self) -> &[i64];
    /// Action size `A`.
    fn action_dim(&self) -> i64;
    /// Shape of one latent (without batch); free-form (vector, tokens, ...).
    fn latent_shape(&self) -> &[i64];
    /// Encodes a batch of observations `[B, *obs_shape]` into latents `[B, *latent_shape]`.
    fn encode(&self, obs: &Tensor) -> Result<Tensor>;
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
            .field("obs_shape", &self.obs_shape())
            .field("action_dim", &self.action_dim())
            .field("latent_shape", &self.latent_shape())
            .finish()
    }
}
