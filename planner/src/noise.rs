//! Power-law ("colored") Gaussian noise along the horizon for iCEM.
//!
//! A real signal of length `n` is a sum of cosines and sines at the DFT frequencies
//! `f_k = k / n`. Giving each of them an independent standard-normal coefficient scaled by
//! `f_k^(-β/2)` yields a power spectrum `∝ 1 / f^β`: β = 0 is white noise, β = 1 pink, β = 2
//! brown (smooth, low-frequency, the kind that moves a body somewhere instead of jittering it).
//! That is a fixed linear map `x = C w` from `n` white samples `w`, so we build `C` once per
//! `(n, β)` (no FFT needed) and apply it per sequence. Every `x_t` has exactly unit variance.

use crate::error::{Check, Result};
use crate::normal::NormalStream;

/// Linear map from `n` white Gaussian samples to `n` samples of unit-variance `1/f^β` noise.
#[derive(Debug, Clone, PartialEq)]
pub struct ColoredNoise {
    n: usize,
    beta: f32,
    /// `n × n`, row-major: `x[t] = Σ_c matrix[t·n + c] · w[c]`.
    matrix: Vec<f32>,
}

impl ColoredNoise {
    /// The map for sequences of length `n >= 1` and exponent `beta` (finite, `>= 0`).
    ///
    /// # Errors
    /// [`crate::PlannerError::InvalidConfig`] for `n == 0`, a negative or non-finite `beta`, or an
    /// `n × n` matrix that does not fit in memory.
    pub fn new(n: usize, beta: f32) -> Result<Self> {
        let c = Check::new("noise");
        c.at_least_one("n", n)?;
        c.non_negative("beta", beta)?;
        let cells = n.checked_mul(n);
        let mut matrix: Vec<f32> = Vec::new();
        if cells.is_none_or(|cells| matrix.try_reserve_exact(cells).is_err()) {
            return c.fail(
                "n",
                format!("{n}: the {n} × {n} noise matrix does not fit in memory"),
            );
        }
        let nf = n as f64;
        let scale = |k: usize| ((k.max(1)) as f64 / nf).powf(-f64::from(beta) / 2.0);
        // Columns: DC, then (cos, sin) per interior frequency, then Nyquist for even n.
        let mut cols: Vec<Box<dyn Fn(usize) -> f64>> = Vec::with_capacity(n);
        let mut var = 0.0;
        let s0 = scale(0);
        cols.push(Box::new(move |_| s0));
        var += s0 * s0;
        let mut k = 1;
        while 2 * k < n {
            let s = scale(k);
            let w = 2.0 * std::f64::consts::PI * k as f64 / nf;
            cols.push(Box::new(move |t| s * (w * t as f64).cos()));
            cols.push(Box::new(move |t| s * (w * t as f64).sin()));
            var += s * s;
            k += 1;
        }
        if n % 2 == 0 && n >= 2 {
            let s = scale(n / 2);
            cols.push(Box::new(move |t| if t % 2 == 0 { s } else { -s }));
            var += s * s;
        }
        debug_assert_eq!(cols.len(), n);
        let norm = var.sqrt();
        for t in 0..n {
            matrix.extend(cols.iter().map(|col| (col(t) / norm) as f32));
        }
        Ok(Self { n, beta, matrix })
    }

    /// Sequence length.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false (`n >= 1`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Exponent β.
    pub fn beta(&self) -> f32 {
        self.beta
    }

    /// Draws one sequence into `out` (`len()` entries), using `white` as scratch.
    pub fn sample(&self, rng: &mut NormalStream, white: &mut Vec<f32>, out: &mut [f32]) {
        white.clear();
        white.resize(self.n, 0.0);
        rng.fill(white);
        self.color(white, out);
    }

    /// Colors one sequence of white standard normals `white` (`len()` of them, from any
    /// source) into `out` (`len()` entries).
    pub fn color(&self, white: &[f32], out: &mut [f32]) {
        for (t, x) in out.iter_mut().enumerate().take(self.n) {
            let row = &self.matrix[t * self.n..(t + 1) * self.n];
            *x = row.iter().zip(white.iter()).map(|(a, b)| a * b).sum();
        }
    }
}

impl ColoredNoise {
    /// Draws `count` sequences into `out` (`count × len()` values, sequence after sequence):
    /// bit for bit what `count` calls of [`ColoredNoise::sample`] write, drawing the same
    /// white samples in the same order, but with the `n × n` map applied to all sequences at
    /// once (a loop over sequences innermost, which the compiler vectorises; each sequence's
    /// sums keep the order of `sample`). `white` is scratch.
    pub fn sample_many(
        &self,
        rng: &mut NormalStream,
        count: usize,
        white: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) {
        let n = self.n;
        // The white samples in stream order (sequence after sequence) land in `out` first,
        // then transposed into `white`: `white[c·count + s]` is sample `c` of sequence `s`.
        out.clear();
        out.resize(n * count, 0.0);
        rng.fill(out);
        white.clear();
        white.resize(n * count, 0.0);
        for (s, seq) in out.chunks_exact(n).enumerate() {
            for (c, &x) in seq.iter().enumerate() {
                white[c * count + s] = x;
            }
        }
        // Colored, transposed the same way, accumulated in the order of `sample`'s sums
        // (which start from -0.0), overwriting `out`.
        let mut acc = vec![-0.0f32; count];
        for t in 0..n {
            acc.fill(-0.0);
            for (c, &m) in self.matrix[t * n..(t + 1) * n].iter().enumerate() {
                for (a, w) in acc.iter_mut().zip(&white[c * count..(c + 1) * count]) {
                    *a += m * w;
                }
            }
            for (s, a) in acc.iter().enumerate() {
                out[s * n + t] = *a;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(n: usize, beta: f32) -> (Vec<f32>, f32) {
        let noise = ColoredNoise::new(n, beta).unwrap();
        let mut rng = NormalStream::new(1);
        let (mut white, mut x) = (Vec::new(), vec![0.0; n]);
        let reps = 20_000;
        let mut var = vec![0.0f32; n];
        let mut lag1 = 0.0f32;
        for _ in 0..reps {
            noise.sample(&mut rng, &mut white, &mut x);
            for t in 0..n {
                var[t] += x[t] * x[t] / reps as f32;
            }
            lag1 += x.windows(2).map(|w| w[0] * w[1]).sum::<f32>() / ((n - 1) * reps) as f32;
        }
        (var, lag1)
    }

    proptest::proptest! {
        /// `sample_many` is `sample` repeated, bit for bit (so iCEM's seeded plans do not
        /// depend on which one it calls).
        #[test]
        fn sample_many_is_sample_repeated(
            n in 1usize..20,
            count in 0usize..12,
            beta in 0.0f32..3.0,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let noise = ColoredNoise::new(n, beta).unwrap();
            let mut rng = NormalStream::new(seed);
            let (mut white, mut many) = (Vec::new(), Vec::new());
            noise.sample_many(&mut rng, count, &mut white, &mut many);
            let mut rng = NormalStream::new(seed);
            let mut one = vec![0.0; n];
            for s in 0..count {
                noise.sample(&mut rng, &mut white, &mut one);
                for t in 0..n {
                    proptest::prop_assert_eq!(many[s * n + t].to_bits(), one[t].to_bits());
                }
            }
            proptest::prop_assert_eq!(many.len(), count * n);
        }
    }

    #[test]
    fn invalid_sizes_are_errors_not_panics() {
        for (n, beta) in [(0, 1.0), (4, -1.0), (4, f32::NAN), (4, f32::INFINITY)] {
            let err = ColoredNoise::new(n, beta).unwrap_err();
            assert!(err.to_string().starts_with("noise."), "{err}");
        }
        let err = ColoredNoise::new(usize::MAX / 2, 1.0).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn unit_variance_and_color() {
        for n in [1usize, 2, 5, 16, 31] {
            let (var, _) = stats(n, 2.0);
            assert!(var.iter().all(|v| (v - 1.0).abs() < 0.05), "n={n}: {var:?}");
        }
        let (_, white) = stats(16, 0.0);
        let (_, pink) = stats(16, 1.0);
        let (_, brown) = stats(16, 2.0);
        assert!(white.abs() < 0.03, "white lag-1 correlation {white}");
        assert!(pink > 0.3 && brown > pink, "pink {pink}, brown {brown}");
    }
}
