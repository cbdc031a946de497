//! Which device a model computes on.

use crate::{ModelError, Result};
use std::fmt;
use std::str::FromStr;
use tch::Device;

/// A device request from a config file or the command line.
///
/// Written as a string everywhere (`"auto"`, `"cpu"`, `"cuda"`, `"cuda:1"`), in RON, JSON and on
/// the command line. [`DeviceChoice::Auto`], the default, picks the first CUDA device when
/// libtorch sees one and the CPU otherwise: nothing in zplan hard-codes CUDA, so CPU-only
/// machines run the same files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 when available, otherwise the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA device with this index; an error when it does not exist.
    Cuda(usize),
}

impl DeviceChoice {
    /// Resolves the request against the devices libtorch sees.
    ///
    /// # Errors
    /// [`ModelError::Device`] when a CUDA device is requested that is not available.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(index) => {
                let count = if tch::Cuda::is_available() {
                    tch::Cuda::device_count()
                } else {
                    0
                };
                if (index as i64) < count {
                    Ok(Device::Cuda(index))
                } else {
                    Err(ModelError::Device(format!(
                        "cuda:{index} requested but libtorch sees {count} CUDA device(s); use `auto` or `cpu`"
                    )))
                }
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = ModelError;

    /// Parses `auto`, `cpu`, `cuda` (= `cuda:0`) or `cuda:N`, case-insensitively.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| {
                    ModelError::Device(format!(
                        "cannot parse `{s}`: expected auto, cpu, cuda or cuda:N"
                    ))
                }),
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        d.to_string()
    }
}

impl serde::Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Human-readable device name: `cpu`, `cuda:0`, ...
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, want) in [
            ("auto", DeviceChoice::Auto),
            ("CPU", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), want);
        }
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
        for bad in ["", "cuda:", "cuda:x", "tpu", "cuda:-1"] {
            assert!(
                matches!(bad.parse::<DeviceChoice>(), Err(ModelError::Device(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn serde_is_a_string() {
        let json = serde_json::to_string(&DeviceChoice::Cuda(1)).unwrap();
        assert_eq!(json, "\"cuda:1\"");
        let back: DeviceChoice = serde_json::from_str(&json).unwrap();
        assert_eq!(back, DeviceChoice::Cuda(1));
        assert!(serde_json::from_str::<DeviceChoice>("\"nope\"").is_err());
    }

    #[test]
    fn resolve_never_hard_codes_cuda() {
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
        let auto = DeviceChoice::Auto.resolve().unwrap();
        assert_eq!(auto == Device::Cpu, !tch::Cuda::is_available());
        assert!(DeviceChoice::Cuda(1000).resolve().is_err());
    }
}
