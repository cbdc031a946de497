//! The planners' seeded source of standard normal numbers: a counter-based stream whose
//! loops the compiler vectorises.
//!
//! Every sampling planner draws `samples × horizon × action` normals per iteration (9 600 for
//! 300 × 16 × 2), and on cheap models drawing them was a large part of the planner's own
//! time: the ChaCha8 stream plus rand_distr's ziggurat took 3.5–8 ns per normal, one at a
//! time, with a data-dependent branch per draw. [`NormalStream`] instead computes normal number `i`
//! of a stream as a pure function of `(seed, i)`:
//!
//! 1. Pair `p = i / 2` hashes `key + (p + 1)·γ` (γ the 64-bit golden ratio, `key` from the
//!    seed) with SplitMix64's finaliser: 64 well-mixed bits, no state carried between
//!    pairs, so a block of pairs is independent work in SIMD lanes.
//! 2. Box–Muller on those bits: 24 bits give `u ∈ (0, 1]` and the radius `sqrt(-2 ln u)`;
//!    22 bits an angle `φ ∈ (-π/4, π/4)`, and 2 bits the quadrant it is turned by, so that
//!    `(r cos θ, r sin θ)` is uniform on the circle while `sin` and `cos` are only ever
//!    evaluated on `|φ| ≤ π/4`, where short polynomials are accurate to f32 precision.
//!    `ln` is a polynomial too (exponent from the bits, mantissa in `[√½, √2)`).
//!
//! Pair `p` gives normals `2p` (the cosine side) and `2p + 1` (the sine side), independent
//! standard normals. The radius is at most `sqrt(2·24·ln 2) ≈ 5.77`, so the tails beyond
//! 5.77 σ (probability 8·10⁻⁹) are cut: irrelevant to planners that clip candidates to their
//! bounds. A stream is a seed and a position: [`NormalStream::fill`] writes the next
//! `out.len()` normals and advances the position by as many, so filling in pieces writes
//! exactly what one fill writes. Blocks of 8 pairs are computed stage by stage over lane
//! arrays; on x86-64 CPUs with AVX2 (detected at run time) that loop is compiled for 8 f32
//! lanes, with the same bits as the baseline build.

use std::f32::consts::{FRAC_PI_2, LN_2, SQRT_2};

/// SplitMix64's increment, the 64-bit golden ratio.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Pairs computed side by side in [`NormalStream::fill`]'s inner loop (the SIMD width it
/// is written for: 8 f32 lanes of AVX2).
const LANES: usize = 8;

/// A seeded stream of standard normal `f32`s; normal `i` is a function of the seed and `i`
/// only (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalStream {
    key: u64,
    position: u64,
}

impl NormalStream {
    /// The stream of `seed`, at position 0.
    pub fn new(seed: u64) -> Self {
        NormalStream {
            key: mix64(seed ^ 0x005E_ED0F_2EA1_5A11),
            position: 0,
        }
    }

    /// How many normals have been drawn.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// One normal.
    pub fn next_normal(&mut self) -> f32 {
        let mut x = [0.0f32];
        self.fill(&mut x);
        x[0]
    }

    /// Writes the next `out.len()` normals of the stream into `out`.
    pub fn fill(&mut self, out: &mut [f32]) {
        let mut i = 0usize;
        let mut pos = self.position;
        // An odd position starts with the sine side of its pair.
        if pos & 1 == 1 && !out.is_empty() {
            out[0] = pair(self.key, pos >> 1).1;
            i = 1;
            pos += 1;
        }
        let mut pair_idx = pos >> 1;
        // Whole blocks of LANES pairs.
        let blocks = (out.len() - i) / (2 * LANES);
        let done = 2 * LANES * blocks;
        fill_blocks(self.key, pair_idx, &mut out[i..i + done]);
        i += done;
        pair_idx += (LANES * blocks) as u64;
        while out.len() - i >= 2 {
            let (a, b) = pair(self.key, pair_idx);
            out[i] = a;
            out[i + 1] = b;
            i += 2;
            pair_idx += 1;
        }
        if i < out.len() {
            out[i] = pair(self.key, pair_idx).0;
        }
        self.position += out.len() as u64;
    }
}

/// Writes pairs `first..` of the stream `key` into `out` (a multiple of `2·LANES` entries).
/// With AVX2 (detected at run time) the same code is compiled for 8 f32 lanes; the results are
/// bit for bit those of the baseline build (no fused multiply-adds in either).
fn fill_blocks(key: u64, first: u64, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { fill_blocks_avx2(key, first, out) };
        return;
    }
    fill_blocks_portable(key, first, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_blocks_avx2(key: u64, first: u64, out: &mut [f32]) {
    fill_blocks_portable(key, first, out);
}

/// [`fill_blocks`] stage by stage over lane arrays, each stage one loop the compiler turns
/// into SIMD: hashes, their bits as `i32` lanes, then f32 arithmetic only.
#[inline(always)]
fn fill_blocks_portable(key: u64, first: u64, out: &mut [f32]) {
    for (b, block) in out.chunks_exact_mut(2 * LANES).enumerate() {
        let base = first + (b * LANES) as u64;
        let mut ubits = [0i32; LANES];
        let mut wbits = [0i32; LANES];
        let mut quadrant = [0u32; LANES];
        for l in 0..LANES {
            let h = hash(key, base + l as u64);
            ubits[l] = (h >> 40) as i32;
            wbits[l] = (h & 0x3F_FFFF) as i32;
            quadrant[l] = ((h >> 38) & 3) as u32;
        }
        let mut c = [0.0f32; LANES];
        let mut s = [0.0f32; LANES];
        for l in 0..LANES {
            (c[l], s[l]) = box_muller(ubits[l], wbits[l], quadrant[l]);
        }
        for l in 0..LANES {
            block[2 * l] = c[l];
            block[2 * l + 1] = s[l];
        }
    }
}

/// SplitMix64's finaliser (a bijection of `u64` with full avalanche).
#[inline(always)]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 64 random bits of pair `p` of the stream `key`.
#[inline(always)]
fn hash(key: u64, p: u64) -> u64 {
    mix64(key.wrapping_add(p.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// The two normals of pair `p` of the stream `key`.
#[inline(always)]
fn pair(key: u64, p: u64) -> (f32, f32) {
    from_bits(hash(key, p))
}

/// Box–Muller on 64 random bits `h` (module documentation).
#[inline(always)]
fn from_bits(h: u64) -> (f32, f32) {
    box_muller(
        (h >> 40) as i32,
        (h & 0x3F_FFFF) as i32,
        ((h >> 38) & 3) as u32,
    )
}

/// Box–Muller from 24 bits `ubits` (the radius), 22 bits `wbits` (the angle within a quarter
/// turn) and the quarter turn `quadrant`. Integer to float conversions go through `i32`,
/// which SIMD units convert natively.
#[inline(always)]
fn box_muller(ubits: i32, wbits: i32, quadrant: u32) -> (f32, f32) {
    // u ∈ (0, 1]: 24 bits, never 0.
    let u = (ubits + 1) as f32 * (1.0 / 16_777_216.0);
    // φ ∈ (-π/4, π/4): 22 bits at cell centres.
    let w = (wbits as f32 + 0.5) * (1.0 / 4_194_304.0) - 0.5;
    let phi = w * FRAC_PI_2;
    let r = (-2.0 * ln_unit(u)).sqrt();
    let (c, s) = (cos_quarter(phi), sin_quarter(phi));
    // Turn (c, s) by `quadrant` quarter turns: (c, s), (-s, c), (-c, -s), (s, -c).
    let swap = quadrant & 1 == 1;
    let (a, b) = if swap { (s, c) } else { (c, s) };
    let neg_a = ((quadrant + 1) >> 1) & 1;
    let neg_b = quadrant >> 1;
    let a = f32::from_bits(a.to_bits() ^ (neg_a << 31));
    let b = f32::from_bits(b.to_bits() ^ (neg_b << 31));
    (r * a, r * b)
}

/// `ln x` for normal positive `x` (here `x ∈ (0, 1]`), to about 1 ulp of f32: `x = m·2^e`
/// with `m ∈ [√½, √2)`, `ln m = 2 atanh t` with `t = (m - 1)/(m + 1)`, `|t| ≤ 0.172`.
#[inline(always)]
fn ln_unit(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xFF) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000); // [1, 2)
    let big = m > SQRT_2;
    m = if big { m * 0.5 } else { m };
    e += big as i32;
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = 1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0))));
    e as f32 * LN_2 + 2.0 * t * series
}

/// `sin x` for `|x| ≤ π/4` (Taylor to x⁹; error below 4·10⁻⁹).
#[inline(always)]
fn sin_quarter(x: f32) -> f32 {
    let x2 = x * x;
    x * (1.0
        + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5_040.0 + x2 * (1.0 / 362_880.0)))))
}

/// `cos x` for `|x| ≤ π/4` (Taylor to x¹⁰; error below 3·10⁻¹⁰).
#[inline(always)]
fn cos_quarter(x: f32) -> f32 {
    let x2 = x * x;
    1.0 + x2
        * (-0.5
            + x2 * (1.0 / 24.0
                + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40_320.0 + x2 * (-1.0 / 3_628_800.0)))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use proptest::prelude::*;

    #[test]
    fn polynomials_match_the_library_functions() {
        for k in 0..=10_000 {
            let x = (k as f32 / 10_000.0 - 0.5) * FRAC_PI_2;
            assert_abs_diff_eq!(sin_quarter(x), x.sin(), epsilon = 2e-7);
            assert_abs_diff_eq!(cos_quarter(x), x.cos(), epsilon = 2e-7);
        }
        for k in 1..=100_000u32 {
            let x = k as f32 / 100_000.0;
            let want = (x as f64).ln();
            let got = ln_unit(x) as f64;
            assert!(
                (got - want).abs() <= 2e-7 * want.abs().max(1e-3),
                "ln {x}: {got} vs {want}"
            );
        }
        let tiny = 1.0 / 16_777_216.0f32;
        assert_abs_diff_eq!(ln_unit(tiny), tiny.ln(), epsilon = 2e-6);
    }

    #[test]
    fn moments_are_those_of_a_standard_normal() {
        let n = 1 << 20;
        let mut x = vec![0.0f32; n];
        NormalStream::new(7).fill(&mut x);
        let nf = n as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / nf;
        let m = |p: i32| x.iter().map(|&v| (v as f64 - mean).powi(p)).sum::<f64>() / nf;
        // Standard errors at 2^20 draws: mean 0.001, variance 0.0014, skew 0.0024,
        // kurtosis 0.0048; tolerances are 5 of them.
        assert_abs_diff_eq!(mean, 0.0, epsilon = 0.005);
        assert_abs_diff_eq!(m(2), 1.0, epsilon = 0.007);
        assert_abs_diff_eq!(m(3) / m(2).powf(1.5), 0.0, epsilon = 0.012);
        assert_abs_diff_eq!(m(4) / m(2).powi(2), 3.0, epsilon = 0.025);
        // Neighbours (the two sides of a pair, and consecutive pairs) are uncorrelated.
        for lag in [1usize, 2, 3, 16] {
            let c = x
                .iter()
                .zip(&x[lag..])
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
                / (nf - lag as f64);
            assert_abs_diff_eq!(c, 0.0, epsilon = 0.005);
        }
    }

    /// Kolmogorov–Smirnov distance to the normal CDF (std has no erf: the CDF is integrated
    /// numerically).
    #[test]
    fn the_distribution_is_normal_by_kolmogorov_smirnov() {
        let n = 200_000;
        let mut x = vec![0.0f32; n];
        NormalStream::new(2026).fill(&mut x);
        x.sort_by(f32::total_cmp);
        // Φ on a fine grid by Simpson's rule, from -8 (Φ(-8) ~ 6e-16).
        let cdf = |z: f64| -> f64 {
            let (a, steps) = (-8.0, 4000);
            let h = (z - a) / steps as f64;
            let f = |t: f64| (-0.5 * t * t).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let mut s = f(a) + f(z);
            for k in 1..steps {
                s += f(a + k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 };
            }
            s * h / 3.0
        };
        let mut d = 0.0f64;
        for (k, &v) in x.iter().enumerate().step_by(97) {
            let f = cdf(v as f64);
            d = d
                .max((f - k as f64 / n as f64).abs())
                .max((f - (k + 1) as f64 / n as f64).abs());
        }
        // The 1 % critical value is 1.63 / sqrt(n) = 0.0036.
        assert!(d < 0.0036, "KS distance {d}");
        assert!(x[0] > -5.8 && x[n - 1] < 5.8);
    }

    #[test]
    fn seeds_give_different_streams() {
        let mut a = vec![0.0f32; 64];
        let mut b = vec![0.0f32; 64];
        NormalStream::new(1).fill(&mut a);
        NormalStream::new(2).fill(&mut b);
        assert!(a.iter().zip(&b).all(|(x, y)| x != y));
    }

    /// The AVX2 build of the block loop and the baseline one agree bit for bit, so seeded
    /// plans do not depend on the CPU.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_avx2_path_matches_the_portable_one() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let n = 2 * LANES * 500;
        let (mut a, mut b) = (vec![0.0f32; n], vec![0.0f32; n]);
        fill_blocks_portable(12345, 77, &mut a);
        // SAFETY: AVX2 is present (checked above).
        unsafe { fill_blocks_avx2(12345, 77, &mut b) };
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    proptest! {
        #[test]
        fn filling_in_pieces_writes_what_one_fill_writes(
            seed in any::<u64>(),
            pieces in proptest::collection::vec(0usize..40, 0..8),
        ) {
            let total: usize = pieces.iter().sum();
            let mut whole = vec![0.0f32; total];
            let mut s = NormalStream::new(seed);
            s.fill(&mut whole);
            prop_assert_eq!(s.position(), total as u64);
            let mut s = NormalStream::new(seed);
            let mut parts = Vec::new();
            for &p in &pieces {
                let mut buf = vec![0.0f32; p];
                s.fill(&mut buf);
                parts.extend(buf);
            }
            prop_assert_eq!(parts, whole);
        }
    }
}
