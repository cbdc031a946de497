//! zplan-obs: what a robot observes, as typed, named fields.
//!
//! An [`ObsSpec`] describes a scenario's observation as an ordered list of named fields, each
//! with an element type ([`Dtype`]) and a shape; an [`Observation`] is one value of it. zplan
//! uses three field names:
//!
//! | field | dtype | shape | what |
//! |---|---|---|---|
//! | [`STATE`] | f32 | `[D]` | a state vector, with a name per entry (`x`, `y`, ...) |
//! | [`IMAGE`] | u8 | `[C, H, W]` | RGB camera image(s), channel-major; `C = 3 × history` (oldest frame first) |
//! | [`PROPRIO`] | f32 | `[P]` | the robot's own state (joint angles and velocities, pusher position) |
//!
//! The true simulator state is *not* part of an observation. Only the simulator-backed world
//! model may read it, and it gets it through [`Observation::with_true_state`], which only the
//! closed-loop runner calls, and only for that model.
//!
//! This crate has no physics and no libtorch: the simulator (`zplan-sim`) produces
//! observations, world models (`zplan-models`) consume them, and both depend on this crate
//! alone for the types.
//!
//! # Example
//!
//! ```
//! use zplan_obs::{Dtype, FieldSpec, ObsSpec, Observation};
//!
//! let spec = ObsSpec::new(vec![
//!     FieldSpec::image(64, 64, 1),
//!     FieldSpec::vector("proprio", vec!["pusher_x".into(), "pusher_y".into()]),
//! ])?;
//! assert_eq!(spec.to_string(), "image [3, 64, 64] u8, proprio [2] f32 (pusher_x, pusher_y)");
//!
//! let obs = Observation::new()
//!     .with("image", vec![0u8; 3 * 64 * 64])
//!     .with("proprio", vec![0.5f32, -0.2]);
//! spec.check(&obs)?;
//! assert_eq!(obs.f32("proprio"), Some(&[0.5f32, -0.2][..]));
//!
//! // A value that does not fit names the field, the expected and the actual size.
//! let bad = Observation::new().with("image", vec![0u8; 10]).with("proprio", vec![0.0f32; 2]);
//! assert_eq!(
//!     spec.check(&bad).unwrap_err().to_string(),
//!     "observation field `image`: expected u8 [3, 64, 64] (12288 values), got u8 with 10 values"
//! );
//! # Ok::<(), zplan_obs::ObsError>(())
//! ```
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroUsize;

/// Name of the state-vector field.
pub const STATE: &str = "state";
/// Name of the camera-image field.
pub const IMAGE: &str = "image";
/// Name of the proprioception field.
pub const PROPRIO: &str = "proprio";

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObsError {
    /// A field's value does not fit its spec.
    #[error("observation field `{field}`: expected {expected}, got {actual}")]
    Mismatch {
        /// Field name.
        field: String,
        /// What the spec says.
        expected: String,
        /// What was given.
        actual: String,
    },
    /// A field the spec requires is missing from a value.
    #[error("observation field `{field}` is missing (the observation has: {present})")]
    Missing {
        /// Field name.
        field: String,
        /// Names of the fields present.
        present: String,
    },
    /// A field that the spec does not know.
    #[error("observation field `{field}` is not in the spec ({spec})")]
    Unexpected {
        /// Field name.
        field: String,
        /// The spec, written out.
        spec: String,
    },
    /// A malformed spec.
    #[error("observation spec: {0}")]
    Spec(String),
    /// A non-finite value in an f32 field.
    #[error("observation field `{field}`: entry {index} is {value}, expected a finite number")]
    NonFinite {
        /// Field name.
        field: String,
        /// Flat index of the value.
        index: usize,
        /// The value.
        value: f32,
    },
}

/// Result with [`ObsError`].
pub type Result<T> = std::result::Result<T, ObsError>;

/// Element type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// 8-bit unsigned integer (images, 0–255).
    U8,
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::U8 => "u8",
        })
    }
}

/// One named field of an observation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Field name ([`STATE`], [`IMAGE`], [`PROPRIO`], or a name of the user's).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape of one value (no batch dimension).
    pub shape: Vec<usize>,
    /// Name of each entry of a vector field (empty for images, or when unnamed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl FieldSpec {
    /// An f32 vector field `[names.len()]` whose entries are named.
    pub fn vector(name: &str, names: Vec<String>) -> Self {
        FieldSpec {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape: vec![names.len()],
            names,
        }
    }

    /// An f32 vector field of `dim` unnamed entries.
    pub fn unnamed(name: &str, dim: usize) -> Self {
        FieldSpec {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape: vec![dim],
            names: Vec::new(),
        }
    }

    /// The [`IMAGE`] field: u8 `[3 × history, height, width]`.
    pub fn image(width: usize, height: usize, history: usize) -> Self {
        FieldSpec {
            name: IMAGE.to_string(),
            dtype: Dtype::U8,
            shape: vec![3 * history, height, width],
            names: Vec::new(),
        }
    }

    /// Number of values in one observation of this field.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// `u8 [3, 64, 64]`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.dtype, fmt_shape(&self.shape))
    }
}

impl fmt::Display for FieldSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.name, fmt_shape(&self.shape), self.dtype)?;
        if !self.names.is_empty() {
            write!(f, " ({})", self.names.join(", "))?;
        }
        Ok(())
    }
}

/// `[3, 64, 64]`.
pub fn fmt_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// The fields of an observation, in order (names unique, at least one field).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<FieldSpec>", into = "Vec<FieldSpec>")]
pub struct ObsSpec {
    fields: Vec<FieldSpec>,
}

impl TryFrom<Vec<FieldSpec>> for ObsSpec {
    type Error = ObsError;
    fn try_from(fields: Vec<FieldSpec>) -> Result<Self> {
        ObsSpec::new(fields)
    }
}

impl From<ObsSpec> for Vec<FieldSpec> {
    fn from(s: ObsSpec) -> Self {
        s.fields
    }
}

impl ObsSpec {
    /// A spec of these fields.
    ///
    /// # Errors
    /// [`ObsError::Spec`] for no fields, a repeated or empty name, an empty shape or a zero
    /// dimension, or entry names that do not match a vector's size.
    pub fn new(fields: Vec<FieldSpec>) -> Result<Self> {
        if fields.is_empty() {
            return Err(ObsError::Spec(
                "an observation needs at least one field".into(),
            ));
        }
        for (i, f) in fields.iter().enumerate() {
            if f.name.is_empty() {
                return Err(ObsError::Spec(format!("field {i} has an empty name")));
            }
            if fields[..i].iter().any(|g| g.name == f.name) {
                return Err(ObsError::Spec(format!("field `{}` appears twice", f.name)));
            }
            if f.shape.is_empty() || f.shape.contains(&0) {
                return Err(ObsError::Spec(format!(
                    "field `{}` has shape {}: every dimension must be >= 1",
                    f.name,
                    fmt_shape(&f.shape)
                )));
            }
            if !f.names.is_empty() && (f.shape.len() != 1 || f.names.len() != f.shape[0]) {
                return Err(ObsError::Spec(format!(
                    "field `{}` has {} entry names for shape {}",
                    f.name,
                    f.names.len(),
                    fmt_shape(&f.shape)
                )));
            }
        }
        Ok(ObsSpec { fields })
    }

    /// The classic state-vector observation: one [`STATE`] field with named entries.
    ///
    /// # Errors
    /// [`ObsError::Spec`] for no names.
    pub fn state(names: Vec<String>) -> Result<Self> {
        ObsSpec::new(vec![FieldSpec::vector(STATE, names)])
    }

    /// One [`STATE`] field of `dim` unnamed f32 entries. Infallible: a single field with a
    /// non-empty name and a positive size is always a valid spec.
    pub fn unnamed_state(dim: NonZeroUsize) -> Self {
        ObsSpec {
            fields: vec![FieldSpec::unnamed(STATE, dim.get())],
        }
    }

    /// The fields, in order.
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether the spec is a single [`STATE`] vector (a state-only observation).
    pub fn is_state_only(&self) -> bool {
        self.fields.len() == 1 && self.fields[0].name == STATE && self.fields[0].dtype == Dtype::F32
    }

    /// Checks that `obs` has exactly these fields with these dtypes and sizes, and that its
    /// f32 values are finite.
    ///
    /// # Errors
    /// [`ObsError::Missing`], [`ObsError::Unexpected`], [`ObsError::Mismatch`] or
    /// [`ObsError::NonFinite`], naming the field.
    pub fn check(&self, obs: &Observation) -> Result<()> {
        self.check_fields(obs)?;
        if let Some((name, _)) = obs.fields.iter().find(|(n, _)| self.field(n).is_none()) {
            return Err(ObsError::Unexpected {
                field: name.clone(),
                spec: self.to_string(),
            });
        }
        Ok(())
    }

    /// Checks the fields of this spec in `obs` (present, right dtype and size, finite),
    /// ignoring any other fields `obs` has: what a consumer that reads only these fields needs.
    ///
    /// # Errors
    /// [`ObsError::Missing`], [`ObsError::Mismatch`] or [`ObsError::NonFinite`].
    pub fn check_fields(&self, obs: &Observation) -> Result<()> {
        for f in &self.fields {
            let data = obs.get(&f.name).ok_or_else(|| ObsError::Missing {
                field: f.name.clone(),
                present: obs.names_joined(),
            })?;
            check_field(f, data)?;
        }
        Ok(())
    }

    /// Checks that this spec provides every field `needed` asks for, with the same dtype and
    /// shape (a consumer, e.g. a world model, may read a subset of the fields).
    ///
    /// # Errors
    /// [`ObsError::Missing`] or [`ObsError::Mismatch`] naming the field, with `needed`'s
    /// shape as expected and this spec's as actual.
    pub fn provides(&self, needed: &ObsSpec) -> Result<()> {
        for f in &needed.fields {
            let have = self.field(&f.name).ok_or_else(|| ObsError::Missing {
                field: f.name.clone(),
                present: self.to_string(),
            })?;
            if have.dtype != f.dtype || have.shape != f.shape {
                return Err(ObsError::Mismatch {
                    field: f.name.clone(),
                    expected: f.describe(),
                    actual: have.describe(),
                });
            }
        }
        Ok(())
    }
}

fn check_field(f: &FieldSpec, data: &FieldData) -> Result<()> {
    let n = f.numel();
    if data.dtype() != f.dtype || data.len() != n {
        return Err(ObsError::Mismatch {
            field: f.name.clone(),
            expected: format!("{} ({n} values)", f.describe()),
            actual: format!("{} with {} values", data.dtype(), data.len()),
        });
    }
    if let FieldData::F32(v) = data {
        if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(ObsError::NonFinite {
                field: f.name.clone(),
                index,
                value,
            });
        }
    }
    Ok(())
}

impl fmt::Display for ObsSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{field}")?;
        }
        Ok(())
    }
}

/// The values of one field, flat, in the field's shape (row-major; images channel-major).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldData {
    /// f32 values.
    F32(Vec<f32>),
    /// u8 values.
    U8(Vec<u8>),
}

impl FieldData {
    /// Element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            FieldData::F32(_) => Dtype::F32,
            FieldData::U8(_) => Dtype::U8,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            FieldData::F32(v) => v.len(),
            FieldData::U8(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<f32>> for FieldData {
    fn from(v: Vec<f32>) -> Self {
        FieldData::F32(v)
    }
}

impl From<Vec<u8>> for FieldData {
    fn from(v: Vec<u8>) -> Self {
        FieldData::U8(v)
    }
}

/// One observation: named field values, plus (for the simulator-backed model only) the true
/// simulator state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    fields: Vec<(String, FieldData)>,
    true_state: Option<Vec<f32>>,
}

impl Observation {
    /// An observation with no fields yet.
    pub fn new() -> Self {
        Observation::default()
    }

    /// A state-only observation (one [`STATE`] field).
    pub fn state(values: Vec<f32>) -> Self {
        Observation::new().with(STATE, values)
    }

    /// Adds (or replaces) a field.
    pub fn with(mut self, name: &str, data: impl Into<FieldData>) -> Self {
        self.insert(name, data);
        self
    }

    /// Adds (or replaces) a field in place.
    pub fn insert(&mut self, name: &str, data: impl Into<FieldData>) {
        let data = data.into();
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = data,
            None => self.fields.push((name.to_string(), data)),
        }
    }

    /// Attaches the true simulator state. Only the simulator-backed world model reads it; the
    /// closed-loop runner attaches it for that model alone, so planners and learned models
    /// never see simulator internals.
    pub fn with_true_state(mut self, state: Vec<f32>) -> Self {
        self.true_state = Some(state);
        self
    }

    /// The attached true simulator state, if any (see [`Observation::with_true_state`]).
    pub fn true_state(&self) -> Option<&[f32]> {
        self.true_state.as_deref()
    }

    /// The field called `name`.
    pub fn get(&self, name: &str) -> Option<&FieldData> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    /// The f32 values of field `name` (`None` if absent or not f32).
    pub fn f32(&self, name: &str) -> Option<&[f32]> {
        match self.get(name) {
            Some(FieldData::F32(v)) => Some(v),
            _ => None,
        }
    }

    /// The u8 values of field `name` (`None` if absent or not u8).
    pub fn u8(&self, name: &str) -> Option<&[u8]> {
        match self.get(name) {
            Some(FieldData::U8(v)) => Some(v),
            _ => None,
        }
    }

    /// The fields, in insertion order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &FieldData)> {
        self.fields.iter().map(|(n, d)| (n.as_str(), d))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn names_joined(&self) -> String {
        if self.fields.is_empty() {
            return "no fields".into();
        }
        self.fields
            .iter()
            .map(|(n, _)| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels() -> ObsSpec {
        ObsSpec::new(vec![
            FieldSpec::image(32, 16, 2),
            FieldSpec::vector(PROPRIO, vec!["a".into()]),
        ])
        .unwrap()
    }

    #[test]
    fn spec_rules() {
        assert!(ObsSpec::new(vec![]).is_err());
        let dup = ObsSpec::new(vec![FieldSpec::unnamed("x", 1), FieldSpec::unnamed("x", 2)]);
        assert!(dup.unwrap_err().to_string().contains("twice"));
        assert!(ObsSpec::new(vec![FieldSpec::unnamed("x", 0)]).is_err());
        let mut f = FieldSpec::unnamed("x", 2);
        f.names = vec!["a".into()];
        assert!(ObsSpec::new(vec![f]).is_err());
        assert_eq!(pixels().fields()[0].shape, [6, 16, 32]);
        assert!(ObsSpec::state(vec!["x".into()]).unwrap().is_state_only());
        assert!(!pixels().is_state_only());
    }

    #[test]
    fn unnamed_state_is_the_checked_spec() {
        let three = NonZeroUsize::new(3).unwrap();
        assert_eq!(
            ObsSpec::unnamed_state(three),
            ObsSpec::new(vec![FieldSpec::unnamed(STATE, 3)]).unwrap()
        );
        assert!(ObsSpec::unnamed_state(three).is_state_only());
    }

    #[test]
    fn checks_values() {
        let s = pixels();
        let ok = Observation::new()
            .with(IMAGE, vec![0u8; 6 * 16 * 32])
            .with(PROPRIO, vec![1.0f32]);
        s.check(&ok).unwrap();
        let missing = Observation::new().with(IMAGE, vec![0u8; 6 * 16 * 32]);
        assert!(matches!(s.check(&missing), Err(ObsError::Missing { .. })));
        let extra = ok.clone().with("other", vec![1.0f32]);
        assert!(matches!(s.check(&extra), Err(ObsError::Unexpected { .. })));
        let dtype = ok.clone().with(IMAGE, vec![0f32; 6 * 16 * 32]);
        let e = s.check(&dtype).unwrap_err().to_string();
        assert!(
            e.contains("expected u8 [6, 16, 32]") && e.contains("got f32"),
            "{e}"
        );
        let nan = ok.clone().with(PROPRIO, vec![f32::NAN]);
        assert!(matches!(s.check(&nan), Err(ObsError::NonFinite { .. })));
    }

    #[test]
    fn provides_a_subset_with_same_shapes() {
        let scenario = pixels();
        let proprio_only = ObsSpec::new(vec![FieldSpec::unnamed(PROPRIO, 1)]).unwrap();
        scenario.provides(&proprio_only).unwrap();
        let wrong = ObsSpec::new(vec![FieldSpec::image(64, 64, 1)]).unwrap();
        assert_eq!(
            scenario.provides(&wrong).unwrap_err().to_string(),
            "observation field `image`: expected u8 [3, 64, 64], got u8 [6, 16, 32]"
        );
        let state = ObsSpec::state(vec!["x".into()]).unwrap();
        assert!(matches!(
            scenario.provides(&state),
            Err(ObsError::Missing { .. })
        ));
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let s = pixels();
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ObsSpec>(&text).unwrap(), s);
        assert!(serde_json::from_str::<ObsSpec>("[]").is_err());
    }

    #[test]
    fn true_state_is_separate_from_fields() {
        let o = Observation::state(vec![1.0]).with_true_state(vec![1.0, 2.0]);
        assert_eq!(o.len(), 1);
        assert_eq!(o.true_state(), Some(&[1.0f32, 2.0][..]));
        ObsSpec::state(vec!["x".into()]).unwrap().check(&o).unwrap();
    }
}
