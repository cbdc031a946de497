//! The crate's error type.

use std::path::PathBuf;

/// Errors of the simulation crate.
///
/// Configuration errors carry enough context to be printed as-is to a user: the file (or the
/// `origin` given to [`crate::ScenarioConfig::from_ron_str`]), the 1-based line and column, and
/// the dotted path of the offending field, e.g.
/// ``scenarios/x.ron:3:5: field `door_width`: must be > 0 and < the wall length (2), got -1``.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A scenario file could not be read.
    #[error("{}: cannot read: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, so not also a `source()`).
        cause: std::io::Error,
    },
    /// A scenario file was refused before parsing: not a regular file, too large, not UTF-8,
    /// or nested too deep.
    #[error(transparent)]
    Input(#[from] zplan_io::InputError),
    /// The RON text is malformed: bad syntax, an unknown field or variant, a wrong type.
    #[error("{origin}:{line}:{col}: {}{message}", field_prefix(field))]
    Parse {
        /// File name (or caller-provided origin) of the text.
        origin: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        col: usize,
        /// Dotted path of the field being parsed when the problem was found, when known.
        field: Option<String>,
        /// What went wrong.
        message: String,
    },
    /// The RON text parsed, but a value is out of range or inconsistent with another one.
    #[error("{origin}:{line}:{col}: field `{field}`: {message}")]
    Invalid {
        /// File name (or caller-provided origin) of the text.
        origin: String,
        /// 1-based line of the field (of the enclosing struct when the field was left to its
        /// default).
        line: usize,
        /// 1-based column, as `line`.
        col: usize,
        /// Dotted path of the field, e.g. `start.x` or `walls[1].to`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A configuration built in code failed validation (no file position to report).
    #[error("field `{field}`: {message}")]
    InvalidConfig {
        /// Dotted path of the field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// An action or state slice has the wrong length.
    #[error("{what} has {got} entries, expected {expected}")]
    Dimension {
        /// `"action"` or `"state"`.
        what: &'static str,
        /// Length the scenario's spec requires.
        expected: usize,
        /// Length that was passed.
        got: usize,
    },
    /// An action entry is NaN or infinite; the step was not taken.
    #[error("action entry {index} is not finite ({value}); the state is unchanged")]
    NonFiniteAction {
        /// Index of the first bad entry.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// [`crate::Env::set_state`] got a state the scenario cannot represent.
    #[error("state entry {index} (`{name}`): {message}")]
    InvalidState {
        /// Index in the observation vector.
        index: usize,
        /// Its name in [`crate::EnvSpec::state_names`].
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// A snapshot was restored into an environment of another kind or configuration.
    #[error("snapshot mismatch: {0}")]
    SnapshotMismatch(String),
    /// `reset` could not sample a valid start and goal (the configuration leaves almost no room).
    #[error("reset(seed = {seed}): {message}")]
    Reset {
        /// The seed.
        seed: u64,
        /// What could not be sampled.
        message: String,
    },
    /// An image could not be written.
    #[error("{}: cannot write PNG: {message}", path.display())]
    Png {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn field_prefix(field: &Option<String>) -> String {
    match field {
        Some(f) => format!("field `{f}`: "),
        None => String::new(),
    }
}

impl SimError {
    /// A validation error for `field` (used by the `validate` methods).
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SimError::InvalidConfig {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, SimError>;
