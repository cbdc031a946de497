//! The files of a saved JEPA model: `<name>.safetensors` (weights) and `<name>.json` (sidecar).

use super::config::{JepaConfig, ObsNorm};
use crate::{ModelError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Value of [`JepaSidecar::format`].
pub const SIDECAR_FORMAT: &str = "zplan-jepa";
/// Current [`JepaSidecar::version`].
pub const SIDECAR_VERSION: u32 = 1;

/// Everything but the weights: the JSON file next to `<name>.safetensors`.
///
/// ```json
/// {
///   "format": "zplan-jepa",
///   "version": 1,
///   "config": { "obs_dim": 4, "action_dim": 2, "latent_dim": 64, ... },
///   "obs_norm": { "mean": [...], "std": [...] },
///   "scenario": { ...the serialised zplan_sim::ScenarioConfig... } or null,
///   "training": { ...free-form: data, steps, losses, commands... }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JepaSidecar {
    /// Always [`SIDECAR_FORMAT`]; guards against loading an unrelated JSON file.
    pub format: String,
    /// File format version, [`SIDECAR_VERSION`].
    pub version: u32,
    /// Architecture sizes.
    pub config: JepaConfig,
    /// Observation normalisation applied inside `encode`.
    pub obs_norm: ObsNorm,
    /// The scenario the model was trained for (a serialised `zplan_sim::ScenarioConfig`), kept
    /// as JSON so that a sidecar stays readable when the scenario format evolves.
    #[serde(default)]
    pub scenario: Option<serde_json::Value>,
    /// Free-form training information (data set, steps, final losses, command line, ...).
    #[serde(default)]
    pub training: serde_json::Value,
    /// SHA-256 of the weights file (lower-case hex), written by [`crate::JepaNets::save`];
    /// loading refuses a weights file whose checksum differs (a flipped bit, a file swapped
    /// from another model). Sidecars written before checksums existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

/// SHA-256 of a file's bytes, lower-case hex.
///
/// # Errors
/// [`ModelError::Io`] when the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|cause| ModelError::Io {
        action: "read",
        path: path.to_path_buf(),
        cause,
    })?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|cause| ModelError::Io {
            action: "read",
            path: path.to_path_buf(),
            cause,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Refuses `weights` when `expected` (the sidecar's checksum) is given and differs from the
/// file's SHA-256.
///
/// # Errors
/// [`ModelError::Weights`] naming both checksums.
pub fn verify_weights(weights: &Path, sidecar: &Path, expected: Option<&str>) -> Result<()> {
    let Some(expected) = expected else {
        tracing::debug!("{}: no weights checksum to verify", sidecar.display());
        return Ok(());
    };
    let actual = sha256_file(weights)?;
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(ModelError::Weights {
            path: weights.to_path_buf(),
            reason: format!(
                "checksum mismatch: the file's sha256 is {actual}, `{}` records {expected} (the weights were changed or corrupted after saving)",
                sidecar.display()
            ),
        });
    }
    Ok(())
}

/// The weights and sidecar paths for a model path given as `<name>`, `<name>.safetensors` or
/// `<name>.json`.
pub fn jepa_paths(path: &Path) -> (PathBuf, PathBuf) {
    let base = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") | Some("json") => path.with_extension(""),
        _ => path.to_path_buf(),
    };
    let mut weights = base.clone().into_os_string();
    weights.push(".safetensors");
    let mut sidecar = base.into_os_string();
    sidecar.push(".json");
    (PathBuf::from(weights), PathBuf::from(sidecar))
}

impl JepaSidecar {
    /// Reads and validates a sidecar file.
    ///
    /// # Errors
    /// [`ModelError::NotFound`], [`ModelError::Io`], or [`ModelError::Sidecar`] for bad JSON, a
    /// wrong format tag or version, or invalid sizes/normalisation.
    pub fn read(path: &Path) -> Result<Self> {
        crate::error::check_model_file(path)?;
        let text = zplan_io::read_text(path, "a JEPA sidecar", zplan_io::MAX_CONFIG_BYTES)?;
        Self::parse(&text, path)
    }

    /// Parses and validates sidecar JSON already read from `path` (with
    /// [`zplan_io::read_text`] or [`zplan_io::text_from_bytes`]): what [`JepaSidecar::read`]
    /// does after reading. `path` names the file in errors.
    ///
    /// # Errors
    /// [`ModelError::Sidecar`] for bad JSON, a wrong format tag or version, or invalid
    /// sizes/normalisation.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| ModelError::Sidecar {
            path: path.to_path_buf(),
            reason,
        };
        let sidecar: JepaSidecar = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if sidecar.format != SIDECAR_FORMAT {
            return Err(bad(format!(
                "format is `{}`, expected `{SIDECAR_FORMAT}`",
                sidecar.format
            )));
        }
        if sidecar.version != SIDECAR_VERSION {
            return Err(bad(format!(
                "version {} is not supported (this zplan reads version {SIDECAR_VERSION})",
                sidecar.version
            )));
        }
        sidecar.config.validate().map_err(|e| bad(e.to_string()))?;
        sidecar
            .obs_norm
            .validate(sidecar.config.obs_dim as usize)
            .map_err(|e| bad(e.to_string()))?;
        Ok(sidecar)
    }

    /// Writes the sidecar as pretty-printed JSON.
    ///
    /// # Errors
    /// [`ModelError::Io`] when the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ModelError::Sidecar {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|source| ModelError::Io {
            action: "write",
            path: path.to_path_buf(),
            cause: source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_any_of_the_three_forms() {
        for p in ["m/reach", "m/reach.safetensors", "m/reach.json"] {
            let (w, s) = jepa_paths(Path::new(p));
            assert_eq!(w, Path::new("m/reach.safetensors"));
            assert_eq!(s, Path::new("m/reach.json"));
        }
        let (w, _) = jepa_paths(Path::new("m/reach.v2"));
        assert_eq!(w, Path::new("m/reach.v2.safetensors"));
    }
}
