//! CEM with a device-resident population ([`Backend::Device`]): sampling, energies, top-k and
//! refit are tensor operations on the model's device, and a plan synchronises with the host
//! once, at its end, to download the plan, its energy and the energy trace.
//!
//! The host backend ([`Backend::Host`], the default) samples on the CPU from the planner's
//! normal stream ([`crate::NormalStream`]) and reads the `[S]` energies back every iteration; on a CPU model that is the
//! faster path (energies are scored straight from the rollout's memory). On an accelerator
//! the device backend saves at least two synchronisations and one upload per iteration.
//!
//! Random numbers come from a counter-based generator: the standard normal of entry `j` of
//! iteration `i` of the `p`-th plan since the last reset is a pure function of
//! `(seed, p, i, j)` (a 32-bit integer hash, lowbias32, applied twice, then Box–Muller), so
//! the stream is reproducible, needs no generator state on the device, and is the same
//! integer sequence on every device. Floating-point kernels (log, cos, matmul) may round
//! differently on CPU and CUDA, so the two devices agree statistically, not bit for bit.
//! Same seed, model and inputs on the CPU give the same plan.
//!
//! Deadlines: the anytime loop predicts an iteration's duration from the last one. On a CPU
//! device the kernels run synchronously and the prediction is exact; on CUDA the measured
//! time is the launch time of the iteration's kernels, so the deadline is checked against
//! launches, not completion (the host backend synchronises and does not have this caveat).
use crate::error::{PlannerError, Result};
use crate::sampling::Ctx;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Where a CEM planner keeps its population.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Backend {
    /// Sample and refit on the host (seeded normal stream); one upload of the candidates and
    /// one download of the energies per iteration. The default; fastest on CPU models.
    #[default]
    Host,
    /// Sample, score, rank and refit on the model's device; one download per plan.
    Device,
}

const MASK32: i64 = 0xFFFF_FFFF;

/// `(x · c) mod 2^32` for int64 tensors holding values in `[0, 2^32)`, exact: `c` is split
/// into 16-bit halves so that no product leaves the int64 range.
fn mul32(x: &Tensor, c: u32) -> Result<Tensor> {
    let lo = i64::from(c & 0xFFFF);
    let hi = i64::from(c >> 16);
    let a = x.f_mul_scalar(lo)?;
    let b = x
        .f_mul_scalar(hi)?
        .f_bitwise_and(0xFFFF_i64)?
        .f_bitwise_left_shift_tensor_scalar(16)?;
    Ok(a.f_add(&b)?.f_bitwise_and(MASK32)?)
}

/// `x ^ (x >> k)` for non-negative int64 tensors.
fn xorshift(x: &Tensor, k: i64) -> Result<Tensor> {
    Ok(x.f_bitwise_xor_tensor(&x.f_bitwise_right_shift_tensor_scalar(k)?)?)
}

/// lowbias32 (Wellons' hash prospector): a bijective 32-bit mixer, elementwise.
fn hash32(x: &Tensor) -> Result<Tensor> {
    let x = mul32(&xorshift(x, 16)?, 0x7feb_352d)?;
    let x = mul32(&xorshift(&x, 15)?, 0x846c_a68b)?;
    xorshift(&x, 16)
}

/// The same mixer on the host, for deriving per-iteration keys.
fn hash32_host(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// Four 32-bit keys for the stream `(seed, plan, iteration)`.
fn keys(seed: u64, plan: u64, iteration: u32) -> [u32; 4] {
    // Fold the 64-bit inputs through the mixer; distinct lanes per key.
    let mut k = [0u32; 4];
    let words = [
        seed as u32,
        (seed >> 32) as u32,
        plan as u32,
        (plan >> 32) as u32,
        iteration,
    ];
    for (lane, slot) in k.iter_mut().enumerate() {
        let mut h = hash32_host(0x9e37_79b9u32.wrapping_mul(lane as u32 + 1));
        for w in words {
            h = hash32_host(h ^ w);
        }
        *slot = h;
    }
    k
}

/// `n` uniforms in `(0, 1)` (float32, on `device`) of the stream keyed by `k1`, `k2`: entry
/// `j` is `hash(hash(j ^ k1) ^ k2)`, its top 24 bits centred in their interval.
fn uniforms(n: i64, k1: u32, k2: u32, device: Device) -> Result<Tensor> {
    let j = Tensor::f_arange(n, (Kind::Int64, device))?;
    let h = hash32(&j.f_bitwise_xor(i64::from(k1))?)?;
    let h = hash32(&h.f_bitwise_xor(i64::from(k2))?)?;
    Ok(h.f_bitwise_right_shift_tensor_scalar(8)?
        .f_to_kind(Kind::Float)?
        .f_add_scalar(0.5)?
        .f_mul_scalar(1.0 / f64::from(1u32 << 24))?)
}

/// `n` standard normals (float32, on `device`) of the stream `(seed, plan, iteration)`:
/// Box–Muller on two independent uniform streams, one normal per entry.
pub(crate) fn counter_normals(
    seed: u64,
    plan: u64,
    iteration: u32,
    n: i64,
    device: Device,
) -> Result<Tensor> {
    let [k1, k2, k3, k4] = keys(seed, plan, iteration);
    let u1 = uniforms(n, k1, k2, device)?;
    let u2 = uniforms(n, k3, k4, device)?;
    let r = u1.f_log()?.f_mul_scalar(-2.0)?.f_sqrt()?;
    let c = u2.f_mul_scalar(std::f64::consts::TAU)?.f_cos()?;
    Ok(r.f_mul(&c)?)
}

/// The population state of one plan on the device.
pub(crate) struct DevicePlan {
    mean: Tensor,
    std: Tensor,
    best_u: Tensor,
    best_e: Tensor,
    /// Best energy after each iteration (scalars on the device), downloaded at the end.
    trace: Vec<Tensor>,
    /// `low`, `half` of the bounds as `[H·A]` tensors on the device.
    centre: Tensor,
    half: Tensor,
}

/// CEM's settings the device loop needs.
pub(crate) struct DeviceCemSettings {
    pub samples: usize,
    pub elites: usize,
    pub min_std: f32,
    pub max_std: f32,
    pub momentum: f32,
    pub include_mean: bool,
}

impl DevicePlan {
    /// Uploads the starting mean and std (normalised, `H·A`) to the problem's device.
    pub fn start(mean: &[f32], std: &[f32], ctx: &Ctx<'_, '_>) -> Result<Self> {
        let device = ctx.problem.device;
        let up =
            |v: &[f32]| -> Result<Tensor> { Ok(Tensor::f_from_slice(v)?.f_to_device(device)?) };
        let a = ctx.bounds.dim();
        let ha = mean.len();
        let mut centre = Vec::with_capacity(ha);
        let mut half = Vec::with_capacity(ha);
        for j in 0..ha {
            centre.push(ctx.bounds.centre(j % a.max(1)).unwrap_or(0.0));
            half.push(ctx.bounds.half_range(j % a.max(1)).unwrap_or(0.0));
        }
        let mean_t = up(mean)?;
        Ok(Self {
            best_u: mean_t.shallow_clone(),
            mean: mean_t,
            std: up(std)?,
            best_e: Tensor::f_full([1], f64::INFINITY, (Kind::Float, device))?,
            trace: Vec::new(),
            centre: up(&centre)?,
            half: up(&half)?,
        })
    }

    /// One iteration on the device: sample, roll out, score, rank, refit, keep the best.
    pub fn iterate(
        &mut self,
        cfg: &DeviceCemSettings,
        stream: (u64, u64, u32),
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let device = ctx.problem.device;
        let s = cfg.samples as i64;
        let ha = self.mean.size().first().copied().unwrap_or(0);
        let (h, a) = (ctx.problem.horizon as i64, ctx.problem.action_dim as i64);
        let (seed, plan, i) = stream;
        let eps = counter_normals(seed, plan, i, s * ha, device)?.f_view([s, ha])?;
        let mut cand = eps
            .f_mul(&self.std.f_unsqueeze(0)?)?
            .f_add(&self.mean.f_unsqueeze(0)?)?
            .f_clamp(-1.0, 1.0)?;
        if cfg.include_mean && s > 1 {
            cand = Tensor::f_cat(&[self.mean.f_unsqueeze(0)?, cand.f_narrow(0, 1, s - 1)?], 0)?;
        }
        let actions = cand
            .f_mul(&self.half.f_unsqueeze(0)?)?
            .f_add(&self.centre.f_unsqueeze(0)?)?
            .f_view([s, h, a])?;
        let pred = ctx
            .problem
            .model
            .rollout(&ctx.problem.z0_batch(cfg.samples)?, &actions)?;
        let pred = if pred.kind() == Kind::Float {
            pred
        } else {
            pred.f_to_kind(Kind::Float)?
        };
        let energies = ctx
            .energy
            .compute(&pred, &ctx.problem.goal, &actions)?
            .f_nan_to_num(f64::INFINITY, f64::INFINITY, f64::INFINITY)?;
        let k = cfg.elites.clamp(1, cfg.samples) as i64;
        let (vals, idx) = energies.f_topk(k, 0, false, true)?;
        let elites = cand.f_index_select(0, &idx)?;
        let fit_mean = elites.f_mean_dim(0, false, Kind::Float)?;
        let fit_std = if k > 1 {
            elites.f_std_correction(0, 1, false)?
        } else {
            Tensor::f_zeros_like(&fit_mean)?
        };
        let m = f64::from(cfg.momentum);
        self.mean = self
            .mean
            .f_mul_scalar(m)?
            .f_add(&fit_mean.f_mul_scalar(1.0 - m)?)?
            .f_clamp(-1.0, 1.0)?;
        self.std = self
            .std
            .f_mul_scalar(m)?
            .f_add(&fit_std.f_mul_scalar(1.0 - m)?)?
            .f_clamp(f64::from(cfg.min_std), f64::from(cfg.max_std))?;
        // Keep the best candidate so far without leaving the device.
        let top_e = vals.f_narrow(0, 0, 1)?;
        let top_u = elites.f_narrow(0, 0, 1)?.f_view([ha])?;
        let better = top_e.f_lt_tensor(&self.best_e)?;
        self.best_u = top_u.f_where_self(&better, &self.best_u)?;
        self.best_e = top_e.f_where_self(&better, &self.best_e)?;
        // `best_e` is replaced, never written in place: the trace may share it.
        self.trace.push(self.best_e.shallow_clone());
        Ok(())
    }

    /// Downloads everything the plan's output needs in one transfer: the final mean and std
    /// (into `mean`, `std`), the best candidate and its energy (into `ctx.best`) and the trace.
    pub fn finish(
        self,
        mean: &mut [f32],
        std: &mut [f32],
        trace: &mut [f32],
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<()> {
        let ha = mean.len();
        let mut parts = vec![self.mean, self.std, self.best_u, self.best_e];
        parts.extend(self.trace);
        let all = crate::sampling::download(&Tensor::f_cat(&parts, 0)?)?;
        let (m, rest) = all.split_at(ha.min(all.len()));
        let (s, rest) = rest.split_at(ha.min(rest.len()));
        let (u, rest) = rest.split_at(ha.min(rest.len()));
        let (e, t) = rest.split_at(1.min(rest.len()));
        mean.copy_from_slice(m);
        std.copy_from_slice(s);
        let energy = e.first().copied().unwrap_or(f32::INFINITY);
        if !energy.is_finite() {
            return Err(PlannerError::AllNonFinite {
                candidates: 0,
                iteration: trace.len().saturating_sub(1) as u32,
            });
        }
        ctx.best.u.clear();
        ctx.best.u.extend_from_slice(u);
        ctx.best.energy = energy;
        for (dst, src) in trace.iter_mut().zip(t) {
            *dst = *src;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn mul32_is_exact_multiplication_mod_2_32() {
        let xs: Vec<i64> = vec![
            0,
            1,
            2,
            0xFFFF,
            0x1_0000,
            0x7FFF_FFFF,
            0xFFFF_FFFF,
            123_456_789,
        ];
        let t = Tensor::from_slice(&xs);
        for c in [0x7feb_352du32, 0x846c_a68b, 1, u32::MAX] {
            let got = Vec::<i64>::try_from(&mul32(&t, c).unwrap()).unwrap();
            for (x, g) in xs.iter().zip(got) {
                assert_eq!(g as u32, (*x as u32).wrapping_mul(c), "{x} * {c}");
            }
        }
    }

    #[test]
    fn device_hash_matches_host_hash() {
        let xs: Vec<i64> = (0..1000)
            .map(|i| (i * 2_654_435_761u64 as i64) & MASK32)
            .collect();
        let got = Vec::<i64>::try_from(&hash32(&Tensor::from_slice(&xs)).unwrap()).unwrap();
        for (x, g) in xs.iter().zip(got) {
            assert_eq!(g as u32, hash32_host(*x as u32));
        }
    }

    #[test]
    fn counter_normals_are_standard_and_reproducible() {
        let n = 200_000;
        let a = counter_normals(7, 0, 0, n, Device::Cpu).unwrap();
        let b = counter_normals(7, 0, 0, n, Device::Cpu).unwrap();
        assert!(a.equal(&b));
        let v = Vec::<f32>::try_from(&a).unwrap();
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        assert_relative_eq!(mean, 0.0, epsilon = 0.01);
        assert_relative_eq!(var, 1.0, epsilon = 0.02);
        let within1 = v.iter().filter(|x| x.abs() < 1.0).count() as f64 / n as f64;
        assert_relative_eq!(within1, 0.6827, epsilon = 0.005);
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn streams_differ_by_seed_plan_and_iteration() {
        let base = counter_normals(7, 0, 0, 64, Device::Cpu).unwrap();
        for (s, p, i) in [(8, 0, 0), (7, 1, 0), (7, 0, 1)] {
            let other = counter_normals(s, p, i, 64, Device::Cpu).unwrap();
            assert!(!base.equal(&other), "({s}, {p}, {i})");
        }
        // Neighbouring entries are uncorrelated.
        let v =
            Vec::<f32>::try_from(&counter_normals(1, 0, 0, 100_000, Device::Cpu).unwrap()).unwrap();
        let lag1 = v.windows(2).map(|w| f64::from(w[0] * w[1])).sum::<f64>() / v.len() as f64;
        assert!(lag1.abs() < 0.02, "lag-1 correlation {lag1}");
    }
}
