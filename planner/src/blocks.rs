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

    fn expand(&self, actions: &Tensor) -> zplan_models::Result<Tensor> {
        if self.block == 1 || actions.dim() != 3 {
            return Ok(actions.shallow_clone());
        }
        Ok(actions.f_repeat_interleave_self_int(self.block as i64, 1, None)?)
    }

    fn block_ends(&self, pred: Tensor) -> zplan_models::Result<Tensor> {
        let mut shape = pred.size();
        if self.block == 1 || shape.len() < 2 || shape[1] % self.block as i64 != 0 {
            // A shape the contract does not allow; let the energy's shape check report it.
            return Ok(pred);
        }
        let steps = shape[1] / self.block as i64;
        shape[1] = self.block as i64;
        shape.insert(1, steps);
        Ok(pred
            .f_reshape(shape.as_slice())?
            .f_select(2, self.block as i64 - 1)?)
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
    fn precision(&self) -> zplan_models::Precision {
        self.inner.precision()
    }
    fn frameskip(&self) -> usize {
        self.inner.frameskip()
    }
    fn encode(&self, obs: &zplan_models::ObsBatch) -> zplan_models::Result<Tensor> {
        self.inner.encode(obs)
    }
    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
        self.block_ends(self.inner.rollout(z0, &self.expand(actions)?)?)
    }
    /// Blocks of one step leave the inner model's result as it is, exclusive or not; longer
    /// blocks select a view of it, which is read by copy.
    fn rollout_owned(
        &self,
        z0: &Tensor,
        actions: &Tensor,
    ) -> zplan_models::Result<zplan_models::Rollout> {
        if self.block == 1 {
            return self.inner.rollout_owned(z0, actions);
        }
        Ok(zplan_models::Rollout::shared(self.rollout(z0, actions)?))
    }
    fn supports_grad(&self) -> bool {
        self.inner.supports_grad()
    }
    fn rollout_grad(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
        self.block_ends(self.inner.rollout_grad(z0, &self.expand(actions)?)?)
    }
}
