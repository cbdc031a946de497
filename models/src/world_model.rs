//! The seam between planners and world models.

use crate::{ObsBatch, Precision, Result};
use tch::{Device, Kind, Tensor};
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
/// action, not including `z0`). Latents and actions are float32 on [`WorldModel::device`],
/// whatever [`WorldModel::precision`] the model computes in.
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
    /// `[B, H, *latent_shape]`.
    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor>;
    /// [`WorldModel::rollout`], with the result marked [`Rollout::exclusive`] when the model
    /// can promise that nothing else holds its storage, so that planners may read a CPU result
    /// in place instead of copying it. The default wraps `rollout` as [`Rollout::shared`]
    /// (always sound; planners then copy the values into a reused host buffer). Override it
    /// only for a model whose result is a tensor it has just created and keeps no handle to.
    fn rollout_owned(&self, z0: &Tensor, actions: &Tensor) -> Result<Rollout> {
        Ok(Rollout::shared(self.rollout(z0, actions)?))
    }
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
    /// The precision the model computes in ([`Precision::Bf16`]: bfloat16 weights and latents
    /// inside `encode` and `rollout`). Inputs and outputs are float32 either way. Default
    /// [`Precision::Fp32`]; wrappers report their inner model's.
    fn precision(&self) -> Precision {
        Precision::Fp32
    }
    /// Control steps one predictor step covers (a native JEPA's `config.frameskip`; its
    /// rollouts interpolate the latents inside each block). Plans read only predicted latents
    /// when their action block is a multiple of it. Default 1; wrappers report their inner
    /// model's.
    fn frameskip(&self) -> usize {
        1
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

/// A rollout's result, and whether the caller may read its memory in place.
///
/// A tensor is a shared handle: anyone holding another handle to its storage (a shallow
/// clone, a view, state kept by a TorchScript module) can write it, from this thread or
/// another, through libtorch's safe API. Borrowing the values as a `&[f32]` is therefore only
/// sound when no such handle exists. [`Rollout::exclusive`] is the model's `unsafe` promise
/// that none does; every other result is [`Rollout::shared`] and read by copy
/// ([`Rollout::copy_f32_into`]).
#[derive(Debug)]
pub struct Rollout {
    tensor: Tensor,
    exclusive: bool,
}

impl Rollout {
    /// A result that others may hold handles to (the default for every model).
    pub fn shared(tensor: Tensor) -> Self {
        Self {
            tensor,
            exclusive: false,
        }
    }

    /// A result whose storage nothing else can reach.
    ///
    /// # Safety
    /// No other handle to `tensor`'s storage exists (no shallow clone, view, or copy of the
    /// handle kept by the model, its modules or any thread), and libtorch itself will not
    /// write it: typically a tensor the model has just created (`stack`, `cat`, `from_slice`)
    /// and dropped every other handle to. [`Rollout::host_f32`] hands out `&[f32]` borrows of
    /// its memory on that promise.
    pub unsafe fn exclusive(tensor: Tensor) -> Self {
        Self {
            tensor,
            exclusive: true,
        }
    }

    /// Whether the model promised that nothing else holds the storage.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// The shape.
    pub fn size(&self) -> Vec<i64> {
        self.tensor.size()
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.tensor.device()
    }

    /// The values borrowed without a copy: `Some` for an exclusive, contiguous float32 CPU
    /// tensor, `None` otherwise (then use [`Rollout::copy_f32_into`]).
    pub fn host_f32(&self) -> Option<&[f32]> {
        let t = &self.tensor;
        if !self.exclusive
            || t.device() != Device::Cpu
            || t.kind() != Kind::Float
            || !t.is_contiguous()
        {
            return None;
        }
        let n = t.numel();
        if n == 0 {
            return Some(&[]);
        }
        let ptr = t.data_ptr() as *const f32;
        if ptr.is_null() || !ptr.is_aligned() {
            return None;
        }
        // SAFETY: `t` is a contiguous CPU float32 tensor, so `n` initialised f32 values start
        // at `ptr` (non-null and aligned, checked above); the slice borrows `self`, whose
        // tensor keeps the storage alive and is only given away by `into_tensor(self)`, which
        // the borrow prevents. Nothing writes the storage meanwhile: `exclusive` is set only
        // by `Rollout::exclusive`, whose caller promised that no other handle to it exists,
        // and `Rollout` hands out no handle of its own while borrowed.
        Some(unsafe { std::slice::from_raw_parts(ptr, n) })
    }

    /// Copies the values, converted to float32 and in row-major order, into `out` (resized to
    /// the number of elements), from any device and layout. Safe for shared results.
    ///
    /// # Errors
    /// [`crate::ModelError::Torch`] when libtorch fails to convert or copy.
    pub fn copy_f32_into(&self, out: &mut Vec<f32>) -> Result<()> {
        let torch = |source| crate::ModelError::Torch {
            context: "copying a rollout to the host".into(),
            source,
        };
        let t = self.tensor.f_to_kind(Kind::Float).map_err(torch)?;
        let n = t.numel();
        out.clear();
        out.resize(n, 0.0);
        t.f_copy_data(out, n).map_err(torch)
    }

    /// The tensor (for computing on it; gives up in-place reading).
    pub fn into_tensor(self) -> Tensor {
        self.tensor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Tensor {
        Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0]).view([2, 3])
    }

    #[test]
    fn only_exclusive_contiguous_float_cpu_results_are_borrowed() {
        // SAFETY: `grid()` is a fresh tensor and this is its only handle.
        let own = unsafe { Rollout::exclusive(grid()) };
        assert_eq!(own.host_f32(), Some(&[0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0][..]));
        assert!(own.is_exclusive());
        assert!(Rollout::shared(grid()).host_f32().is_none());
        // SAFETY: the transpose is the only handle to the fresh `grid()` storage.
        let strided = unsafe { Rollout::exclusive(grid().tr()) };
        assert!(strided.host_f32().is_none());
        // SAFETY: a fresh conversion, its only handle.
        let double = unsafe { Rollout::exclusive(grid().to_kind(Kind::Double)) };
        assert!(double.host_f32().is_none());
        // SAFETY: a fresh empty tensor.
        let empty =
            unsafe { Rollout::exclusive(Tensor::zeros([0, 3], (Kind::Float, Device::Cpu))) };
        assert_eq!(empty.host_f32(), Some(&[][..]));
    }

    #[test]
    fn copies_are_row_major_float_whatever_the_layout() {
        let mut out = vec![9.0; 1];
        Rollout::shared(grid().tr())
            .copy_f32_into(&mut out)
            .unwrap();
        assert_eq!(out, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        Rollout::shared(grid().to_kind(Kind::Double))
            .copy_f32_into(&mut out)
            .unwrap();
        assert_eq!(out, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let kept = grid();
        let shared = Rollout::shared(kept.shallow_clone());
        assert_eq!(shared.size(), [2, 3]);
        assert_eq!(shared.device(), Device::Cpu);
        shared.copy_f32_into(&mut out).unwrap();
        assert_eq!(out.len(), 6);
    }
}
