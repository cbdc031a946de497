//! Range checks for configuration values.
//!
//! Every check is written as `if !(condition) { error }` so that NaN, which fails every
//! comparison, is rejected instead of slipping through.

use crate::{Result, SimError};

/// `value` must be finite and `> 0`.
pub(crate) fn positive(field: &str, value: f32) -> Result<()> {
    if !(value > 0.0 && value.is_finite()) {
        return Err(SimError::invalid(
            field,
            format!("must be a finite number > 0, got {value}"),
        ));
    }
    Ok(())
}

/// `value` must be finite and `>= 0`.
pub(crate) fn non_negative(field: &str, value: f32) -> Result<()> {
    if !(value >= 0.0 && value.is_finite()) {
        return Err(SimError::invalid(
            field,
            format!("must be a finite number >= 0, got {value}"),
        ));
    }
    Ok(())
}

/// `lo <= value <= hi`.
pub(crate) fn within(field: &str, value: f32, lo: f32, hi: f32) -> Result<()> {
    if !(value >= lo && value <= hi) {
        return Err(SimError::invalid(
            field,
            format!("must be in [{lo}, {hi}], got {value}"),
        ));
    }
    Ok(())
}

/// An interval `(lo, hi)` with finite `lo <= hi` inside `[min, max]`.
pub(crate) fn interval(field: &str, (lo, hi): (f32, f32), min: f32, max: f32) -> Result<()> {
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(SimError::invalid(
            field,
            format!(
                "must be an interval (lo, hi) of finite numbers with lo <= hi, got ({lo}, {hi})"
            ),
        ));
    }
    if !(lo >= min && hi <= max) {
        return Err(SimError::invalid(
            field,
            format!("must lie within [{min}, {max}], got ({lo}, {hi})"),
        ));
    }
    Ok(())
}

/// A count `>= min` and `<= max`.
pub(crate) fn count(field: &str, value: u32, min: u32, max: u32) -> Result<()> {
    if !(min..=max).contains(&value) {
        return Err(SimError::invalid(
            field,
            format!("must be in {min}..={max}, got {value}"),
        ));
    }
    Ok(())
}

/// Checks the clock fields shared by every scenario: `control_dt > 0`, `substeps >= 1`,
/// `max_steps >= 1`, and a physics step that is not absurdly small or large.
pub(crate) fn clocks(control_dt: f32, substeps: u32, max_steps: u32) -> Result<()> {
    positive("control_dt", control_dt)?;
    within("control_dt", control_dt, 1e-3, 10.0)?;
    count("substeps", substeps, 1, 1000)?;
    count("max_steps", max_steps, 1, 1_000_000)?;
    let physics_dt = control_dt / substeps as f32;
    if !(physics_dt >= 1e-4) {
        return Err(SimError::invalid(
            "substeps",
            format!(
                "control_dt / substeps = {physics_dt} s is below the 1e-4 s minimum physics step"
            ),
        ));
    }
    if !(physics_dt <= 0.1) {
        return Err(SimError::invalid(
            "substeps",
            format!(
                "control_dt / substeps = {physics_dt} s exceeds the 0.1 s maximum physics step"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_fails_every_check() {
        assert!(positive("f", f32::NAN).is_err());
        assert!(non_negative("f", f32::NAN).is_err());
        assert!(within("f", f32::NAN, 0.0, 1.0).is_err());
        assert!(interval("f", (f32::NAN, 1.0), 0.0, 1.0).is_err());
        assert!(interval("f", (0.0, f32::NAN), 0.0, 1.0).is_err());
        assert!(clocks(f32::NAN, 1, 1).is_err());
    }

    #[test]
    fn infinities_and_bad_ranges_fail() {
        assert!(positive("f", f32::INFINITY).is_err());
        assert!(positive("f", 0.0).is_err());
        assert!(non_negative("f", -1e-9).is_err());
        assert!(interval("f", (1.0, 0.0), 0.0, 1.0).is_err());
        assert!(interval("f", (-0.5, 0.5), 0.0, 1.0).is_err());
        assert!(count("n", 0, 1, 3).is_err());
        assert!(clocks(0.1, 0, 10).is_err());
        assert!(clocks(0.1, 1, 10).is_ok());
        assert!(clocks(1.0, 1, 10).is_err());
    }
}
