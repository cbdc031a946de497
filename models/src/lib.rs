//! zplan-models: the world models zplan plans with.
//!
//! A world model ([`WorldModel`]) encodes typed observations ([`ObsBatch`]: one tensor
//! `[B, *shape]` per named field — `state`, `image` (u8, scaled to `[0, 1]` on the model's
//! device), `proprio`) into latents `[B, *latent_shape]` and rolls latents forward under action sequences `[B, H, A]` into
//! `[B, H, *latent_shape]`. The latent shape is free (a vector, tokens `[N, D]`, ...); planners
//! only compare latents. Three implementations:
//!
//! | model | latent | loaded from | gradients |
//! |---|---|---|---|
//! | [`TorchScriptModel`] | whatever `encode` returns | a TorchScript file (contract in `models/README.md`) | yes |
//! | [`JepaModel`] | `[latent_dim]` | `<name>.safetensors` + `<name>.json` ([`JepaSidecar`]) | yes |
//! | [`SimModel`] | the true state | a scenario ([`zplan_sim::ScenarioConfig`]) | no |
//!
//! Suite files and the command line name a model with a [`ModelSpec`]; [`load_model`] loads it
//! for a scenario on a [`DeviceChoice`] (CUDA when available by default, never hard-coded) and
//! checks that it fits the scenario. [`inspect()`] times a batched encode and rollout.
//! [`load_model_with`] also takes a [`Precision`]: with [`Precision::Bf16`] TorchScript and
//! native JEPA models compute in bfloat16 while every tensor they hand out stays float32.
//!
//! All models are `Send + Sync`: one loaded model serves several planner threads. Inference runs
//! without autograd whatever the calling thread's grad mode; bad inputs and bad model files are
//! [`ModelError`]s naming the file, the method and the expected and actual shapes, never panics.
//!
//! # Example
//!
//! ```
//! use tch::{Device, Kind, Tensor};
//! use zplan_models::{JepaConfig, JepaModel, ObsBatch, Observation, WorldModel};
//!
//! // A freshly initialised native JEPA model for 4-d observations and 2-d actions.
//! let config = JepaConfig { latent_dim: 16, enc_hidden: 32, pred_hidden: 32, ..JepaConfig::new(4, 2) };
//! let model = JepaModel::new(config, Device::Cpu)?;
//!
//! // Encode a batch of 8 observations and roll each out under its own 5 actions.
//! let obs = ObsBatch::state(Tensor::zeros([8, 4], (Kind::Float, Device::Cpu)));
//! let z0 = model.encode(&obs)?;
//! let actions = Tensor::zeros([8, 5, 2], (Kind::Float, Device::Cpu));
//! let zs = model.rollout(&z0, &actions)?;
//! assert_eq!(zs.size(), [8, 5, 16]);
//!
//! // Host observations are batched field by field (only the fields the model reads).
//! let one = Observation::state(vec![0.1, 0.2, 0.3, 0.4]);
//! let batch = ObsBatch::from_observations(model.obs_spec(), &[&one], Device::Cpu)?;
//! assert_eq!(model.encode(&batch)?.size(), [1, 16]);
//!
//! // Observations that do not fit are errors that say what was expected.
//! let short = Observation::state(vec![0.1, 0.2, 0.3]);
//! let err = ObsBatch::from_observations(model.obs_spec(), &[&short], Device::Cpu).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "observation 0: observation field `state`: expected f32 [4] (4 values), got f32 with 3 values"
//! );
//! # Ok::<(), zplan_models::ModelError>(())
//! ```
#![warn(missing_docs)]

pub mod device;
pub mod error;
pub mod inspect;
pub mod jepa;
pub mod obs;
pub mod parallel;
pub mod precision;
#[cfg(feature = "sim")]
pub mod sim_model;
pub mod spec;
pub mod torchscript;
mod util;
pub mod world_model;

pub use device::{device_name, flush_denormals, CpuBf16, DeviceChoice};
pub use error::{ModelError, Result};
pub use inspect::{compare_precision, inspect, inspect_with, InspectReport, PrecisionDiff};
pub use jepa::{
    Activation, JepaConfig, JepaModel, JepaNets, JepaSidecar, Mlp, ObsNorm, TargetEncoder,
};
pub use obs::{state_shape_spec, state_spec, ObsBatch};
pub use parallel::ParallelRollout;
pub use precision::Precision;
#[cfg(feature = "sim")]
pub use sim_model::SimModel;
pub use spec::{check_fits, load_model_for, load_model_for_with, LoadOptions, ModelSpec};
#[cfg(feature = "sim")]
pub use spec::{load_model, load_model_with, load_model_with_threads};
pub use torchscript::TorchScriptModel;
pub use world_model::{Rollout, WorldModel};
pub use zplan_obs::{self as observation, Dtype, FieldSpec, ObsSpec, Observation};

#[cfg(test)]
mod tests {
    /// Everything a planner or runner shares across threads, or returns as an error.
    #[test]
    fn thread_safety_and_error_bounds() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<crate::ModelError>();
        send_sync::<crate::TorchScriptModel>();
        send_sync::<crate::JepaModel>();
        #[cfg(feature = "sim")]
        send_sync::<crate::SimModel>();
        send_sync::<std::sync::Arc<dyn crate::WorldModel>>();
        fn send<T: Send>() {}
        send::<crate::JepaNets>();
        send::<crate::TargetEncoder>();
    }
}
