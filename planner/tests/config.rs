//! Config parsing and validation: bad values are rejected at load time, naming the field.

use zplan_planner::*;

fn err(ron: &str) -> String {
    PlannerConfig::from_ron_str(ron).unwrap_err().to_string()
}

#[test]
fn design_syntax_parses_with_defaults_for_omitted_fields() {
    let cfg = PlannerConfig::from_ron_str(
        "Cem(samples: 300, elites: 30, iterations: 10, horizon: 8, init_std: 1.0, min_std: 0.05, momentum: 0.1)",
    )
    .unwrap();
    assert_eq!(cfg, PlannerConfig::Cem(CemConfig::default()));
    assert_eq!(cfg.horizon(), 8);
    assert_eq!(
        PlannerConfig::from_ron_str("Mppi(temperature: 0.25)").unwrap(),
        PlannerConfig::Mppi(MppiConfig {
            temperature: 0.25,
            ..MppiConfig::default()
        })
    );
    assert_eq!(
        PlannerConfig::from_ron_str("ICem()").unwrap(),
        PlannerConfig::ICem(ICemConfig::default())
    );
    let g = PlannerConfig::from_ron_str(
        "Gradient(steps: 20, horizon: 5, init_cem: Some((samples: 64, elites: 8, horizon: 5)))",
    )
    .unwrap();
    match g {
        PlannerConfig::Gradient(g) => assert_eq!(g.init_cem.unwrap().samples, 64),
        other => panic!("{other:?}"),
    }
    // Also as a field of a larger RON document, with or without the unwrap extension.
    #[derive(serde::Deserialize)]
    struct Suite {
        planner: PlannerConfig,
        energy: EnergyConfig,
        mpc: MpcConfig,
    }
    for prefix in ["", "#![enable(unwrap_variant_newtypes)]\n"] {
        let s: Suite = ron::from_str(&format!(
            "{prefix}(planner: Cem(samples: 100, elites: 10), energy: (metric: L2, reduction: Discounted(0.9)), mpc: (replan_every: 4, action_block: 2))"
        ))
        .unwrap();
        assert_eq!(s.planner.horizon(), 8);
        assert_eq!(s.energy.reduction, Reduction::Discounted(0.9));
        assert_eq!(s.mpc.replan_every, 4);
    }
}

#[test]
fn configs_round_trip_through_ron_and_json() {
    let all = [
        PlannerConfig::Cem(CemConfig {
            samples: 77,
            return_mode: ReturnMode::Best,
            ..CemConfig::default()
        }),
        PlannerConfig::ICem(ICemConfig {
            beta: 2.5,
            ..ICemConfig::default()
        }),
        PlannerConfig::Mppi(MppiConfig {
            shift: 3,
            ..MppiConfig::default()
        }),
        PlannerConfig::Gradient(GradientConfig {
            init_cem: Some(CemConfig::default()),
            ..GradientConfig::default()
        }),
    ];
    for cfg in all {
        let ron_text = cfg.to_ron_string();
        assert_eq!(
            PlannerConfig::from_ron_str(&ron_text).unwrap(),
            cfg,
            "{ron_text}"
        );
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(
            serde_json::from_str::<PlannerConfig>(&json).unwrap(),
            cfg,
            "{json}"
        );
    }
    let e = EnergyConfig {
        latent_weights: vec![1.0, 0.5],
        ..EnergyConfig::default()
    };
    let back: EnergyConfig = ron::from_str(&ron::to_string(&e).unwrap()).unwrap();
    assert_eq!(back, e);
}

#[test]
fn invalid_values_name_the_field() {
    assert_eq!(
        err("Cem(samples: 30, elites: 40)"),
        "cem.elites: 40 must be <= samples (30)"
    );
    assert!(err("Cem(horizon: 0)").starts_with("cem.horizon: 0 must be >= 1"));
    assert!(err("Cem(min_std: 0.5, max_std: 0.1)")
        .starts_with("cem.min_std: 0.5 must be <= max_std (0.1)"));
    assert!(err("Cem(momentum: 1.0)").starts_with("cem.momentum"));
    assert!(err("Mppi(temperature: -1.0)").starts_with("mppi.temperature: -1 must be"));
    assert!(err("Mppi(temperature: 0.0)").starts_with("mppi.temperature"));
    assert!(err("ICem(keep_elites: 1.5)").starts_with("icem.keep_elites"));
    assert!(err("ICem(decay: 0.5)").starts_with("icem.decay"));
    assert!(err("ICem(elites: 400)").starts_with("icem.elites: 400 must be <= samples (300)"));
    assert!(err("Gradient(lr: 0.0)").starts_with("gradient.lr"));
    assert!(
        err("Gradient(horizon: 5, init_cem: Some((horizon: 5, elites: 500)))")
            .starts_with("gradient.init_cem.elites")
    );
    assert!(err("Gradient(horizon: 5, init_cem: Some((horizon: 6)))")
        .starts_with("gradient.init_cem.horizon"));
}

#[test]
fn nan_fails_every_range_check() {
    for ron in [
        "Cem(init_std: NaN)",
        "Cem(min_std: NaN)",
        "Cem(max_std: NaN)",
        "Cem(momentum: NaN)",
        "ICem(beta: NaN)",
        "ICem(decay: NaN)",
        "Mppi(temperature: NaN)",
        "Mppi(noise_std: NaN)",
        "Gradient(lr: NaN)",
        "Gradient(beta1: NaN)",
    ] {
        let msg = err(ron);
        assert!(msg.contains("NaN"), "{ron} -> {msg}");
    }
    let e = EnergyConfig {
        action_weight: f32::NAN,
        ..EnergyConfig::default()
    };
    assert!(e
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("energy.action_weight: NaN"));
    let e = EnergyConfig {
        reduction: Reduction::Discounted(f32::NAN),
        ..EnergyConfig::default()
    };
    assert!(Energy::new(e).is_err());
    let m = MpcConfig {
        deadline_ms: Some(f64::NAN),
        ..MpcConfig::default()
    };
    assert!(m
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("mpc.deadline_ms"));
}

#[test]
fn unknown_fields_and_variants_are_rejected() {
    assert!(err("Cem(sample: 300)").contains("sample"));
    assert!(err("Cma(samples: 300)").contains("Cma"));
    assert!(ron::from_str::<EnergyConfig>("(metrc: L1)").is_err());
    assert!(ron::from_str::<MpcConfig>("(replan: 1)").is_err());
}

#[test]
fn bounds_and_mpc_checks() {
    assert!(ActionBounds::new(vec![0.0], vec![0.0])
        .unwrap_err()
        .to_string()
        .starts_with("bounds.[0]"));
    assert!(ActionBounds::new(vec![f32::NAN], vec![1.0]).is_err());
    assert!(ActionBounds::new(vec![0.0, 1.0], vec![1.0])
        .unwrap_err()
        .to_string()
        .starts_with("bounds.high"));
    assert!(ActionBounds::new(vec![], vec![]).is_err());
    let m = MpcConfig {
        replan_every: 3,
        action_block: 2,
        ..MpcConfig::default()
    };
    assert_eq!(
        m.validate().unwrap_err().to_string(),
        "mpc.replan_every: 3 must be a multiple of action_block (2)"
    );
}

#[test]
fn build_validates_too() {
    let bad = PlannerConfig::Cem(CemConfig {
        elites: 0,
        ..CemConfig::default()
    });
    let b = ActionBounds::symmetric(2, 1.0).unwrap();
    assert!(bad.build(b.clone(), EnergyConfig::default(), 0).is_err());
    let bad_energy = EnergyConfig {
        distance_weight: -1.0,
        ..EnergyConfig::default()
    };
    assert!(PlannerConfig::default().build(b, bad_energy, 0).is_err());
}
