//! Candidate-parallel rollouts: the same predictions as one thread, errors that come back as
//! errors, and the workers surviving them.

mod common;

use std::sync::Arc;
use tch::{Device, Kind, Tensor};
use zplan_models::{ModelError, ParallelRollout, TorchScriptModel, WorldModel};

fn load(name: &str, obs: &[i64]) -> Arc<dyn WorldModel> {
    common::init();
    Arc::new(
        TorchScriptModel::load(
            common::models_dir().join(name),
            &zplan_models::state_shape_spec(obs).unwrap(),
            2,
            Device::Cpu,
        )
        .unwrap(),
    )
}

fn inputs(model: &dyn WorldModel, b: i64, h: i64) -> (Tensor, Tensor) {
    let field = &model.obs_spec().fields()[0];
    let obs_len = field.numel() as i64;
    let shape: Vec<i64> = std::iter::once(b)
        .chain(field.shape.iter().map(|&d| d as i64))
        .collect();
    let obs = Tensor::linspace(-1.0, 1.0, b * obs_len, (Kind::Float, Device::Cpu)).reshape(shape);
    let z0 = model.encode_state(&obs).unwrap();
    let actions =
        Tensor::linspace(-1.0, 1.0, b * h * 2, (Kind::Float, Device::Cpu)).reshape([b, h, 2]);
    (z0, actions)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn parallel_rollouts_match_one_thread_for_torchscript_and_native_models() {
    let jepa: Arc<dyn WorldModel> = Arc::new(
        zplan_models::JepaModel::new(zplan_models::JepaConfig::new(4, 2), Device::Cpu).unwrap(),
    );
    for (name, inner) in [
        ("vec.pt", load("vec.pt", &[4])),
        ("tok.pt", load("tok.pt", &[2, 3])),
        ("native JEPA", jepa),
    ] {
        let par = ParallelRollout::new(inner.clone(), 3)
            .unwrap()
            .with_min_rows(4);
        assert_eq!(par.threads(), 3);
        assert_eq!(par.latent_shape(), inner.latent_shape());
        // 50 candidates: groups of 17, 17 and 16.
        let (z0, actions) = inputs(inner.as_ref(), 50, 5);
        let want = inner.rollout(&z0, &actions).unwrap();
        let got = par.rollout(&z0, &actions).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-6, "{name}");
        // A start latent expanded to the batch (how the planners pass it) works the same.
        let one = z0.narrow(0, 0, 1);
        let mut shape = vec![50];
        shape.extend_from_slice(inner.latent_shape());
        let expanded = one.expand(shape.as_slice(), false);
        let want = inner.rollout(&expanded, &actions).unwrap();
        let got = par.rollout(&expanded, &actions).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-6, "{name} expanded");
    }
}

#[test]
fn small_batches_and_one_thread_go_straight_to_the_model() {
    let inner = load("vec.pt", &[4]);
    let (z0, actions) = inputs(inner.as_ref(), 20, 3);
    let want = Vec::<f32>::try_from(inner.rollout(&z0, &actions).unwrap().reshape([-1])).unwrap();
    // 20 candidates < 2 × the default 16 rows per group: not split.
    let par = ParallelRollout::new(inner.clone(), 4).unwrap();
    let got = Vec::<f32>::try_from(par.rollout(&z0, &actions).unwrap().reshape([-1])).unwrap();
    assert_eq!(got, want);
    let single = ParallelRollout::new(inner, 1).unwrap();
    let got = Vec::<f32>::try_from(single.rollout(&z0, &actions).unwrap().reshape([-1])).unwrap();
    assert_eq!(got, want);
}

#[test]
fn zero_threads_is_a_config_error() {
    let err = ParallelRollout::new(load("vec.pt", &[4]), 0).unwrap_err();
    assert!(matches!(err, ModelError::InvalidConfig(_)), "{err}");
    assert!(err.to_string().contains("at least 1"), "{err}");
}

#[test]
fn a_failing_group_is_an_error_and_the_workers_keep_serving() {
    let inner = load("vec.pt", &[4]);
    let par = ParallelRollout::new(inner.clone(), 2)
        .unwrap()
        .with_min_rows(2);
    let (z0, actions) = inputs(inner.as_ref(), 8, 3);
    // Three action entries where the model takes two: every group fails inside TorchScript.
    let bad = Tensor::zeros([8, 3, 3], (Kind::Float, Device::Cpu));
    assert!(par.rollout(&z0, &bad).is_err());
    let want = inner.rollout(&z0, &actions).unwrap();
    let got = par.rollout(&z0, &actions).unwrap();
    assert!(max_abs_diff(&got, &want) < 1e-6);
}

#[test]
fn shared_by_planner_threads() {
    let inner = load("vec.pt", &[4]);
    let par: Arc<dyn WorldModel> = Arc::new(
        ParallelRollout::new(inner.clone(), 2)
            .unwrap()
            .with_min_rows(2),
    );
    let (z0, actions) = inputs(inner.as_ref(), 12, 4);
    let want = Vec::<f32>::try_from(inner.rollout(&z0, &actions).unwrap().reshape([-1])).unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            let (par, z0, actions, want) = (
                par.clone(),
                z0.shallow_clone(),
                actions.shallow_clone(),
                want.clone(),
            );
            s.spawn(move || {
                let _guard = tch::no_grad_guard();
                for _ in 0..10 {
                    let got =
                        Vec::<f32>::try_from(par.rollout(&z0, &actions).unwrap().reshape([-1]))
                            .unwrap();
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() < 1e-6);
                    }
                }
            });
        }
    });
}
