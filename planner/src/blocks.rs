//! Action blocks: plan one action per `block` control steps.

use std::sync::Arc;
use tch::{Device, Tensor};
use zplan_models::WorldModel;

/// A view of a world model in which one step holds an action for `block` control steps
/// (DINO-WM's frameskip, stable-worldmodel's action block). Rollouts return the latent at the
/// end of each block. Planning over blocks reaches `block` times further with the same number
/// of decision variables, which is what long, walled tasks need.
pub struct ActionBlocks {
    inner: Arc<dyn WorldModel>,
    block: usize,
    name: String,
}

impl ActionBlocks {
    /// Wraps `inner` (`block >= 1`; 1 is a transparent view).
    pub fn new(inner: Arc<dyn WorldModel>, block: usize) -> Self {
        let block = block.max(1);
        let name = format!("{}[block {block}]", inner.name());
        Self { inner, block, name }
    }

    /// Control steps per planned action.
    pub fn block(&self) -> usize {
        self.block
    }

    fn expand(&self, actions: &Tensor) -> Tensor {
        if self.block == 1 || actions.dim() != 3 {
            return actions.shallow_clone();
        }
        actions.repeat_interleave_self_int(self.block as i64, 1, None)
    }

    fn block_ends(&self, pred: Tensor) -> Tensor {
        let mut shape = pred.size();
        if self.block == 1 || shape.len() < 2 || shape[1] % self.block as i64 != 0 {
            // A shape the contract does not allow; let the energy's shape check report it.
            return pred;
        }
        let steps = shape[1] / self.block as i64;
        shape[1] = self.block as i64;
        shape.insert(1, steps);
        pred.reshape(shape.as_slice())
            .select(2, self.block as i64 - 1)
    }
}

impl WorldModel for ActionBlocks {
    fn name(&self) -> &str {
        &self.name
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
    fn obs_spec(&self) -> &zplan_models::ObsSpec {
        self.inner.obs_spec()
    }
    fn needs_true_state(&self) -> bool {
        self.inner.needs_true_state()
    }
    fn action_dim(&self) -> i64 {
        self.inner.action_dim()
    }
    fn latent_shape(&self) -> &[i64] {
        self.inner.latent_shape()
    }
    fn proprio_latent(&self) -> Option<std::ops::Range<usize>> {
        self.inner.proprio_latent()
    }
    fn encode(&self, obs: &zplan_models::ObsBatch) -> zplan_models::Result<Tensor> {
        self.inner.encode(obs)
    }
    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
        Ok(self.block_ends(self.inner.rollout(z0, &self.expand(actions))?))
    }
    fn supports_grad(&self) -> bool {
        self.inner.supports_grad()
    }
    fn rollout_grad(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
        Ok(self.block_ends(self.inner.rollout_grad(z0, &self.expand(actions))?))
    }
}
