//! The one percentile definition of zplan: reports, benchmarks and the controller all use it,
//! so a p99 means the same number everywhere.

use std::time::Duration;

/// Percentile `q` in `[0, 100]` of `values` by linear interpolation between closest ranks
/// (numpy's default, "linear"). Non-finite values are ignored; `None` when nothing finite
/// remains.
///
/// ```
/// use zplan_planner::stats::percentile;
/// assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.5));
/// assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 100.0), Some(4.0));
/// ```
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let q = if q.is_nan() {
        50.0
    } else {
        q.clamp(0.0, 100.0)
    };
    let rank = (q / 100.0) * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (rank.ceil() as usize).min(v.len() - 1);
    let (a, b) = (v[lo.min(hi)], v[hi]);
    Some(a + (b - a) * (rank - lo as f64))
}

/// [`percentile`] of durations (the same definition, in seconds); `None` when empty.
///
/// ```
/// use std::time::Duration;
/// use zplan_planner::stats::duration_percentile;
/// let d = [1, 2, 3, 4].map(Duration::from_millis);
/// assert_eq!(duration_percentile(&d, 50.0), Some(Duration::from_micros(2500)));
/// ```
pub fn duration_percentile(durations: &[Duration], q: f64) -> Option<Duration> {
    let secs: Vec<f64> = durations.iter().map(Duration::as_secs_f64).collect();
    percentile(&secs, q).map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edges() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[f64::NAN], 50.0), None);
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 100.0), Some(3.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.0), Some(1.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], f64::NAN), Some(2.0));
        assert_eq!(duration_percentile(&[], 50.0), None);
    }

    proptest! {
        #[test]
        fn monotone_and_within_range(v in proptest::collection::vec(-1e6f64..1e6, 1..50), a in 0.0f64..100.0, b in 0.0f64..100.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let (pl, ph) = (percentile(&v, lo).unwrap(), percentile(&v, hi).unwrap());
            prop_assert!(pl <= ph);
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(min <= pl && ph <= max);
        }
    }
}
