//! The arithmetic a world model computes in: float32, or bfloat16 weights and latents.

use crate::{ModelError, Result};
use std::fmt;
use std::str::FromStr;
use tch::Kind;

/// The floating-point format of a model's weights and of the latents it computes with.
///
/// With [`Precision::Bf16`] the weights are cast to bfloat16 once, at load, and `encode` /
/// `rollout` compute in bfloat16 (8 bits of mantissa: about 3 significant digits, float32's
/// exponent range), but every tensor that crosses the [`crate::WorldModel`] boundary stays
/// float32: `encode` takes the float observation and returns float32 latents, `rollout` takes
/// float32 latents and actions and returns float32 predictions. Energies, planner statistics
/// and the host reads of rollouts therefore never see bfloat16; only the model's own
/// arithmetic (and the rounding of latents between predictor steps) does. It halves the
/// weights' memory traffic, which pays on GPUs and on CPUs with bf16 units (AVX512-BF16, AMX;
/// see [`crate::device::CpuBf16`]); elsewhere libtorch emulates it, slower than float32.
///
/// Written `Fp32` / `Bf16` in suite files (RON, like other enums there), and `fp32` / `bf16` on
/// the command line ([`Precision::from_str`], [`fmt::Display`]). The simulator-backed model
/// has no weights and only computes in float32 ([`crate::ModelSpec::check_precision`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Precision {
    /// float32 everywhere (the default).
    #[default]
    Fp32,
    /// bfloat16 weights and latents inside the model; float32 at its boundary.
    Bf16,
}

impl Precision {
    /// Every precision, in the order the command line lists them.
    pub const ALL: [Precision; 2] = [Precision::Fp32, Precision::Bf16];

    /// The libtorch element type the model computes in.
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    /// The command-line name: `fp32` or `bf16`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Relative agreement to expect between this precision's latents and float32's on a
    /// well-scaled model (used for the TorchScript `rollout`-versus-`predict` check):
    /// 1e-4 for float32 (last-bit differences of fused kernels), 3e-2 for bfloat16 (a few
    /// units in its 8-bit mantissa, accumulated over a rollout).
    pub fn tolerance(self) -> f64 {
        match self {
            Precision::Fp32 => 1e-4,
            Precision::Bf16 => 3e-2,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precision {
    type Err = ModelError;

    /// Parses `fp32` or `bf16` (ASCII case ignored).
    ///
    /// # Errors
    /// [`ModelError::Precision`] naming the value and the accepted ones.
    fn from_str(s: &str) -> Result<Self> {
        Precision::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                ModelError::Precision(format!("unknown precision `{s}`: expected fp32 or bf16"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_serialises() {
        assert_eq!("fp32".parse::<Precision>().unwrap(), Precision::Fp32);
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        for bad in ["", "fp16", "bfloat16", "f32", "bf 16"] {
            let err = bad.parse::<Precision>().unwrap_err().to_string();
            assert!(err.contains("expected fp32 or bf16"), "{bad}: {err}");
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
        for p in Precision::ALL {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert_eq!(Precision::default(), Precision::Fp32);
        assert_eq!(Precision::Bf16.kind(), Kind::BFloat16);
        // Suite files spell it as the other enums there: `precision: Bf16`.
        assert_eq!(ron::from_str::<Precision>("Bf16").unwrap(), Precision::Bf16);
        assert!(ron::from_str::<Precision>("bf16").is_err());
        assert_eq!(serde_json::to_string(&Precision::Fp32).unwrap(), "\"Fp32\"");
    }
}
