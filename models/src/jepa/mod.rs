//! Native JEPA world models for state observations, in tch.
//!
//! - [`JepaConfig`]: architecture sizes (stored in the sidecar);
//! - [`JepaNets`]: the trainable networks (encoder, residual predictor, optional inverse head)
//!   with their `VarStore`, plus a [`TargetEncoder`] for EMA targets;
//! - [`JepaModel`]: the networks behind [`crate::WorldModel`] for planning.
//!
//! Files: `<name>.safetensors` (weights, tensor names `encoder.l0.weight`, ...) and
//! `<name>.json` ([`JepaSidecar`]: sizes, observation normalisation, scenario, training info).

mod config;
mod encoder;
mod image;
mod mlp;
mod model;
mod nets;
mod sidecar;

pub use config::{Activation, JepaConfig, ObsNorm};
pub use encoder::ObsEncoder;
pub use image::{ConvNet, ImageEncoderConfig, ImageHead, ImageNorm};
pub use mlp::Mlp;
pub use model::JepaModel;
pub use nets::{JepaNets, TargetEncoder};
pub use sidecar::{jepa_paths, JepaSidecar, SIDECAR_FORMAT, SIDECAR_VERSION};
