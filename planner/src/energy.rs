//! Latent energies: how far predicted latents are from the goal latent, plus action costs.

use crate::error::{Check, PlannerError, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};
use zplan_models::WorldModel;

/// Per-step distance between a predicted latent and the goal latent (both flattened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Metric {
    /// Sum of absolute differences (mean with `normalize`); V-JEPA 2-AC's choice.
    #[default]
    L1,
    /// Euclidean norm of the difference (root-mean-square with `normalize`).
    L2,
    /// Squared Euclidean norm (mean squared error with `normalize`).
    SquaredL2,
    /// `1 - cos(pred, goal)`; ignores latent scale.
    Cosine,
}

/// How per-step distances over the horizon become one number per candidate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum Reduction {
    /// Distance after the last action only (V-JEPA 2-AC). Blind to detours; fails behind walls.
    #[default]
    Last,
    /// Sum over all steps: rewards getting close early and staying there.
    Sum,
    /// `Σ_h gamma^h d_h`.
    Discounted(f32),
}

/// Weights and choices of the planning energy (lower is better).
///
/// `E = distance_weight * (reduce_h d(z_h, z_goal) + terminal_weight * d(z_H, z_goal))
///      + action_weight * Σ ||a_h||² + smoothness_weight * Σ ||a_h - a_{h-1}||²`.
///
/// Defaults: L1 on the last step, mean over latent entries (V-JEPA 2-AC), no action terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnergyConfig {
    /// Distance between latents.
    pub metric: Metric,
    /// Combination over the horizon.
    pub reduction: Reduction,
    /// Divide by the number of latent entries (L1 → mean, L2 → RMS, SquaredL2 → MSE), so
    /// weights and MPPI temperatures transfer between latent sizes.
    pub normalize: bool,
    /// Weight of the distance term.
    pub distance_weight: f32,
    /// Extra weight of the last step's distance on top of the reduction (a terminal cost, as
    /// in MPC). With `Sum`, it lets a plan pass through worse states (a detour of the agent
    /// around an object) when it ends better; `Last` alone trusts only the farthest, least
    /// accurate prediction. 0: none.
    pub terminal_weight: f32,
    /// Weight of the action-magnitude penalty `Σ_h ||a_h||²`.
    pub action_weight: f32,
    /// Weight of the smoothness penalty `Σ_h ||a_h - a_{h-1}||²`.
    pub smoothness_weight: f32,
    /// Optional weight per flattened latent entry (empty: all 1). Lets a state-vector latent
    /// stress positions over velocities.
    pub latent_weights: Vec<f32>,
    /// Optional weight of the latent entries that encode the agent's own state
    /// ([`WorldModel::proprio_latent`]: a native JEPA trained with `--proprio`), multiplying
    /// `latent_weights`; DINO-WM's proprio weight. A small value lets the planner move the agent
    /// freely to push the scene towards the goal. Models without a proprio latent reject it.
    pub proprio_weight: Option<f32>,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        Self {
            metric: Metric::L1,
            reduction: Reduction::Last,
            normalize: true,
            distance_weight: 1.0,
            terminal_weight: 0.0,
            action_weight: 0.0,
            smoothness_weight: 0.0,
            latent_weights: Vec::new(),
            proprio_weight: None,
        }
    }
}

impl EnergyConfig {
    /// Parses RON (`(metric: L2, reduction: Sum)`, as `--energy` takes it) and validates;
    /// limits as [`crate::PlannerConfig::from_ron_str`].
    pub fn from_ron_str(s: &str) -> Result<Self> {
        let cfg: Self = crate::error::parse_ron(s, "energy")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Range checks (NaN fails).
    pub fn validate(&self) -> Result<()> {
        let c = Check::new("energy");
        c.non_negative("distance_weight", self.distance_weight)?;
        c.non_negative("terminal_weight", self.terminal_weight)?;
        c.non_negative("action_weight", self.action_weight)?;
        c.non_negative("smoothness_weight", self.smoothness_weight)?;
        if let Reduction::Discounted(g) = self.reduction {
            c.in_closed("reduction.Discounted", g, 0.0, 1.0)?;
        }
        for (i, &w) in self.latent_weights.iter().enumerate() {
            c.non_negative(&format!("latent_weights[{i}]"), w)?;
        }
        if let Some(w) = self.proprio_weight {
            c.non_negative("proprio_weight", w)?;
        }
        Ok(())
    }

    /// The per-entry latent weights this energy uses with `model` (`None`: all 1): checks
    /// `latent_weights` against the model's latent size and folds `proprio_weight` in.
    ///
    /// # Errors
    /// [`PlannerError::InvalidConfig`] when `latent_weights` has the wrong length or
    /// `proprio_weight` is set for a model without a proprio latent.
    pub fn weights_for(&self, model: &dyn WorldModel) -> Result<Option<Vec<f32>>> {
        let d: i64 = model.latent_shape().iter().product();
        let d = d.max(0) as usize;
        let c = Check::new("energy");
        if !self.latent_weights.is_empty() && self.latent_weights.len() != d {
            return c.fail(
                "latent_weights",
                format!(
                    "has {} entries but the latent of {} has {d}",
                    self.latent_weights.len(),
                    model.name()
                ),
            );
        }
        let Some(pw) = self.proprio_weight else {
            return Ok((!self.latent_weights.is_empty()).then(|| self.latent_weights.clone()));
        };
        let Some(range) = model.proprio_latent() else {
            return c.fail(
                "proprio_weight",
                format!(
                    "{} keeps no separate proprio latent (train a JEPA with --proprio FIELDS, \
                     or weight entries with latent_weights)",
                    model.name()
                ),
            );
        };
        if range.start > range.end || range.end > d {
            return c.fail(
                "proprio_weight",
                format!(
                    "{} reports proprio latent {range:?} outside its {d} entries",
                    model.name()
                ),
            );
        }
        let mut w = if self.latent_weights.is_empty() {
            vec![1.0; d]
        } else {
            self.latent_weights.clone()
        };
        for v in w.get_mut(range).unwrap_or_default() {
            *v *= pw;
        }
        Ok(Some(w))
    }
}

/// A validated [`EnergyConfig`] ready to score batches on a device.
#[derive(Debug)]
pub struct Energy {
    config: EnergyConfig,
    latent_weights: Option<Tensor>,
    /// `latent_weights` on the host, for [`Energy::compute_host`].
    host_weights: Option<Vec<f32>>,
    /// With `proprio_weight`: the model layout (proprio range, latent entries) that
    /// `latent_weights` was resolved for.
    resolved: Option<(Option<std::ops::Range<usize>>, i64)>,
}

impl Energy {
    /// Validates the config.
    pub fn new(config: EnergyConfig) -> Result<Self> {
        config.validate()?;
        let latent_weights = if config.latent_weights.is_empty() {
            None
        } else {
            Some(Tensor::f_from_slice(&config.latent_weights)?)
        };
        let host_weights =
            (!config.latent_weights.is_empty()).then(|| config.latent_weights.clone());
        Ok(Self {
            config,
            latent_weights,
            host_weights,
            resolved: None,
        })
    }

    /// The config this energy was built from.
    pub fn config(&self) -> &EnergyConfig {
        &self.config
    }

    /// Resolves weights for `model` and moves cached constants to `device` (once per plan, not
    /// per iteration).
    pub(crate) fn prepare(&mut self, model: &dyn WorldModel, device: Device) -> Result<()> {
        if self.config.proprio_weight.is_some() {
            let key = (
                model.proprio_latent(),
                model.latent_shape().iter().product(),
            );
            if self.resolved.as_ref() != Some(&key) {
                let w = self.config.weights_for(model)?.unwrap_or_default();
                self.latent_weights = Some(Tensor::f_from_slice(&w)?);
                self.host_weights = Some(w);
                self.resolved = Some(key);
            }
        }
        if let Some(w) = &self.latent_weights {
            if w.device() != device {
                self.latent_weights = Some(w.f_to_device(device)?);
            }
        }
        Ok(())
    }

    /// Energies `[S]` of `S` candidates from predicted latents `pred` `[S, H, *latent]`, the goal
    /// latent `goal` `[1, *latent]` and the candidates' actions `[S, H, A]`, computed on
    /// `pred`'s device in a handful of batched kernels. Differentiable (the gradient planner
    /// backpropagates through it).
    pub fn compute(&self, pred: &Tensor, goal: &Tensor, actions: &Tensor) -> Result<Tensor> {
        let ps = pred.size();
        let (s, h, d) = check_shapes(&ps, &goal.size(), &actions.size())?;
        let cfg = &self.config;
        // Only the last step matters for `Last`: measure that one alone (H times less work).
        let (p, steps) = match cfg.reduction {
            Reduction::Last => (pred.f_select(1, h - 1)?.f_reshape([s, 1, d])?, 1),
            _ => (pred.f_reshape([s, h, d])?, h),
        };
        let g = goal.f_reshape([1, 1, d])?;
        let weights = match &self.latent_weights {
            Some(w) if w.size()[0] != d => {
                return Err(PlannerError::Shape(format!(
                    "energy.latent_weights has {} entries but the latent has {d}",
                    w.size()[0]
                )))
            }
            Some(w) => Some(w.f_to_device(p.device())?.f_view([1, 1, d])?),
            None => None,
        };
        let n = if cfg.normalize { d as f64 } else { 1.0 };
        // Each metric is one pass to form the difference and one fused reduction over it.
        let dist = match cfg.metric {
            Metric::Cosine => {
                let (p, g) = match &weights {
                    Some(w) => (p.f_mul(w)?, g.f_mul(w)?),
                    None => (p, g),
                };
                Tensor::f_cosine_similarity(&p, &g, -1, f64::from(COSINE_EPS))?
                    .f_neg()?
                    .f_add_scalar(1.0)?
            }
            metric => {
                let mut diff = p.f_sub(&g)?;
                if let Some(w) = &weights {
                    diff = diff.f_mul(w)?;
                }
                match metric {
                    Metric::L1 => diff
                        .f_norm_scalaropt_dim(1.0, [-1i64].as_slice(), false)?
                        .f_div_scalar(n)?,
                    Metric::L2 => diff
                        .f_norm_scalaropt_dim(2.0, [-1i64].as_slice(), false)?
                        .f_div_scalar(n.sqrt())?,
                    _ => diff
                        .f_norm_scalaropt_dim(2.0, [-1i64].as_slice(), false)?
                        .f_square()?
                        .f_div_scalar(n)?,
                }
            }
        }; // [S, steps]
        let reduced = match cfg.reduction {
            Reduction::Last => dist.f_select(1, 0)?,
            Reduction::Sum => dist.f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?,
            Reduction::Discounted(gamma) => {
                // gamma^h on the device (pow(0, 0) = 1), no upload.
                let w = Tensor::f_pow_scalar(
                    f64::from(gamma),
                    &Tensor::f_arange(steps, (Kind::Float, dist.device()))?,
                )?;
                dist.f_mul(&w.f_view([1, steps])?)?.f_sum_dim_intlist(
                    [1i64].as_slice(),
                    false,
                    None::<Kind>,
                )?
            }
        };
        let reduced = if cfg.terminal_weight > 0.0 {
            // `dist`'s last column is the last step for every reduction (`Last` kept only it).
            reduced.f_add(
                &dist
                    .f_select(1, steps - 1)?
                    .f_mul_scalar(f64::from(cfg.terminal_weight))?,
            )?
        } else {
            reduced
        };
        let mut energy = if cfg.distance_weight == 1.0 {
            reduced
        } else {
            reduced.f_mul_scalar(f64::from(cfg.distance_weight))?
        };
        if cfg.action_weight > 0.0 {
            let mag =
                actions
                    .f_square()?
                    .f_sum_dim_intlist([1i64, 2].as_slice(), false, None::<Kind>)?;
            energy = energy.f_add(&mag.f_mul_scalar(f64::from(cfg.action_weight))?)?;
        }
        if cfg.smoothness_weight > 0.0 && h > 1 {
            let jerk = actions
                .f_narrow(1, 1, h - 1)?
                .f_sub(&actions.f_narrow(1, 0, h - 1)?)?
                .f_square()?
                .f_sum_dim_intlist([1i64, 2].as_slice(), false, None::<Kind>)?;
            energy = energy.f_add(&jerk.f_mul_scalar(f64::from(cfg.smoothness_weight))?)?;
        }
        Ok(energy)
    }

    /// The energies [`compute`](Self::compute) gives, scored on the host from row-major data:
    /// `pred` `[S, H, d]` (`S·H·d` values), `goal` `[d]` and `actions` `[S, H, A]`; writes `S`
    /// values into `out`. The sampling planners use it on CPU, where scoring is a few
    /// microseconds of arithmetic but the equivalent libtorch kernels cost tens of
    /// microseconds of dispatch per iteration. Sums run over 8 lanes in a fixed order, so the
    /// result is deterministic; it agrees with `compute` up to float rounding.
    ///
    /// # Errors
    /// [`PlannerError::Shape`] when the lengths do not fit `S`, `H` and the latent weights.
    pub(crate) fn compute_host(
        &self,
        pred: &[f32],
        goal: &[f32],
        actions: &[f32],
        s: usize,
        h: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let d = goal.len();
        let fits = s.checked_mul(h).and_then(|sh| sh.checked_mul(d)) == Some(pred.len());
        if s == 0 || h == 0 || d == 0 || !fits || actions.is_empty() || actions.len() % (s * h) != 0
        {
            return Err(PlannerError::Shape(format!(
                "host energy: {} predicted values, {} actions and a goal of {d} do not fit \
                 {s} candidates × {h} steps",
                pred.len(),
                actions.len()
            )));
        }
        let w = match &self.host_weights {
            Some(w) if w.len() != d => {
                return Err(PlannerError::Shape(format!(
                    "energy.latent_weights has {} entries but the latent has {d}",
                    w.len()
                )))
            }
            w => w.as_deref(),
        };
        let cfg = &self.config;
        let n = if cfg.normalize { d as f32 } else { 1.0 };
        // The goal's weighted norm, once (cosine only).
        let goal_norm = match cfg.metric {
            Metric::Cosine => lanes(goal, goal, w, |g, _| g * g).sqrt(),
            _ => 0.0,
        };
        let dist = |p: &[f32]| -> f32 {
            match cfg.metric {
                Metric::L1 => lanes(p, goal, w, |a, b| (a - b).abs()) / n,
                Metric::L2 => lanes(p, goal, w, |a, b| (a - b) * (a - b)).sqrt() / n.sqrt(),
                Metric::SquaredL2 => lanes(p, goal, w, |a, b| (a - b) * (a - b)) / n,
                Metric::Cosine => {
                    let dot = lanes(p, goal, w, |a, b| a * b);
                    let norm = lanes(p, p, w, |a, _| a * a).sqrt();
                    1.0 - dot / (norm.max(COSINE_EPS) * goal_norm.max(COSINE_EPS))
                }
            }
        };
        let a = actions.len() / (s * h);
        out.clear();
        out.extend(
            pred.chunks_exact(h * d)
                .zip(actions.chunks_exact(h * a))
                .map(|(p, act)| {
                    let step = |t: usize| dist(&p[t * d..(t + 1) * d]);
                    let reduced = match cfg.reduction {
                        Reduction::Last => step(h - 1),
                        Reduction::Sum => (0..h).map(step).sum(),
                        Reduction::Discounted(gamma) => {
                            (0..h).map(|t| gamma.powi(t as i32) * step(t)).sum()
                        }
                    };
                    let reduced = if cfg.terminal_weight > 0.0 {
                        reduced + cfg.terminal_weight * step(h - 1)
                    } else {
                        reduced
                    };
                    let mut e = cfg.distance_weight * reduced;
                    if cfg.action_weight > 0.0 {
                        e += cfg.action_weight * act.iter().map(|x| x * x).sum::<f32>();
                    }
                    if cfg.smoothness_weight > 0.0 && h > 1 {
                        let jerk: f32 = act[a..]
                            .iter()
                            .zip(act)
                            .map(|(x, y)| (x - y) * (x - y))
                            .sum();
                        e += cfg.smoothness_weight * jerk;
                    }
                    e
                }),
        );
        Ok(())
    }
}

/// `eps` of libtorch's `cosine_similarity` as [`Energy::compute`] calls it.
const COSINE_EPS: f32 = 1e-8;

/// `Σ_i f(p_i·w_i, g_i·w_i)` (weights `1` when `w` is `None`) over 8 lanes summed in a fixed
/// order: vectorisable, and the same result on every run.
#[inline]
fn lanes(p: &[f32], g: &[f32], w: Option<&[f32]>, f: impl Fn(f32, f32) -> f32) -> f32 {
    const L: usize = 8;
    let mut acc = [0.0f32; L];
    let body = p.len() / L * L;
    match w {
        None => {
            for (pc, gc) in p[..body].chunks_exact(L).zip(g[..body].chunks_exact(L)) {
                for k in 0..L {
                    acc[k] += f(pc[k], gc[k]);
                }
            }
        }
        Some(w) => {
            for ((pc, gc), wc) in p[..body]
                .chunks_exact(L)
                .zip(g[..body].chunks_exact(L))
                .zip(w[..body].chunks_exact(L))
            {
                for k in 0..L {
                    acc[k] += f(pc[k] * wc[k], gc[k] * wc[k]);
                }
            }
        }
    }
    for i in body..p.len() {
        let wi = w.map_or(1.0, |w| w[i]);
        acc[i % L] += f(p[i] * wi, g[i] * wi);
    }
    acc.iter().sum()
}

/// Checks `pred` `[S, H, *latent]`, `goal` `[1, *latent]` and `actions` `[S, H, A]` against each
/// other; returns `(S, H, latent entries)`.
pub(crate) fn check_shapes(ps: &[i64], gs: &[i64], a_s: &[i64]) -> Result<(i64, i64, i64)> {
    if ps.len() < 3 {
        return Err(PlannerError::Shape(format!(
            "predicted latents must be [S, H, *latent], got {ps:?}"
        )));
    }
    let (s, h) = (ps[0], ps[1]);
    let d: i64 = ps[2..].iter().product();
    if gs.first() != Some(&1) || gs[1..].iter().product::<i64>() != d || gs[1..] != ps[2..] {
        return Err(PlannerError::Shape(format!(
            "goal latent must be [1, {:?}], got {gs:?}",
            &ps[2..]
        )));
    }
    if a_s.len() != 3 || a_s[0] != s || a_s[1] != h {
        return Err(PlannerError::Shape(format!(
            "actions must be [{s}, {h}, A], got {a_s:?}"
        )));
    }
    Ok((s, h, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    fn e(cfg: EnergyConfig, pred: &Tensor, goal: &Tensor, actions: &Tensor) -> Vec<f32> {
        let e = Energy::new(cfg)
            .unwrap()
            .compute(pred, goal, actions)
            .unwrap();
        Vec::<f32>::try_from(&e).unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    fn arb_config() -> impl proptest::strategy::Strategy<Value = EnergyConfig> {
        use proptest::prelude::*;
        (
            prop_oneof![
                Just(Metric::L1),
                Just(Metric::L2),
                Just(Metric::SquaredL2),
                Just(Metric::Cosine)
            ],
            prop_oneof![
                Just(Reduction::Last),
                Just(Reduction::Sum),
                (0.0f32..=1.0).prop_map(Reduction::Discounted)
            ],
            any::<bool>(),
            0.0f32..2.0,
            prop_oneof![Just(0.0f32), 0.0f32..1.0],
            prop_oneof![Just(0.0f32), 0.0f32..1.0],
            prop_oneof![Just(0.0f32), 0.0f32..8.0],
        )
            .prop_map(
                |(metric, reduction, normalize, dw, aw, sw, tw)| EnergyConfig {
                    metric,
                    reduction,
                    normalize,
                    distance_weight: dw,
                    terminal_weight: tw,
                    action_weight: aw,
                    smoothness_weight: sw,
                    ..EnergyConfig::default()
                },
            )
    }

    proptest::proptest! {
        /// The host scoring the CPU sampling planners use agrees with the libtorch energy for
        /// every metric, reduction, weighting and shape (including latents not a multiple of
        /// the 8 summation lanes).
        #[test]
        fn host_energy_matches_libtorch(
            cfg in arb_config(),
            s in 1usize..6,
            h in 1usize..5,
            d in 1usize..21,
            a in 1usize..4,
            weighted in proptest::prelude::any::<bool>(),
            seed in 0u64..1000,
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut v = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect() };
            let pred = v(s * h * d);
            let goal = v(d);
            let actions = v(s * h * a);
            let weights: Vec<f32> = v(d).iter().map(|x| x.abs()).collect();
            let cfg = EnergyConfig { latent_weights: if weighted { weights } else { vec![] }, ..cfg };
            let energy = Energy::new(cfg).unwrap();
            let (si, hi, di, ai) = (s as i64, h as i64, d as i64, a as i64);
            let want = Vec::<f32>::try_from(
                &energy
                    .compute(&t(&pred, &[si, hi, di]), &t(&goal, &[1, di]), &t(&actions, &[si, hi, ai]))
                    .unwrap(),
            )
            .unwrap();
            let mut got = Vec::new();
            energy.compute_host(&pred, &goal, &actions, s, h, &mut got).unwrap();
            proptest::prop_assert_eq!(got.len(), s);
            for (g, w) in got.iter().zip(&want) {
                proptest::prop_assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "host {got:?} vs libtorch {want:?}");
            }
        }
    }

    #[test]
    fn host_energy_rejects_lengths_that_do_not_fit() {
        let energy = Energy::new(EnergyConfig {
            latent_weights: vec![1.0; 3],
            ..EnergyConfig::default()
        })
        .unwrap();
        let mut out = Vec::new();
        // Two candidates × two steps of a 3-entry latent need 12 values.
        let err = energy
            .compute_host(&[0.0; 11], &[0.0; 3], &[0.0; 4], 2, 2, &mut out)
            .unwrap_err();
        assert!(err.to_string().contains("11 predicted values"), "{err}");
        let err = energy
            .compute_host(&[0.0; 8], &[0.0; 2], &[0.0; 4], 2, 2, &mut out)
            .unwrap_err();
        assert!(err.to_string().contains("latent_weights has 3"), "{err}");
        let err = energy
            .compute_host(&[0.0; 12], &[0.0; 3], &[], 2, 2, &mut out)
            .unwrap_err();
        assert!(err.to_string().contains("0 actions"), "{err}");
        // NaN predictions give NaN energies (ranked last by the planners), not a panic.
        let plain = Energy::new(EnergyConfig::default()).unwrap();
        plain
            .compute_host(
                &[f32::NAN, 0.0, 0.0, 0.0],
                &[0.0; 2],
                &[0.0; 2],
                2,
                1,
                &mut out,
            )
            .unwrap();
        assert!(out[0].is_nan() && out[1] == 0.0, "{out:?}");
    }

    #[test]
    fn metrics_and_reductions_by_hand() {
        // S = 1, H = 2, latent 2: predictions (1, 0) then (0, 2), goal (0, 0).
        let pred = t(&[1.0, 0.0, 0.0, 2.0], &[1, 2, 2]);
        let goal = t(&[0.0, 0.0], &[1, 2]);
        let act = Tensor::zeros([1, 2, 1], (Kind::Float, Device::Cpu));
        let raw = |metric, reduction| EnergyConfig {
            metric,
            reduction,
            normalize: false,
            ..EnergyConfig::default()
        };
        close(
            &e(raw(Metric::L1, Reduction::Last), &pred, &goal, &act),
            &[2.0],
        );
        close(
            &e(raw(Metric::L1, Reduction::Sum), &pred, &goal, &act),
            &[3.0],
        );
        close(
            &e(raw(Metric::L2, Reduction::Sum), &pred, &goal, &act),
            &[3.0],
        );
        close(
            &e(raw(Metric::SquaredL2, Reduction::Sum), &pred, &goal, &act),
            &[5.0],
        );
        close(
            &e(
                raw(Metric::SquaredL2, Reduction::Discounted(0.5)),
                &pred,
                &goal,
                &act,
            ),
            &[1.0 + 0.5 * 4.0],
        );
        close(
            &e(
                raw(Metric::L1, Reduction::Discounted(0.0)),
                &pred,
                &goal,
                &act,
            ),
            &[1.0],
        );
        // normalize divides by the 2 latent entries (sqrt(2) for L2).
        let norm = EnergyConfig {
            metric: Metric::L1,
            reduction: Reduction::Sum,
            ..EnergyConfig::default()
        };
        close(&e(norm, &pred, &goal, &act), &[1.5]);
        let norm = EnergyConfig {
            metric: Metric::L2,
            reduction: Reduction::Last,
            ..EnergyConfig::default()
        };
        close(&e(norm, &pred, &goal, &act), &[2.0 / 2f32.sqrt()]);
        // Cosine: orthogonal then parallel to goal (1, 0).
        let goal1 = t(&[1.0, 0.0], &[1, 2]);
        close(
            &e(raw(Metric::Cosine, Reduction::Sum), &pred, &goal1, &act),
            &[0.0 + 1.0],
        );
        // Latent weights stress entry 0.
        let w = EnergyConfig {
            latent_weights: vec![3.0, 0.0],
            ..raw(Metric::L1, Reduction::Sum)
        };
        close(&e(w, &pred, &goal, &act), &[3.0]);
        // A terminal weight adds the last step's distance (2) on top of each reduction.
        for (reduction, want) in [
            (Reduction::Sum, 3.0 + 4.0 * 2.0),
            (Reduction::Last, 2.0 + 4.0 * 2.0),
            (Reduction::Discounted(0.5), 1.0 + 0.5 * 2.0 + 4.0 * 2.0),
        ] {
            let tw = EnergyConfig {
                terminal_weight: 4.0,
                ..raw(Metric::L1, reduction)
            };
            close(&e(tw, &pred, &goal, &act), &[want]);
        }
        let bad = EnergyConfig {
            terminal_weight: -1.0,
            ..EnergyConfig::default()
        };
        let err = Energy::new(bad).unwrap_err().to_string();
        assert!(err.contains("terminal_weight"), "{err}");
    }

    #[test]
    fn action_terms_and_weights() {
        let pred = Tensor::zeros([2, 3, 1], (Kind::Float, Device::Cpu));
        let goal = Tensor::zeros([1, 1], (Kind::Float, Device::Cpu));
        // Candidate 0: actions 1, 1, 1 (no jerk); candidate 1: 0, 2, 0.
        let act = t(&[1.0, 1.0, 1.0, 0.0, 2.0, 0.0], &[2, 3, 1]);
        let cfg = EnergyConfig {
            action_weight: 0.5,
            smoothness_weight: 0.25,
            ..EnergyConfig::default()
        };
        close(
            &e(cfg, &pred, &goal, &act),
            &[0.5 * 3.0, 0.5 * 4.0 + 0.25 * 8.0],
        );
    }

    #[test]
    fn any_latent_rank_is_flattened() {
        // Tokens: latent [2, 3]; S = 2, H = 1.
        let pred = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([2, 1, 2, 3]);
        let goal = Tensor::zeros([1, 2, 3], (Kind::Float, Device::Cpu));
        let act = Tensor::zeros([2, 1, 4], (Kind::Float, Device::Cpu));
        let got = e(EnergyConfig::default(), &pred, &goal, &act);
        close(&got, &[15.0 / 6.0, 51.0 / 6.0]);
        let bad_goal = Tensor::zeros([1, 6], (Kind::Float, Device::Cpu));
        assert!(Energy::new(EnergyConfig::default())
            .unwrap()
            .compute(&pred, &bad_goal, &act)
            .is_err());
    }

    #[test]
    fn proprio_weight_scales_the_models_proprio_latent() {
        use zplan_models::jepa::{JepaConfig, JepaModel};
        let mut c = JepaConfig::new(4, 2);
        c.latent_dim = 5;
        c.proprio = vec![0, 1];
        c.proprio_latent_dim = 2;
        let with = JepaModel::new(c, Device::Cpu).unwrap();
        let without = JepaModel::new(JepaConfig::new(4, 2), Device::Cpu).unwrap();
        let cfg = |latent_weights: Vec<f32>, proprio_weight| EnergyConfig {
            latent_weights,
            proprio_weight,
            ..Default::default()
        };
        assert_eq!(cfg(vec![], None).weights_for(&with).unwrap(), None);
        assert_eq!(
            cfg(vec![], Some(0.1)).weights_for(&with).unwrap(),
            Some(vec![1.0, 1.0, 1.0, 0.1, 0.1])
        );
        assert_eq!(
            cfg(vec![2.0, 1.0, 1.0, 1.0, 0.5], Some(0.1))
                .weights_for(&with)
                .unwrap(),
            Some(vec![2.0, 1.0, 1.0, 0.1, 0.05])
        );
        let err = cfg(vec![], Some(0.1))
            .weights_for(&without)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("energy.proprio_weight") && err.contains("--proprio"),
            "{err}"
        );
        let err = cfg(vec![1.0; 3], None)
            .weights_for(&with)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("latent_weights") && err.contains("has 3"),
            "{err}"
        );
        assert!(cfg(vec![], Some(-1.0)).validate().is_err());

        // The prepared energy uses the resolved weights: only the proprio entries are damped.
        let mut energy = Energy::new(EnergyConfig {
            metric: Metric::L1,
            normalize: false,
            ..cfg(vec![], Some(0.0))
        })
        .unwrap();
        energy.prepare(&with, Device::Cpu).unwrap();
        let goal = Tensor::zeros([1, 5], (Kind::Float, Device::Cpu));
        let pred = t(
            &[1.0, 0.0, 0.0, 5.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            &[2, 1, 5],
        );
        let actions = Tensor::zeros([2, 1, 2], (Kind::Float, Device::Cpu));
        let v = Vec::<f32>::try_from(&energy.compute(&pred, &goal, &actions).unwrap()).unwrap();
        assert_eq!(v, vec![1.0, 0.0]);
    }
}
