//! Property tests: bounds, std floors, monotone best energy, for every planner.

mod common;

use common::{latent, LinearModel};
use proptest::prelude::*;
use zplan_planner::*;

fn arb_bounds(dim: usize) -> impl Strategy<Value = ActionBounds> {
    prop::collection::vec((-3.0f32..1.0, 0.05f32..4.0), dim).prop_map(|v| {
        ActionBounds::new(
            v.iter().map(|p| p.0).collect(),
            v.iter().map(|p| p.0 + p.1).collect(),
        )
        .unwrap()
    })
}

fn arb_energy() -> impl Strategy<Value = EnergyConfig> {
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
            (0.5f32..1.0).prop_map(Reduction::Discounted)
        ],
        0.0f32..0.1,
        0.0f32..0.1,
    )
        .prop_map(|(metric, reduction, aw, sw)| EnergyConfig {
            metric,
            reduction,
            action_weight: aw,
            smoothness_weight: sw,
            ..EnergyConfig::default()
        })
}

#[derive(Debug, Clone)]
struct Case {
    kind: usize,
    samples: usize,
    elites: usize,
    iterations: u32,
    horizon: usize,
    min_std: f32,
    seed: u64,
    z0: Vec<f32>,
    goal: Vec<f32>,
    mean_mode: bool,
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        0usize..4,
        4usize..48,
        1usize..4,
        1u32..5,
        1usize..6,
        0.01f32..0.5,
        any::<u64>(),
        prop::collection::vec(-2.0f32..2.0, 2),
        prop::collection::vec(-2.0f32..2.0, 2),
        any::<bool>(),
    )
        .prop_map(
            |(kind, samples, elites, iterations, horizon, min_std, seed, z0, goal, mean_mode)| {
                Case {
                    kind,
                    samples,
                    elites,
                    iterations,
                    horizon,
                    min_std,
                    seed,
                    z0,
                    goal,
                    mean_mode,
                }
            },
        )
}

fn config(c: &Case) -> PlannerConfig {
    let rm = if c.mean_mode {
        ReturnMode::Mean
    } else {
        ReturnMode::Best
    };
    match c.kind {
        0 => PlannerConfig::Cem(CemConfig {
            samples: c.samples,
            elites: c.elites,
            iterations: c.iterations,
            horizon: c.horizon,
            min_std: c.min_std,
            return_mode: rm,
            ..CemConfig::default()
        }),
        1 => PlannerConfig::ICem(ICemConfig {
            samples: c.samples,
            elites: c.elites,
            iterations: c.iterations,
            horizon: c.horizon,
            min_std: c.min_std,
            return_mode: rm,
            ..ICemConfig::default()
        }),
        2 => PlannerConfig::Mppi(MppiConfig {
            samples: c.samples,
            elites: c.elites,
            iterations: c.iterations,
            horizon: c.horizon,
            min_std: c.min_std,
            return_mode: rm,
            ..MppiConfig::default()
        }),
        _ => PlannerConfig::Gradient(GradientConfig {
            steps: c.iterations * 3,
            horizon: c.horizon,
            samples: c.elites,
            lr: 0.2,
            ..GradientConfig::default()
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn plans_respect_bounds_and_best_energy_never_increases(
        case in arb_case(),
        bounds in arb_bounds(2),
        energy in arb_energy(),
    ) {
        let model = LinearModel::reference();
        let cfg = config(&case);
        let mut p = cfg.build(bounds.clone(), energy, case.seed).unwrap();
        let mut warm: Option<Plan> = None;
        for round in 0..2 {
            let out = p
                .plan(&model, &latent(&case.z0), &latent(&case.goal), warm.as_ref(), &Budget::unlimited())
                .unwrap();
            prop_assert!(bounds.contains(out.plan.actions()), "round {round}: {:?} outside {:?}", out.plan.actions(), bounds);
            prop_assert_eq!(out.plan.actions().len(), case.horizon * 2);
            prop_assert!(out.energy_trace.windows(2).all(|w| w[1] <= w[0]), "trace {:?}", out.energy_trace);
            prop_assert_eq!(out.energy_trace.last().copied(), Some(out.best_energy));
            prop_assert!(out.rollouts > 0);
            warm = Some(out.plan.shifted(1));
        }
    }

    #[test]
    fn std_never_leaves_its_band(case in arb_case(), bounds in arb_bounds(2)) {
        let model = LinearModel::reference();
        let (lo, hi) = (case.min_std, 2.0);
        let check = |std: &[f32]| std.iter().all(|&s| s >= lo && s <= hi);
        let z0 = latent(&case.z0);
        let goal = latent(&case.goal);
        let budget = Budget::iterations(case.iterations);
        let mut cem = Cem::new(
            CemConfig { samples: case.samples, elites: case.elites, horizon: case.horizon, min_std: lo, max_std: hi, ..CemConfig::default() },
            bounds.clone(), EnergyConfig::default(), case.seed).unwrap();
        cem.plan(&model, &z0, &goal, None, &budget).unwrap();
        prop_assert!(check(cem.std()), "cem std {:?}", cem.std());
        let mut icem = ICem::new(
            ICemConfig { samples: case.samples, elites: case.elites, horizon: case.horizon, min_std: lo, max_std: hi, ..ICemConfig::default() },
            bounds.clone(), EnergyConfig::default(), case.seed).unwrap();
        icem.plan(&model, &z0, &goal, None, &budget).unwrap();
        prop_assert!(check(icem.std()), "icem std {:?}", icem.std());
        let mut mppi = Mppi::new(
            MppiConfig { samples: case.samples, elites: case.elites, horizon: case.horizon, min_std: lo, max_std: hi, ..MppiConfig::default() },
            bounds, EnergyConfig::default(), case.seed).unwrap();
        mppi.plan(&model, &z0, &goal, None, &budget).unwrap();
        prop_assert!(check(mppi.std()), "mppi std {:?}", mppi.std());
    }

    /// The band holds from construction on, through plans and resets, even when `init_std`
    /// lies below `min_std` (it is clipped, never stored as given).
    #[test]
    fn std_band_holds_before_planning_and_after_reset(
        case in arb_case(),
        init_std in 0.001f32..2.0,
        reseed in any::<u64>(),
    ) {
        let model = LinearModel::reference();
        let (lo, hi) = (case.min_std, 2.0);
        let check = |std: &[f32]| !std.is_empty() && std.iter().all(|&s| s >= lo && s <= hi);
        let bounds = ActionBounds::symmetric(2, 1.0).unwrap();
        let budget = Budget::iterations(case.iterations);
        let (z0, goal) = (latent(&case.z0), latent(&case.goal));
        let mut cem = Cem::new(
            CemConfig { samples: case.samples, elites: case.elites, horizon: case.horizon, init_std, min_std: lo, max_std: hi, ..CemConfig::default() },
            bounds.clone(), EnergyConfig::default(), case.seed).unwrap();
        let mut icem = ICem::new(
            ICemConfig { samples: case.samples, elites: case.elites, horizon: case.horizon, init_std, min_std: lo, max_std: hi, ..ICemConfig::default() },
            bounds.clone(), EnergyConfig::default(), case.seed).unwrap();
        let mut mppi = Mppi::new(
            MppiConfig { samples: case.samples, elites: case.elites, horizon: case.horizon, noise_std: init_std, min_std: lo, max_std: hi, ..MppiConfig::default() },
            bounds, EnergyConfig::default(), case.seed).unwrap();
        prop_assert!(check(cem.std()) && check(icem.std()) && check(mppi.std()));
        cem.plan(&model, &z0, &goal, None, &budget).unwrap();
        icem.plan(&model, &z0, &goal, None, &budget).unwrap();
        mppi.plan(&model, &z0, &goal, None, &budget).unwrap();
        cem.reseed(reseed);
        icem.reseed(reseed);
        mppi.reseed(reseed);
        prop_assert!(check(cem.std()), "cem std {:?}", cem.std());
        prop_assert!(check(icem.std()), "icem std {:?}", icem.std());
        prop_assert!(check(mppi.std()), "mppi std {:?}", mppi.std());
    }

    #[test]
    fn shifted_plans_keep_length_and_tail(h in 1usize..8, a in 1usize..4, k in 0usize..10, seed in any::<u64>()) {
        let vals: Vec<f32> = (0..h * a).map(|i| (i as f32 + seed as f32 % 7.0).sin()).collect();
        let p = Plan::new(vals.clone(), h, a).unwrap();
        let s = p.shifted(k);
        prop_assert_eq!(s.actions().len(), h * a);
        prop_assert_eq!(s.shift(), k.min(h));
        let kk = k.min(h);
        prop_assert_eq!(&s.actions()[..(h - kk) * a], &vals[kk * a..]);
        for t in h - kk..h {
            prop_assert_eq!(s.action(t), p.action(h - 1));
        }
    }
}
