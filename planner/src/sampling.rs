//! Machinery shared by the sampling planners (CEM, iCEM, MPPI): one batched evaluation per
//! iteration, ranking with non-finite energies last, and the anytime loop.
//!
//! Candidates live on the host in the normalised action space `u ∈ [-1, 1]` (see
//! [`ActionBounds`]); each iteration draws them from a seeded ChaCha stream, denormalises them
//! into one upload buffer, rolls all of them out in a single `model.rollout` call with `z0`
//! expanded (not copied) to the batch, and scores them: on the host straight from the
//! rollout's memory for CPU models, else on the device, reading back only the `[S]` energies. The refits (elite mean/std, MPPI weights) are `O(S·H·A)` host loops, small next to
//! any rollout, which is at least `O(S·H·A·latent)`.

use crate::bounds::ActionBounds;
use crate::energy::{self, Energy};
use crate::error::{PlannerError, Result};
use crate::plan::{Budget, Plan, PlanOutput};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use zplan_models::WorldModel;

/// One planning problem: model, start and goal latents on the model's device.
pub(crate) struct Problem<'a> {
    pub model: &'a dyn WorldModel,
    pub z0: Tensor,
    pub goal: Tensor,
    pub latent: Vec<i64>,
    pub device: Device,
    pub horizon: usize,
    pub action_dim: usize,
    /// The goal latent flattened on the host (CPU models: energies are scored on the host).
    goal_host: Option<Vec<f32>>,
}

impl<'a> Problem<'a> {
    /// Checks shapes and moves `z0`/`z_goal` to the model's device (no-ops when already there).
    pub fn new(
        model: &'a dyn WorldModel,
        z0: &Tensor,
        z_goal: &Tensor,
        horizon: usize,
        bounds: &ActionBounds,
    ) -> Result<Self> {
        let zs = z0.size();
        if zs.len() < 2 || zs[0] != 1 {
            return Err(PlannerError::Shape(format!(
                "z0 must be [1, *latent], got {zs:?}"
            )));
        }
        if z_goal.size() != zs {
            return Err(PlannerError::Shape(format!(
                "z_goal {:?} must have z0's shape {zs:?}",
                z_goal.size()
            )));
        }
        if model.action_dim() != bounds.dim() as i64 {
            return Err(PlannerError::Shape(format!(
                "model `{}` takes {} action entries but the bounds have {}",
                model.name(),
                model.action_dim(),
                bounds.dim()
            )));
        }
        let device = model.device();
        let prep = |t: &Tensor| -> Result<Tensor> {
            Ok(t.f_detach()?.f_to_kind(Kind::Float)?.f_to_device(device)?)
        };
        let goal = prep(z_goal)?;
        let goal_host = if device == Device::Cpu {
            Some(download(&goal)?)
        } else {
            None
        };
        Ok(Self {
            model,
            z0: prep(z0)?,
            goal,
            goal_host,
            latent: zs[1..].to_vec(),
            device,
            horizon,
            action_dim: bounds.dim(),
        })
    }

    /// `z0` viewed as `s` rows (stride 0, no copy).
    pub fn z0_batch(&self, s: usize) -> Result<Tensor> {
        let mut shape = Vec::with_capacity(self.latent.len() + 1);
        shape.push(s as i64);
        shape.extend_from_slice(&self.latent);
        Ok(self.z0.f_expand(shape.as_slice(), false)?)
    }

    /// Uploads `s` row-major action sequences as `[s, H, A]` on the model's device.
    pub fn upload(&self, actions: &[f32], s: usize) -> Result<Tensor> {
        let t = Tensor::f_from_slice(&actions[..s * self.horizon * self.action_dim])?.f_view([
            s as i64,
            self.horizon as i64,
            self.action_dim as i64,
        ])?;
        Ok(if self.device == Device::Cpu {
            t
        } else {
            t.f_to_device(self.device)?
        })
    }

    /// Energies of `s` candidates (`actions`: `s·H·A` denormalised values): one upload, one
    /// batched rollout, then on an accelerator one batched energy and one `[s]` download; on
    /// CPU the energies are scored on the host straight from the rollout's memory
    /// ([`Energy::compute_host`]), which saves the energy kernels' dispatch.
    pub fn evaluate(&self, energy: &Energy, actions: &[f32], s: usize) -> Result<Vec<f32>> {
        let _guard = tch::no_grad_guard();
        let act = self.upload(actions, s)?;
        let pred = self.model.rollout(&self.z0_batch(s)?, &act)?;
        let (Some(goal), true) = (&self.goal_host, pred.device() == Device::Cpu) else {
            let e = energy.compute(&pred, &self.goal, &act)?;
            return download(&e);
        };
        energy::check_shapes(&pred.size(), &self.goal.size(), &act.size())?;
        let pred = pred.f_to_kind(Kind::Float)?.f_contiguous()?;
        let mut out = Vec::with_capacity(s);
        energy.compute_host(
            host_f32(&pred)?,
            goal,
            &actions[..s * self.horizon * self.action_dim],
            s,
            self.horizon,
            &mut out,
        )?;
        Ok(out)
    }
}

/// The values of a contiguous float CPU tensor, borrowed without a copy.
fn host_f32(t: &Tensor) -> Result<&[f32]> {
    if t.device() != Device::Cpu || t.kind() != Kind::Float || !t.is_contiguous() {
        return Err(PlannerError::Shape(format!(
            "expected a contiguous float CPU tensor, got {:?} {:?} on {:?}",
            t.kind(),
            t.size(),
            t.device()
        )));
    }
    let n = t.numel();
    if n == 0 {
        return Ok(&[]);
    }
    // SAFETY: `t` is a contiguous CPU tensor of `n` f32 values starting at `data_ptr`; the
    // slice borrows `t`, which keeps the storage alive. Nothing writes to it meanwhile: it is
    // a rollout's result, which `WorldModel::rollout` hands over for the caller to read
    // (never a view of state that the model or other threads write later).
    Ok(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, n) })
}

/// Copies a 1-D tensor to a host vector (the one synchronising read per iteration).
pub(crate) fn download(t: &Tensor) -> Result<Vec<f32>> {
    let t = t.f_to_kind(Kind::Float)?;
    let t = if t.device() == Device::Cpu {
        t
    } else {
        t.f_to_device(Device::Cpu)?
    };
    Ok(Vec::<f32>::try_from(&t.f_reshape([-1])?)?)
}

/// Indices sorted by energy, best first; NaN and ±Inf rank last (ties by index, so the order
/// is deterministic). Returns the order and how many energies are finite.
///
/// Each energy becomes one `u64` key, its order-preserving bits above its index, so one
/// unstable integer sort gives the stable order (3× faster than comparing through indices).
pub(crate) fn rank(energies: &[f32]) -> (Vec<usize>, usize) {
    debug_assert!(
        energies.len() <= u32::MAX as usize,
        "indices are packed into 32 bits"
    );
    let mut keys: Vec<u64> = energies
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            let bits = if e.is_finite() { e } else { f32::INFINITY }.to_bits();
            // The order of `f32::total_cmp`: negatives reversed below the positives.
            let ordered = if bits >> 31 == 1 {
                !bits
            } else {
                bits | 0x8000_0000
            };
            (u64::from(ordered) << 32) | i as u64
        })
        .collect();
    keys.sort_unstable();
    let order = keys.iter().map(|k| (k & 0xffff_ffff) as usize).collect();
    let finite = energies.iter().filter(|e| e.is_finite()).count();
    (order, finite)
}

/// `v.clamp(lo, hi)` without `clamp`'s check of the bounds, so that loops over it vectorise
/// (≈3× faster for the planners' clipping passes). The same value as `f32::clamp` for every
/// `v` (NaN stays NaN) when `lo <= hi`.
#[inline(always)]
pub(crate) fn clip(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

/// Denormalises `u` (row-major `[.., A]`) into `out`: [`ActionBounds::denormalise`] per entry,
/// bit for bit, over tiles of 8 actions with the per-entry constants laid out alongside, a
/// loop the compiler vectorises.
pub(crate) fn to_actions(bounds: &ActionBounds, u: &[f32], out: &mut Vec<f32>) {
    const ROWS: usize = 8;
    let a = bounds.dim();
    out.clear();
    if a == 0 {
        return;
    }
    debug_assert_eq!(u.len() % a, 0, "u holds whole actions");
    let tile = ROWS * a;
    let per_entry =
        |f: &dyn Fn(usize) -> f32| -> Vec<f32> { (0..tile).map(|j| f(j % a)).collect() };
    let centre = per_entry(&|i| bounds.centre(i));
    let half = per_entry(&|i| bounds.half_range(i));
    let low = per_entry(&|i| bounds.low[i]);
    let high = per_entry(&|i| bounds.high[i]);
    out.resize(u.len(), 0.0);
    let body = u.len() / tile * tile;
    for (o, x) in out[..body]
        .chunks_exact_mut(tile)
        .zip(u[..body].chunks_exact(tile))
    {
        for (j, (o, &x)) in o.iter_mut().zip(x).enumerate() {
            *o = clip(centre[j] + half[j] * x, low[j], high[j]);
        }
    }
    for (j, (o, &x)) in out[body..].iter_mut().zip(&u[body..]).enumerate() {
        *o = bounds.denormalise(j % a, x);
    }
}

/// Normalises a warm start (resized to `horizon`) into `u` space.
pub(crate) fn normalised_warm_start(
    bounds: &ActionBounds,
    warm: &Plan,
    horizon: usize,
) -> Result<Vec<f32>> {
    if warm.horizon == 0 || warm.actions.len() != warm.horizon * warm.action_dim {
        return Err(PlannerError::Shape(format!(
            "warm start has {} values for {} actions of {} entries",
            warm.actions.len(),
            warm.horizon,
            warm.action_dim
        )));
    }
    if warm.action_dim != bounds.dim() {
        return Err(PlannerError::Shape(format!(
            "warm start has {} action entries, the bounds {}",
            warm.action_dim,
            bounds.dim()
        )));
    }
    let warm = warm.resized(horizon)?;
    let a = bounds.dim();
    Ok(warm
        .actions
        .iter()
        .enumerate()
        .map(|(j, &x)| bounds.normalise(j % a, x))
        .collect())
}

/// Drops the first `k` steps of a normalised sequence and repeats its last step.
pub(crate) fn shift_u(u: &mut [f32], k: usize, action_dim: usize) {
    let h = u.len() / action_dim;
    if k == 0 || h == 0 {
        return;
    }
    let k = k.min(h - 1);
    u.copy_within(k * action_dim.., 0);
    let last = (h - 1 - k) * action_dim;
    for t in h - k..h {
        u.copy_within(last..last + action_dim, t * action_dim);
    }
}

/// A sampling planner's algorithm; [`drive`] supplies the anytime loop around it.
pub(crate) trait Sampler {
    /// Candidates in iteration `i` (used to predict the iteration's duration).
    fn population(&self, i: u32) -> usize;
    /// Writes the normalised candidates of iteration `i` into `out` (`population(i)·H·A`).
    fn sample(&mut self, i: u32, out: &mut Vec<f32>);
    /// Refits the sampling distribution from the evaluated candidates. `order` is best first
    /// and its first `finite` entries have finite energies (`finite >= 1`).
    fn refit(&mut self, i: u32, u: &[f32], energies: &[f32], order: &[usize], finite: usize);
    /// The current mean (the fallback plan and the `Mean` return value).
    fn mean(&self) -> &[f32];
}

/// What [`drive`] found, in normalised space.
pub(crate) struct Driven {
    pub best_u: Vec<f32>,
    pub output: PlanOutput,
}

/// The anytime loop: deadline checks with per-iteration time prediction, one batched
/// evaluation per iteration, best-so-far tracking. If no iteration fits the budget, the
/// current mean is evaluated alone (the cheap valid result).
pub(crate) fn drive(
    sampler: &mut dyn Sampler,
    problem: &Problem<'_>,
    energy: &Energy,
    bounds: &ActionBounds,
    budget: &Budget,
    max_iterations: u32,
    return_mean: bool,
) -> Result<Driven> {
    let ha = problem.horizon * problem.action_dim;
    let mut u = Vec::new();
    let mut actions = Vec::new();
    let mut best_u = sampler.mean().to_vec();
    let mut best_e = f32::INFINITY;
    let mut trace = Vec::with_capacity(max_iterations as usize);
    let mut rollouts = 0u64;
    let mut hit_deadline = false;
    let mut last: Option<(Duration, usize)> = None;
    for i in 0..max_iterations {
        let pop = sampler.population(i);
        if budget.deadline.is_some() {
            let overrun = match last {
                Some((d, p)) => budget.would_overrun(d.mul_f64(pop as f64 / p.max(1) as f64)),
                None => budget.expired(),
            };
            if overrun {
                hit_deadline = true;
                break;
            }
        }
        let started = Instant::now();
        sampler.sample(i, &mut u);
        debug_assert_eq!(u.len(), pop * ha);
        to_actions(bounds, &u, &mut actions);
        let energies = problem.evaluate(energy, &actions, pop)?;
        rollouts += pop as u64;
        let (order, finite) = rank(&energies);
        if finite == 0 {
            return Err(PlannerError::AllNonFinite {
                candidates: pop,
                iteration: i,
            });
        }
        let top = order[0];
        if energies[top] < best_e {
            best_e = energies[top];
            best_u.copy_from_slice(&u[top * ha..(top + 1) * ha]);
        }
        trace.push(best_e);
        sampler.refit(i, &u, &energies, &order, finite);
        last = Some((started.elapsed(), pop));
    }
    if trace.is_empty() {
        // Nothing fitted the budget: the cheap valid result is the current mean, scored once.
        best_u.copy_from_slice(sampler.mean());
        to_actions(bounds, &best_u, &mut actions);
        let e = problem.evaluate(energy, &actions, 1)?;
        rollouts += 1;
        if !e[0].is_finite() {
            return Err(PlannerError::AllNonFinite {
                candidates: 1,
                iteration: 0,
            });
        }
        best_e = e[0];
    }
    let chosen = if return_mean && !trace.is_empty() {
        sampler.mean()
    } else {
        &best_u
    };
    let mut plan_actions = Vec::with_capacity(ha);
    to_actions(bounds, chosen, &mut plan_actions);
    let output = PlanOutput {
        plan: Plan::new(plan_actions, problem.horizon, problem.action_dim)?,
        best_energy: best_e,
        iterations: trace.len() as u32,
        energy_trace: trace,
        rollouts,
        hit_deadline,
    };
    Ok(Driven { best_u, output })
}

/// Gaussian sampling around `mean` with per-entry `std`, clipped to `[-1, 1]`; writes `count`
/// sequences, the first being the mean itself when `include_mean`.
///
/// Two passes: the standard normals in stream order, then `mean + std · n` clipped in a loop
/// the compiler vectorises ([`clip`]; `clamp` in the same loop as the draws branched and
/// mispredicted about once per clipped entry).
pub(crate) fn sample_gaussian(
    rng: &mut rand_chacha::ChaCha8Rng,
    mean: &[f32],
    std: &[f32],
    count: usize,
    include_mean: bool,
    out: &mut Vec<f32>,
) {
    use rand_distr::{Distribution, StandardNormal};
    let ha = mean.len();
    out.clear();
    out.resize(count * ha, 0.0);
    let start = if include_mean && count > 0 {
        out[..ha].copy_from_slice(mean);
        ha
    } else {
        0
    };
    let noise = &mut out[start..];
    for x in noise.iter_mut() {
        *x = StandardNormal.sample(rng);
    }
    for row in noise.chunks_exact_mut(ha.max(1)) {
        for ((x, m), s) in row.iter_mut().zip(mean).zip(std) {
            *x = clip(m + s * *x, -1.0, 1.0);
        }
    }
}

/// Mean and standard deviation (unbiased when `k > 1`) of the first `k` ranked candidates.
pub(crate) fn elite_stats(
    u: &[f32],
    order: &[usize],
    k: usize,
    ha: usize,
    mean: &mut [f32],
    std: &mut [f32],
) {
    mean.fill(0.0);
    for &i in &order[..k] {
        for (m, x) in mean.iter_mut().zip(&u[i * ha..(i + 1) * ha]) {
            *m += x;
        }
    }
    let inv = 1.0 / k as f32;
    mean.iter_mut().for_each(|m| *m *= inv);
    std.fill(0.0);
    for &i in &order[..k] {
        for ((s, m), x) in std
            .iter_mut()
            .zip(mean.iter())
            .zip(&u[i * ha..(i + 1) * ha])
        {
            let d = x - m;
            *s += d * d;
        }
    }
    let denom = if k > 1 { (k - 1) as f32 } else { 1.0 };
    std.iter_mut().for_each(|s| *s = (*s / denom).sqrt());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn energy() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => -10.0f32..10.0,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
            1 => Just(0.5f32),
        ]
    }

    proptest! {
        /// The two-pass sampler draws exactly what one `clamp(mean + std · n)` per entry in
        /// stream order draws: seeded plans are unchanged by the rewrite.
        #[test]
        fn sample_gaussian_matches_the_one_pass_definition(
            ha in 1usize..12,
            count in 0usize..20,
            include_mean in any::<bool>(),
            seed in any::<u64>(),
            spread in 0.05f32..3.0,
        ) {
            use rand::SeedableRng;
            use rand_distr::{Distribution, StandardNormal};
            let mean: Vec<f32> = (0..ha).map(|j| ((j * 37 % 11) as f32 / 5.0 - 1.0).clamp(-1.0, 1.0)).collect();
            let std: Vec<f32> = (0..ha).map(|j| spread * (1.0 + j as f32 / 7.0)).collect();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut got = vec![9.0];
            sample_gaussian(&mut rng, &mean, &std, count, include_mean, &mut got);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut want = Vec::new();
            for c in 0..count {
                for (m, s) in mean.iter().zip(&std) {
                    want.push(if c == 0 && include_mean {
                        *m
                    } else {
                        let n: f32 = StandardNormal.sample(&mut rng);
                        (m + s * n).clamp(-1.0, 1.0)
                    });
                }
            }
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(g.to_bits(), w.to_bits());
            }
        }

        /// Best first, non-finite last, ties by index: the same order as a stable sort on the
        /// finite-or-infinity key.
        #[test]
        fn rank_is_the_stable_order_with_non_finite_last(e in prop::collection::vec(energy(), 0..200)) {
            let key = |x: f32| if x.is_finite() { x } else { f32::INFINITY };
            let mut expected: Vec<usize> = (0..e.len()).collect();
            expected.sort_by(|&a, &b| key(e[a]).total_cmp(&key(e[b])));
            let (order, finite) = rank(&e);
            prop_assert_eq!(order, expected);
            prop_assert_eq!(finite, e.iter().filter(|x| x.is_finite()).count());
        }

        /// `to_actions` is `ActionBounds::denormalise` entry by entry, bit for bit.
        #[test]
        fn to_actions_matches_denormalise(
            rows in 0usize..20,
            low in prop::collection::vec(-3.0f32..0.0, 1..4),
            seed in any::<u64>(),
        ) {
            let a = low.len();
            let high: Vec<f32> = low.iter().map(|l| l + 0.5 + (seed % 7) as f32).collect();
            let bounds = ActionBounds::new(low, high).unwrap();
            let u: Vec<f32> = (0..rows * a)
                .map(|j| ((j as u64 * 2654435761 + seed) % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let mut out = vec![7.0];
            to_actions(&bounds, &u, &mut out);
            let expected: Vec<f32> = u.iter().enumerate().map(|(j, &x)| bounds.denormalise(j % a, x)).collect();
            prop_assert_eq!(out.len(), expected.len());
            for (x, y) in out.iter().zip(&expected) {
                prop_assert_eq!(x.to_bits(), y.to_bits());
            }
        }
    }
}
