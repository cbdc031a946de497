//! Batches of typed observations as tensors: what [`crate::WorldModel::encode`] takes.

use crate::error::TchContext;
use crate::{ModelError, Result};
use std::num::NonZeroUsize;
use tch::{Device, Kind, Tensor};
use zplan_obs::{Dtype, FieldData, ObsSpec, Observation, STATE};

/// A batch of observations: one tensor `[B, *shape]` per named field, in the field's dtype
/// (u8 images stay u8 until a model scales them on its own device, see
/// [`ObsBatch::float`]), plus, for the simulator-backed model only, the true states
/// `[B, D]`.
#[derive(Debug)]
pub struct ObsBatch {
    fields: Vec<(String, Tensor)>,
    true_state: Option<Tensor>,
    batch: i64,
}

impl ObsBatch {
    /// A batch of one field (its tensor `[B, *shape]`).
    pub fn single(name: &str, tensor: Tensor) -> Self {
        let batch = tensor.size().first().copied().unwrap_or(0);
        ObsBatch {
            fields: vec![(name.to_string(), tensor)],
            true_state: None,
            batch,
        }
    }

    /// A batch of state vectors `[B, D]` (field `state`).
    pub fn state(tensor: Tensor) -> Self {
        ObsBatch::single(STATE, tensor)
    }

    /// Adds (or replaces) a field `[B, *shape]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] when its batch size differs from the batch's.
    pub fn with(mut self, name: &str, tensor: Tensor) -> Result<Self> {
        let b = tensor.size().first().copied().unwrap_or(0);
        if !self.fields.is_empty() && b != self.batch {
            return Err(ModelError::InvalidConfig(format!(
                "observation field `{name}` has batch size {b}, the batch has {}",
                self.batch
            )));
        }
        self.batch = b;
        self.fields.retain(|(n, _)| n != name);
        self.fields.push((name.to_string(), tensor));
        Ok(self)
    }

    /// Stacks the fields of `spec` from `obs` (each checked against `spec`; other fields are
    /// ignored) into tensors on `device`. u8 fields stay u8 (a quarter of the bytes to move);
    /// true states are stacked when every observation carries one.
    ///
    /// # Errors
    /// [`ModelError::Observation`] naming the observation and field that do not fit `spec`.
    pub fn from_observations(spec: &ObsSpec, obs: &[&Observation], device: Device) -> Result<Self> {
        let b = obs.len() as i64;
        for (i, o) in obs.iter().enumerate() {
            spec.check_fields(o)
                .map_err(|error| ModelError::Observation { index: i, error })?;
        }
        let mut fields = Vec::with_capacity(spec.fields().len());
        for f in spec.fields() {
            let mut size = vec![b];
            size.extend(f.shape.iter().map(|&d| d as i64));
            let t = match f.dtype {
                Dtype::F32 => {
                    let mut flat = Vec::with_capacity(obs.len() * f.numel());
                    for o in obs {
                        if let Some(FieldData::F32(v)) = o.get(&f.name) {
                            flat.extend_from_slice(v);
                        }
                    }
                    Tensor::f_from_slice(&flat)
                }
                Dtype::U8 => {
                    let mut flat = Vec::with_capacity(obs.len() * f.numel());
                    for o in obs {
                        if let Some(FieldData::U8(v)) = o.get(&f.name) {
                            flat.extend_from_slice(v);
                        }
                    }
                    Tensor::f_from_slice(&flat)
                }
            }
            .and_then(|t| t.f_reshape(size.as_slice()))
            .and_then(|t| t.f_to_device(device))
            .ctx(|| format!("building the `{}` observation tensor", f.name))?;
            fields.push((f.name.clone(), t));
        }
        let true_state = if !obs.is_empty() && obs.iter().all(|o| o.true_state().is_some()) {
            let d = obs[0].true_state().map_or(0, <[f32]>::len);
            let mut flat = Vec::with_capacity(obs.len() * d);
            for (i, o) in obs.iter().enumerate() {
                let s = o.true_state().unwrap_or_default();
                if s.len() != d {
                    return Err(ModelError::InvalidConfig(format!(
                        "observation {i} carries a true state of {} entries, observation 0 of {d}",
                        s.len()
                    )));
                }
                flat.extend_from_slice(s);
            }
            Some(
                Tensor::f_from_slice(&flat)
                    .and_then(|t| t.f_reshape([b, d as i64]))
                    .and_then(|t| t.f_to_device(device))
                    .ctx(|| "building the true-state tensor".into())?,
            )
        } else {
            None
        };
        Ok(ObsBatch {
            fields,
            true_state,
            batch: b,
        })
    }

    /// Attaches true states `[B, D]` (for the simulator-backed model).
    pub fn with_true_state(mut self, state: Tensor) -> Self {
        self.true_state = Some(state);
        self
    }

    /// Batch size.
    pub fn batch_size(&self) -> i64 {
        self.batch
    }

    /// The tensor of field `name`.
    pub fn field(&self, name: &str) -> Option<&Tensor> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.fields.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// The true states `[B, D]`, if attached.
    pub fn true_state(&self) -> Option<&Tensor> {
        self.true_state.as_ref()
    }

    /// Field `name` as float32 on `device`: u8 values are moved first, then scaled to
    /// `[0, 1]` there (division by 255); float fields are converted as they are.
    ///
    /// # Errors
    /// [`ModelError::MissingField`] when the batch lacks the field; libtorch errors.
    pub fn float(&self, name: &str, model: &str, device: Device) -> Result<Tensor> {
        let t = self.field(name).ok_or_else(|| ModelError::MissingField {
            model: model.to_string(),
            field: name.to_string(),
            present: self
                .fields
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let on = t
            .f_to_device(device)
            .ctx(|| format!("moving `{name}` to {device:?}"))?;
        if on.kind() == Kind::Uint8 {
            on.f_to_kind(Kind::Float)
                .and_then(|x| x.f_div_scalar(255.0))
                .ctx(|| format!("scaling `{name}` to [0, 1]"))
        } else {
            on.f_to_kind(Kind::Float)
                .ctx(|| format!("converting `{name}` to float32"))
        }
    }
}

/// The observation spec of one unnamed `state` field of any shape (`--obs-shape D[,D...]`).
///
/// # Errors
/// [`ModelError::InvalidConfig`] for an empty shape or a dimension below 1.
pub fn state_shape_spec(shape: &[i64]) -> Result<ObsSpec> {
    if shape.is_empty() || shape.iter().any(|&d| d < 1) {
        return Err(ModelError::InvalidConfig(format!(
            "observation shape must be non-empty with positive sizes, got {shape:?}"
        )));
    }
    ObsSpec::new(vec![zplan_obs::FieldSpec {
        name: STATE.to_string(),
        dtype: Dtype::F32,
        shape: shape.iter().map(|&d| d as usize).collect(),
        names: Vec::new(),
    }])
    .map_err(|e| ModelError::InvalidConfig(e.to_string()))
}

/// The observation spec of a model that reads one unnamed state vector of `dim` entries
/// (`dim` 0 is taken as 1).
pub fn state_spec(dim: usize) -> ObsSpec {
    ObsSpec::unnamed_state(NonZeroUsize::new(dim).unwrap_or(NonZeroUsize::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zplan_obs::FieldSpec;

    #[test]
    fn stacks_fields_keeping_u8() {
        let spec = ObsSpec::new(vec![
            FieldSpec::image(16, 16, 1),
            FieldSpec::unnamed("proprio", 2),
        ])
        .unwrap();
        let o1 = Observation::new()
            .with("image", vec![255u8; 3 * 16 * 16])
            .with("proprio", vec![1.0f32, 2.0]);
        let o2 = Observation::new()
            .with("image", vec![0u8; 3 * 16 * 16])
            .with("proprio", vec![3.0f32, 4.0]);
        let b = ObsBatch::from_observations(&spec, &[&o1, &o2], Device::Cpu).unwrap();
        assert_eq!(b.batch_size(), 2);
        let im = b.field("image").unwrap();
        assert_eq!(im.kind(), Kind::Uint8);
        assert_eq!(im.size(), [2, 3, 16, 16]);
        let f = b.float("image", "m", Device::Cpu).unwrap();
        assert_eq!(f.double_value(&[0, 0, 0, 0]), 1.0);
        assert_eq!(f.double_value(&[1, 2, 3, 4]), 0.0);
        assert_eq!(b.field("proprio").unwrap().double_value(&[1, 1]), 4.0);
        assert!(b.true_state().is_none());
        let e = b.float("state", "m", Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("`state`"), "{e}");
    }

    #[test]
    fn refuses_observations_that_do_not_fit() {
        let spec = ObsSpec::new(vec![FieldSpec::image(16, 16, 1)]).unwrap();
        let o = Observation::new().with("image", vec![0u8; 10]);
        let e = ObsBatch::from_observations(&spec, &[&o], Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`image`") && e.contains("[3, 16, 16]"), "{e}");
    }

    #[test]
    fn true_states_travel_when_all_have_one() {
        let spec = state_spec(1);
        let a = Observation::state(vec![1.0]).with_true_state(vec![1.0, 2.0]);
        let b = Observation::state(vec![2.0]).with_true_state(vec![3.0, 4.0]);
        let batch = ObsBatch::from_observations(&spec, &[&a, &b], Device::Cpu).unwrap();
        assert_eq!(batch.true_state().unwrap().size(), [2, 2]);
        let c = Observation::state(vec![2.0]);
        let batch = ObsBatch::from_observations(&spec, &[&a, &c], Device::Cpu).unwrap();
        assert!(batch.true_state().is_none());
    }
}
