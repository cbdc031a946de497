//! Small, exact statistics used by reports: Wilson intervals and percentiles.

/// 95 % Wilson score interval `(low, high)` for `successes` out of `n` trials.
///
/// Unlike the normal approximation it stays inside `[0, 1]` and behaves at 0 % and 100 %.
/// With `n == 0` the interval is the whole `[0, 1]`.
///
/// ```
/// let (lo, hi) = zplan::stats::wilson_interval(19, 20);
/// assert!(lo > 0.763 && lo < 0.765 && hi > 0.990 && hi < 0.992);
/// ```
pub fn wilson_interval(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let n_f = n as f64;
    let p = successes as f64 / n_f;
    let denom = 1.0 + z * z / n_f;
    let centre = (p + z * z / (2.0 * n_f)) / denom;
    let half = z * ((p * (1.0 - p) / n_f) + z * z / (4.0 * n_f * n_f)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The one percentile definition (linear interpolation between closest ranks), shared with
/// the controller's latency percentiles: see [`zplan_planner::stats::percentile`].
pub use zplan_planner::stats::percentile;

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    #[test]
    fn wilson_known_values() {
        // Reference values from the closed form (e.g. statsmodels proportion_confint, wilson).
        let (lo, hi) = wilson_interval(8, 10);
        assert_relative_eq!(lo, 0.490_162, epsilon = 1e-5);
        assert_relative_eq!(hi, 0.943_318, epsilon = 1e-5);
        let (lo, hi) = wilson_interval(0, 10);
        assert_relative_eq!(lo, 0.0);
        assert_relative_eq!(hi, 0.277_533, epsilon = 1e-5);
    }

    #[test]
    fn percentile_edges() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[f64::NAN], 50.0), None);
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 100.0), Some(3.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.0), Some(1.0));
    }

    proptest! {
        #[test]
        fn wilson_contains_point_estimate(n in 1usize..500, k in 0usize..500) {
            let k = k % (n + 1);
            let (lo, hi) = wilson_interval(k, n);
            let p = k as f64 / n as f64;
            prop_assert!(lo <= p + 1e-12 && p <= hi + 1e-12);
            prop_assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
        }

        #[test]
        fn percentile_is_monotone(v in proptest::collection::vec(-1e6f64..1e6, 1..50), a in 0.0f64..100.0, b in 0.0f64..100.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(percentile(&v, lo).unwrap() <= percentile(&v, hi).unwrap());
        }
    }
}
