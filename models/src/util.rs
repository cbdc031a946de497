//! Small tensor helpers shared by the model implementations (shape checks, conversions).

use crate::error::TchContext;
use crate::{ModelError, Precision, Result};
use rand::{Rng, SeedableRng};
use tch::{Device, Kind, Tensor};

/// `[2, 16]`.
pub(crate) fn fmt_shape(shape: &[i64]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// `[B=2, H=3, 16]`-style description of an expected shape with its batch (and horizon) named.
pub(crate) fn fmt_expected(prefix: &[(&str, i64)], rest: &[i64]) -> String {
    let mut parts: Vec<String> = prefix.iter().map(|(n, v)| format!("{n}={v}")).collect();
    parts.extend(rest.iter().map(|d| d.to_string()));
    format!("[{}]", parts.join(", "))
}

/// Identity of a call site, used to build errors.
pub(crate) struct Site<'a> {
    pub model: &'a str,
    pub method: &'static str,
}

impl Site<'_> {
    pub(crate) fn shape_err(&self, what: &str, expected: String, actual: &[i64]) -> ModelError {
        ModelError::ShapeMismatch {
            model: self.model.to_string(),
            method: self.method,
            what: what.to_string(),
            expected,
            actual: fmt_shape(actual),
        }
    }

    /// Checks `t.size() == prefix ++ rest`.
    pub(crate) fn check_shape(
        &self,
        what: &str,
        t: &Tensor,
        prefix: &[(&str, i64)],
        rest: &[i64],
    ) -> Result<()> {
        let size = t.size();
        let ok = size.len() == prefix.len() + rest.len()
            && size
                .iter()
                .zip(prefix.iter().map(|p| &p.1).chain(rest))
                .all(|(a, b)| a == b);
        if ok {
            Ok(())
        } else {
            Err(self.shape_err(what, fmt_expected(prefix, rest), &size))
        }
    }

    /// Checks that an output is float32, or with [`Precision::Bf16`] bfloat16 or float32 (a
    /// module may return float32 from bfloat16 inputs).
    pub(crate) fn check_precision(
        &self,
        what: &'static str,
        t: &Tensor,
        precision: Precision,
    ) -> Result<()> {
        match (t.f_kind(), precision) {
            (Ok(Kind::Float), _) | (Ok(Kind::BFloat16), Precision::Bf16) => Ok(()),
            (Ok(kind), _) => Err(ModelError::WrongKind {
                model: self.model.to_string(),
                method: self.method,
                what,
                actual: format!("{kind:?}"),
                expected: match precision {
                    Precision::Fp32 => "float32",
                    Precision::Bf16 => "bfloat16 or float32 (precision bf16)",
                },
            }),
            (Err(e), _) => {
                Err(e).ctx(|| format!("{}: kind of {what} of `{}`", self.model, self.method))
            }
        }
    }

    /// Errors with [`ModelError::NonFinite`] unless every entry of `t` is finite.
    pub(crate) fn check_finite(&self, t: &Tensor) -> Result<()> {
        if all_finite(t)? {
            Ok(())
        } else {
            Err(ModelError::NonFinite {
                model: self.model.to_string(),
                method: self.method,
            })
        }
    }
}

/// Whether all entries are finite (true for empty tensors).
pub(crate) fn all_finite(t: &Tensor) -> Result<bool> {
    if t.numel() == 0 {
        return Ok(true);
    }
    let ok = t
        .f_isfinite()
        .and_then(|m| m.f_all())
        .and_then(|m| m.f_int64_value(&[]))
        .ctx(|| "checking for NaN/Inf".into())?;
    Ok(ok != 0)
}

/// Moves `t` to `device` as float32 (no copy when it already is).
pub(crate) fn to_float_on(t: &Tensor, device: Device) -> Result<Tensor> {
    t.f_to_device(device)
        .and_then(|t| t.f_to_kind(Kind::Float))
        .ctx(|| format!("moving a tensor to {device:?} as float32"))
}

/// `t` as `kind` (no copy when it already is; differentiable, so gradients flow back to a
/// float32 input through a bfloat16 computation).
pub(crate) fn to_kind(t: &Tensor, kind: Kind) -> Result<Tensor> {
    t.f_to_kind(kind)
        .ctx(|| format!("converting a {:?} tensor to {kind:?}", t.kind()))
}

/// Copies a tensor into a row-major `Vec<f32>` (on the CPU).
pub(crate) fn to_vec_f32(t: &Tensor) -> Result<Vec<f32>> {
    let flat = t
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Float))
        .and_then(|t| t.f_contiguous())
        .and_then(|t| t.f_reshape([-1]))
        .ctx(|| "copying a tensor to the host".into())?;
    let n = flat.numel();
    let mut out = vec![0f32; n];
    flat.f_copy_data(&mut out, n)
        .ctx(|| "copying a tensor to the host".into())?;
    Ok(out)
}

/// A float32 tensor of `shape` with entries drawn uniformly from `[lo, hi)` by a seeded ChaCha
/// generator: independent of libtorch's global RNG, so probes and initialisations reproduce.
pub(crate) fn seeded_uniform(
    shape: &[i64],
    lo: f32,
    hi: f32,
    seed: u64,
    device: Device,
) -> Result<Tensor> {
    let n: i64 = shape.iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data: Vec<f32> = (0..n.max(0)).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::f_from_slice(&data)
        .and_then(|t| t.f_reshape(shape))
        .and_then(|t| t.f_to_device(device))
        .ctx(|| format!("creating a tensor of shape {}", fmt_shape(shape)))
}

/// Checks a shape is non-empty with positive sizes.
pub(crate) fn validate_shape(what: &str, shape: &[i64]) -> Result<()> {
    if shape.is_empty() || shape.iter().any(|&d| d <= 0) {
        return Err(ModelError::InvalidConfig(format!(
            "{what} must be a non-empty list of positive sizes, got {}",
            fmt_shape(shape)
        )));
    }
    Ok(())
}
