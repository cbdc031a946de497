//! Errors of the planner crate and the range checks that configs use.

/// Everything that can go wrong while configuring or running a planner.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    /// A configuration value is out of range; `field` is its dotted path (`cem.elites`).
    #[error("{field}: {message}")]
    InvalidConfig {
        /// Dotted path of the offending field, e.g. `cem.elites`.
        field: String,
        /// What is wrong, with the offending value, e.g. `40 must be <= samples (30)`.
        message: String,
    },
    /// A tensor or plan does not have the shape the planner expects.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Every candidate of one iteration had a NaN or infinite energy, so nothing can be ranked.
    #[error(
        "all {candidates} candidates of iteration {iteration} had non-finite energies \
         (NaN or Inf): the world model or the energy produced no usable value"
    )]
    AllNonFinite {
        /// Number of candidates evaluated in that iteration.
        candidates: usize,
        /// Zero-based iteration index.
        iteration: u32,
    },
    /// The world model failed (shape, device, unsupported gradients, ...).
    #[error("world model: {0}")]
    Model(zplan_models::ModelError),
    /// A libtorch operation failed.
    #[error("tensor operation: {0}")]
    Tensor(tch::TchError),
    /// The controller thread failed or could not be reached.
    #[error("controller: {0}")]
    Controller(String),
}

// The wrapped errors are written into the message, so they are not also returned by
// `source()`: an error chain (`{:#}`, anyhow's "Caused by") prints each cause once.
impl From<zplan_models::ModelError> for PlannerError {
    fn from(e: zplan_models::ModelError) -> Self {
        PlannerError::Model(e)
    }
}

impl From<tch::TchError> for PlannerError {
    fn from(e: tch::TchError) -> Self {
        PlannerError::Tensor(e)
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, PlannerError>;

/// Parses a RON config string the way users hand them over (`--planner`, `--energy`, `--mpc`):
/// refuses texts above [`zplan_io::MAX_CONFIG_BYTES`] or nested deeper than
/// [`zplan_io::MAX_NESTING`] before the parser sees them, then parses with the `implicit_some`
/// extension (as suite files are). Errors are [`PlannerError::InvalidConfig`] on `field`.
pub(crate) fn parse_ron<T: serde::de::DeserializeOwned>(text: &str, field: &str) -> Result<T> {
    let invalid = |message: String| PlannerError::InvalidConfig {
        field: field.into(),
        message,
    };
    if text.len() as u64 > zplan_io::MAX_CONFIG_BYTES {
        return Err(invalid(format!(
            "{} bytes of RON, more than the {}-byte limit",
            text.len(),
            zplan_io::MAX_CONFIG_BYTES
        )));
    }
    zplan_io::check_nesting("RON", text, zplan_io::MAX_NESTING)
        .map_err(|e| invalid(e.to_string()))?;
    ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .from_str(text)
        .map_err(|e| invalid(e.to_string()))
}

/// Range checks for `validate()` methods. Every comparison is written so that NaN fails it
/// (`!(x >= lo)` rather than `x < lo`).
pub(crate) struct Check<'a> {
    prefix: &'a str,
}

impl<'a> Check<'a> {
    pub(crate) fn new(prefix: &'a str) -> Self {
        Self { prefix }
    }

    pub(crate) fn fail<T>(&self, field: &str, message: impl Into<String>) -> Result<T> {
        Err(PlannerError::InvalidConfig {
            field: format!("{}.{}", self.prefix, field),
            message: message.into(),
        })
    }

    /// `value >= 1`.
    pub(crate) fn at_least_one(&self, field: &str, value: usize) -> Result<()> {
        if value == 0 {
            return self.fail(field, "0 must be >= 1");
        }
        Ok(())
    }

    /// `value <= other` where `other` is another field.
    pub(crate) fn at_most_field(
        &self,
        field: &str,
        value: usize,
        other: &str,
        other_value: usize,
    ) -> Result<()> {
        if value > other_value {
            return self.fail(field, format!("{value} must be <= {other} ({other_value})"));
        }
        Ok(())
    }

    /// Finite and `> 0`.
    pub(crate) fn positive(&self, field: &str, value: f32) -> Result<()> {
        if !(value > 0.0 && value.is_finite()) {
            return self.fail(field, format!("{value} must be finite and > 0"));
        }
        Ok(())
    }

    /// Finite and `>= 0`.
    pub(crate) fn non_negative(&self, field: &str, value: f32) -> Result<()> {
        if !(value >= 0.0 && value.is_finite()) {
            return self.fail(field, format!("{value} must be finite and >= 0"));
        }
        Ok(())
    }

    /// `lo <= value < hi`.
    pub(crate) fn in_half_open(&self, field: &str, value: f32, lo: f32, hi: f32) -> Result<()> {
        if !(value >= lo && value < hi) {
            return self.fail(field, format!("{value} must be in [{lo}, {hi})"));
        }
        Ok(())
    }

    /// `lo <= value <= hi`.
    pub(crate) fn in_closed(&self, field: &str, value: f32, lo: f32, hi: f32) -> Result<()> {
        if !(value >= lo && value <= hi) {
            return self.fail(field, format!("{value} must be in [{lo}, {hi}]"));
        }
        Ok(())
    }

    /// `value <= other_value` for two float fields (both already checked finite).
    pub(crate) fn at_most_field_f32(
        &self,
        field: &str,
        value: f32,
        other: &str,
        other_value: f32,
    ) -> Result<()> {
        if !(value <= other_value) {
            return self.fail(field, format!("{value} must be <= {other} ({other_value})"));
        }
        Ok(())
    }
}
