//! The simulator-backed model against the real scenarios.

mod common;

use std::sync::Arc;
use tch::{Device, Kind, Tensor};
use zplan_models::{ModelError, SimModel, WorldModel};
use zplan_sim::{Env, ScenarioConfig};

fn scenarios() -> Vec<ScenarioConfig> {
    vec![
        ScenarioConfig::default(),
        ScenarioConfig::from(zplan_sim::PushConfig::default()),
        ScenarioConfig::from(zplan_sim::ReachConfig::default()),
    ]
}

/// Start states from different reset seeds, `[B, obs_dim]`.
fn starts(config: &ScenarioConfig, b: usize) -> Tensor {
    let mut env = config.build().unwrap();
    let mut rows = Vec::new();
    for seed in 0..b as u64 {
        env.reset(100 + seed).unwrap();
        rows.extend(env.state());
    }
    Tensor::from_slice(&rows).reshape([b as i64, -1])
}

fn actions(b: i64, h: i64, a: i64) -> Tensor {
    // Deterministic, varied, partly out of bounds (clipped by the simulator).
    (Tensor::arange(b * h * a, (Kind::Float, Device::Cpu)) * 0.37)
        .sin()
        .reshape([b, h, a])
        * 1.2
}

fn bits(t: &Tensor) -> Vec<u32> {
    Vec::<f32>::try_from(t.reshape([-1]))
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

#[test]
fn rollout_equals_stepping_a_copy() {
    for config in scenarios() {
        let model = SimModel::from_config(&config)
            .unwrap()
            .with_threads(2)
            .unwrap();
        let a_dim = model.action_dim();
        let z0 = model.encode_state(&starts(&config, 3)).unwrap();
        let acts = actions(3, 5, a_dim);
        let roll = model.rollout(&z0, &acts).unwrap();
        assert_eq!(roll.size(), vec![3, 5, model.latent_shape()[0]]);

        let mut base = config.build().unwrap();
        base.reset(0).unwrap();
        for b in 0..3 {
            let mut env = base.boxed_clone();
            env.set_state(&Vec::<f32>::try_from(z0.get(b)).unwrap())
                .unwrap();
            for t in 0..5 {
                env.step(&Vec::<f32>::try_from(acts.get(b).get(t)).unwrap())
                    .unwrap();
                let got = Vec::<f32>::try_from(roll.get(b).get(t)).unwrap();
                assert_eq!(got, env.state(), "{} row {b} step {t}", config.kind());
            }
        }
    }
}

#[test]
fn deterministic_whatever_the_thread_count() {
    for config in scenarios() {
        let z0 = starts(&config, 11);
        let mut want = None;
        for threads in [1, 2, 3, 8] {
            let model = SimModel::from_config(&config)
                .unwrap()
                .with_threads(threads)
                .unwrap();
            let acts = actions(11, 6, model.action_dim());
            for _ in 0..2 {
                // The second call reuses pooled copies that already stepped other rows.
                let got = bits(&model.rollout(&z0, &acts).unwrap());
                match &want {
                    None => want = Some(got),
                    Some(w) => assert_eq!(&got, w, "{} with {threads} threads", config.kind()),
                }
            }
        }
    }
}

#[test]
fn shared_by_threads() {
    let config = ScenarioConfig::default();
    let model: Arc<dyn WorldModel> = Arc::new(
        SimModel::from_config(&config)
            .unwrap()
            .with_threads(2)
            .unwrap(),
    );
    let z0 = starts(&config, 4);
    let acts = actions(4, 3, 2);
    let want = bits(&model.rollout(&z0, &acts).unwrap());
    std::thread::scope(|s| {
        for _ in 0..3 {
            let (model, z0, acts, want) = (
                model.clone(),
                z0.shallow_clone(),
                acts.shallow_clone(),
                want.clone(),
            );
            s.spawn(move || assert_eq!(bits(&model.rollout(&z0, &acts).unwrap()), want));
        }
    });
}

#[test]
fn encode_is_the_identity_and_shapes_are_checked() {
    let config = ScenarioConfig::default();
    let model = SimModel::from_config(&config).unwrap();
    assert_eq!(model.name(), "sim:two_rooms");
    assert_eq!(model.device(), Device::Cpu);
    assert!(!model.supports_grad());
    let obs = starts(&config, 2);
    assert_eq!(bits(&model.encode_state(&obs).unwrap()), bits(&obs));
    // An observed state that is not the whole true state cannot stand in for it.
    assert!(matches!(
        model.encode_state(&obs.narrow(1, 0, 3)),
        Err(ModelError::NoTrueState(_))
    ));
    // An attached true state of the wrong size is a shape error.
    let batch =
        zplan_models::ObsBatch::state(obs.shallow_clone()).with_true_state(obs.narrow(1, 0, 3));
    assert!(matches!(
        model.encode(&batch),
        Err(ModelError::ShapeMismatch { .. })
    ));
    let err = model.rollout(&obs, &actions(2, 3, 3)).unwrap_err();
    assert!(err.to_string().contains("input `actions`"), "{err}");
    let empty = model.rollout(&obs, &actions(2, 0, 2)).unwrap();
    assert_eq!(empty.size(), vec![2, 0, 4]);
    assert!(model.rollout_grad(&obs, &actions(2, 1, 2)).is_err());
    assert!(SimModel::from_config(&config)
        .unwrap()
        .with_threads(0)
        .is_err());
}

#[test]
fn simulator_errors_name_the_row_and_step() {
    let config = ScenarioConfig::default();
    let model = SimModel::from_config(&config)
        .unwrap()
        .with_threads(2)
        .unwrap();
    let obs = starts(&config, 3);
    let acts = actions(3, 4, 2);
    let _ = acts.get(2).get(1).get(0).fill_(f64::NAN);
    let err = model.rollout(&obs, &acts).unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, ModelError::Sim { .. }), "{err}");
    assert!(err.to_string().contains("step 1 of batch row 2"), "{err}");

    let bad_state = Tensor::full([1, 4], f64::INFINITY, (Kind::Float, Device::Cpu));
    let err = model.rollout(&bad_state, &actions(1, 1, 2)).unwrap_err();
    eprintln!("{err}");
    assert!(
        err.to_string().contains("set_state for batch row 0"),
        "{err}"
    );
}

#[test]
fn wraps_any_env() {
    let mut env: Box<dyn Env> = ScenarioConfig::default().build().unwrap();
    env.reset(5).unwrap();
    let obs = Tensor::from_slice(&env.state()).reshape([1, 4]);
    let model = SimModel::new(env);
    assert_eq!(
        model.rollout(&obs, &actions(1, 2, 2)).unwrap().size(),
        vec![1, 2, 4]
    );
}
