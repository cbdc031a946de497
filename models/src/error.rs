//! The crate's error type.
//!
//! Every failure that user input can cause (a model file, a shape, a sidecar, a device string)
//! comes back as a [`ModelError`] naming the file or model, the method and, for shapes, what was
//! expected and what was found. libtorch errors ([`tch::TchError`]) are caught at every call and
//! wrapped with the operation that failed.

use std::path::PathBuf;

/// Errors of the models crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model cannot differentiate its rollouts.
    #[error("model `{0}` does not support gradient rollouts")]
    GradUnsupported(String),

    /// A model file (or its sidecar) does not exist.
    #[error("model file `{}` not found", path.display())]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },

    /// A model file was refused before reading: not a regular file (a folder, a FIFO, a link
    /// loop), too large, not UTF-8, or nested too deep.
    #[error(transparent)]
    Input(#[from] zplan_io::InputError),

    /// Reading or writing a file failed.
    #[error("cannot {action} `{}`: {cause}", path.display())]
    Io {
        /// What was being done ("read", "write", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },

    /// The file exists but libtorch cannot load it as a TorchScript module.
    #[error(
        "`{}` is not a TorchScript module (save one with torch.jit.save(torch.jit.script(model), path)): {reason}",
        path.display()
    )]
    NotTorchScript {
        /// The file.
        path: PathBuf,
        /// libtorch's message, first line.
        reason: String,
    },

    /// A required method of the TorchScript contract is missing.
    #[error(
        "model `{model}` has no method `{method}` (the TorchScript contract needs `encode` and `predict`, \
         exported with @torch.jit.export)"
    )]
    MissingMethod {
        /// Model identity (usually its file).
        model: String,
        /// The missing method.
        method: &'static str,
    },

    /// A tensor had the wrong shape, going into or coming out of a model method.
    #[error("model `{model}`: {what} of `{method}` has shape {actual}, expected {expected}")]
    ShapeMismatch {
        /// Model identity (usually its file).
        model: String,
        /// The method (`encode`, `predict`, `rollout`, ...).
        method: &'static str,
        /// Which tensor: "input `obs`", "output", ...
        what: String,
        /// The expected shape, e.g. `[B=2, 16]`.
        expected: String,
        /// The shape found.
        actual: String,
    },

    /// A tensor had the wrong element type (the contract is float32; bfloat16 is accepted
    /// from a model loaded with precision bf16).
    #[error("model `{model}`: {what} of `{method}` is {actual}, expected {expected}")]
    WrongKind {
        /// Model identity.
        model: String,
        /// The method.
        method: &'static str,
        /// Which tensor.
        what: &'static str,
        /// The element type found.
        actual: String,
        /// The element types accepted.
        expected: &'static str,
    },

    /// A load-time probe did not finish in time (a method that never returns).
    #[error("model `{model}`: the load-time probe did not finish within {seconds} s (a method that never returns?); ZPLAN_PROBE_TIMEOUT_S sets the limit")]
    ProbeTimeout {
        /// Model identity.
        model: String,
        /// The limit.
        seconds: f64,
    },

    /// A load-time probe produced NaN or infinite values.
    #[error("model `{model}`: the probe output of `{method}` contains NaN or Inf")]
    NonFinite {
        /// Model identity.
        model: String,
        /// The method.
        method: &'static str,
    },

    /// A model and a scenario (or the requested sizes) disagree.
    #[error("model `{model}` does not fit {context}: {what} is {actual} in the model, {expected} expected")]
    Incompatible {
        /// Model identity.
        model: String,
        /// What it was checked against, e.g. "scenario `reach`".
        context: String,
        /// The quantity, e.g. "observation shape".
        what: String,
        /// What the scenario needs.
        expected: String,
        /// What the model has.
        actual: String,
    },

    /// An observation does not fit the spec it was batched against.
    #[error("observation {index}: {error}")]
    Observation {
        /// Position of the observation in the batch.
        index: usize,
        /// What does not fit (names the field, the expected and the actual shape).
        error: zplan_obs::ObsError,
    },

    /// A batch of observations lacks a field that the model reads.
    #[error("model `{model}` reads observation field `{field}`, which the batch lacks (it has {present})")]
    MissingField {
        /// Model identity.
        model: String,
        /// The field the model reads.
        field: String,
        /// The fields the batch has.
        present: String,
    },

    /// The simulator-backed model was given observations without the true state.
    #[error(
        "model `{0}` is the simulator-backed oracle: it encodes the true simulator state, which these observations do not carry          (only zplan's runner attaches it, see `Observation::with_true_state`)"
    )]
    NoTrueState(String),

    /// An invalid configuration value (sizes, thread counts, norms, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A JEPA sidecar file is missing, unreadable or inconsistent.
    #[error("bad JEPA sidecar `{}`: {reason}", path.display())]
    Sidecar {
        /// The sidecar file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A weights file is unreadable or does not match the architecture in its sidecar.
    #[error("bad weights file `{}`: {reason}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A precision could not be parsed, or the model cannot compute in it.
    #[error("{0}")]
    Precision(String),

    /// A device string could not be parsed or the device is not available.
    #[error("device: {0}")]
    Device(String),

    /// The simulator failed while serving the simulator-backed model.
    #[cfg(feature = "sim")]
    #[error("simulator ({context}): {cause}")]
    Sim {
        /// What was being done.
        context: String,
        /// The simulator's error (boxed: it is large, and errors travel in every `Result`).
        cause: Box<zplan_sim::SimError>,
    },

    /// A bug or a broken invariant inside zplan (e.g. a worker thread panicked).
    #[error("internal error: {0}")]
    Internal(String),

    /// libtorch reported an error. Display shows a one-line summary (for TorchScript, the
    /// Python-style exception line); the full message with its traceback is in `source`.
    #[error("{context}: {}", summarize(.source))]
    Torch {
        /// What was being done.
        context: String,
        /// libtorch's error.
        #[source]
        source: tch::TchError,
    },
}

/// `Ok` when `path` is a regular file (links followed); otherwise [`ModelError::NotFound`] when
/// nothing is there, or an error naming what it is (a directory, a FIFO, a link loop).
pub(crate) fn check_model_file(path: &std::path::Path) -> Result<()> {
    zplan_io::check_regular_file(path).map_err(|e| match e {
        zplan_io::InputError::NotFound { .. } => ModelError::NotFound {
            path: path.to_path_buf(),
        },
        e => ModelError::Input(e),
    })
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

impl From<tch::TchError> for ModelError {
    fn from(source: tch::TchError) -> Self {
        ModelError::Torch {
            context: "libtorch".into(),
            source,
        }
    }
}

/// Adds context to libtorch results: `t.f_matmul(&w).ctx("encoder layer 0")?`.
pub(crate) trait TchContext<T> {
    /// Wraps a [`tch::TchError`] into [`ModelError::Torch`] with `context`.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> TchContext<T> for std::result::Result<T, tch::TchError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| ModelError::Torch {
            context: context(),
            source,
        })
    }
}

/// A one-line summary of a libtorch error: the last Python-style exception line
/// (`RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x4 and 5x8)`) of a TorchScript
/// traceback, otherwise the first line without tch's "Internal torch error: " prefix.
pub(crate) fn summarize(err: &tch::TchError) -> String {
    let text = err.to_string();
    let is_exception_line = |l: &&str| {
        let head = l.split(": ").next().unwrap_or("");
        l.contains(": ")
            && (head.ends_with("Error") || head.ends_with("Exception"))
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    if let Some(line) = text.lines().rfind(is_exception_line) {
        return line.trim().to_string();
    }
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    line.strip_prefix("Internal torch error: ")
        .unwrap_or(line)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        let e = tch::TchError::Torch(
            "The following operation failed in the TorchScript interpreter.\nTraceback ...\n  File x\n\
             RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x4 and 5x8)\n"
                .into(),
        );
        assert_eq!(
            summarize(&e),
            "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x4 and 5x8)"
        );
        let e = tch::TchError::Torch(
            "PytorchStreamReader failed reading zip archive\nException raised from".into(),
        );
        assert!(summarize(&e).ends_with("PytorchStreamReader failed reading zip archive"));
    }
}
