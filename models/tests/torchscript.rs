//! TorchScript models: agreement with PyTorch, and a clear error for every kind of bad model.

mod common;

use std::sync::Arc;
use tch::{Device, Kind, Tensor};
use zplan_models::{ModelError, TorchScriptModel, WorldModel};

fn reference(name: &str) -> std::collections::HashMap<String, Tensor> {
    let path = common::models_dir().join(name);
    Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn load(name: &str, obs: &[i64], action: i64) -> zplan_models::Result<TorchScriptModel> {
    common::init();
    TorchScriptModel::load(
        common::models_dir().join(name),
        &zplan_models::state_shape_spec(obs)?,
        action,
        Device::Cpu,
    )
}

#[test]
fn vector_latent_with_rollout_matches_python() {
    let model = load("vec.pt", &[4], 2).unwrap();
    assert!(model.has_rollout());
    assert_eq!(model.latent_shape(), &[8]);
    let r = reference("vec_ref.safetensors");
    let z = model.encode_state(&r["obs"]).unwrap();
    assert!(max_abs_diff(&z, &r["z"]) < 1e-5);
    let pred = model.predict(&z, &r["actions"].select(1, 0)).unwrap();
    assert!(max_abs_diff(&pred, &r["pred"]) < 1e-5);
    let roll = model.rollout(&z, &r["actions"]).unwrap();
    assert_eq!(roll.size(), vec![5, 4, 8]);
    assert!(max_abs_diff(&roll, &r["rollout"]) < 1e-5);
}

#[test]
fn token_latent_without_rollout_loops_predict_and_matches_python() {
    let model = load("tok.pt", &[2, 3], 2).unwrap();
    assert!(!model.has_rollout());
    assert_eq!(model.latent_shape(), &[3, 5]);
    let r = reference("tok_ref.safetensors");
    let z = model.encode_state(&r["obs"]).unwrap();
    assert_eq!(z.size(), vec![5, 3, 5]);
    assert!(max_abs_diff(&z, &r["z"]) < 1e-5);
    let roll = model.rollout(&z, &r["actions"]).unwrap();
    assert_eq!(roll.size(), vec![5, 4, 3, 5]);
    assert!(max_abs_diff(&roll, &r["rollout"]) < 1e-5);
}

#[test]
fn inference_records_no_autograd_and_rollout_grad_does() {
    let model = load("vec.pt", &[4], 2).unwrap();
    let obs = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    let z = model.encode_state(&obs).unwrap();
    assert!(!z.requires_grad());
    let actions = Tensor::zeros([3, 2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    assert!(!model.rollout(&z, &actions).unwrap().requires_grad());
    assert!(model.supports_grad());
    let roll = model.rollout_grad(&z, &actions).unwrap();
    roll.sum(Kind::Float).backward();
    let g = actions.grad();
    assert_eq!(g.size(), vec![3, 2, 2]);
    assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn empty_horizon_and_bad_inputs() {
    let model = load("vec.pt", &[4], 2).unwrap();
    let z = model
        .encode_state(&Tensor::zeros([2, 4], (Kind::Float, Device::Cpu)))
        .unwrap();
    let empty = model
        .rollout(&z, &Tensor::zeros([2, 0, 2], (Kind::Float, Device::Cpu)))
        .unwrap();
    assert_eq!(empty.size(), vec![2, 0, 8]);
    let err = model
        .encode_state(&Tensor::zeros([2, 5], (Kind::Float, Device::Cpu)))
        .unwrap_err();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("[B=2, 4]"), "{err}");
    let err = model
        .rollout(&z, &Tensor::zeros([2, 3, 3], (Kind::Float, Device::Cpu)))
        .unwrap_err();
    assert!(
        err.to_string().contains("input `actions`") && err.to_string().contains("[2, 3, 3]"),
        "{err}"
    );
    // float64 inputs are converted, not rejected.
    assert!(model
        .encode_state(&Tensor::zeros([1, 4], (Kind::Double, Device::Cpu)))
        .is_ok());
}

#[test]
fn shared_across_threads() {
    let model: Arc<dyn WorldModel> = Arc::new(load("vec.pt", &[4], 2).unwrap());
    let obs = Tensor::linspace(-1.0, 1.0, 16, (Kind::Float, Device::Cpu)).reshape([4, 4]);
    let want = Vec::<f32>::try_from(model.encode_state(&obs).unwrap().reshape([-1])).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (model, obs, want) = (model.clone(), obs.shallow_clone(), want.clone());
            s.spawn(move || {
                for _ in 0..10 {
                    let got = Vec::<f32>::try_from(model.encode_state(&obs).unwrap().reshape([-1]))
                        .unwrap();
                    assert_eq!(got, want);
                }
            });
        }
    });
}

fn load_err(name: &str) -> ModelError {
    let err = load(name, &[4], 2).expect_err("loading should fail");
    eprintln!("{name}: {err}");
    err
}

#[test]
fn missing_file() {
    common::init();
    let err = TorchScriptModel::load(
        "/nonexistent/model.pt",
        &zplan_models::state_spec(4),
        2,
        Device::Cpu,
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/model.pt"), "{err}");
}

#[test]
fn text_and_pickled_files_are_not_torchscript() {
    for name in ["text.pt", "pickled.pt"] {
        let err = load_err(name);
        assert!(
            matches!(err, ModelError::NotTorchScript { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn missing_predict() {
    let err = load_err("NoPredict.pt");
    assert!(
        matches!(&err, ModelError::MissingMethod { method, .. } if *method == "predict"),
        "{err}"
    );
}

#[test]
fn predict_changes_the_latent_shape() {
    let err = load_err("BadPredictShape.pt");
    match &err {
        ModelError::ShapeMismatch {
            method,
            expected,
            actual,
            ..
        } => {
            assert_eq!(*method, "predict");
            assert_eq!(expected, "[B=2, 8]");
            assert_eq!(actual, "[2, 7]");
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn rollout_with_the_wrong_horizon() {
    let err = load_err("BadRollout.pt");
    assert!(
        matches!(&err, ModelError::ShapeMismatch { method, expected, actual, .. }
            if *method == "rollout" && expected == "[B=2, H=3, 8]" && actual == "[2, 4, 8]"),
        "{err}"
    );
}

#[test]
fn non_finite_probe_outputs() {
    let err = load_err("NanEncode.pt");
    assert!(
        matches!(&err, ModelError::NonFinite { method, .. } if *method == "encode"),
        "{err}"
    );
    let err = load_err("InfPredict.pt");
    assert!(
        matches!(&err, ModelError::NonFinite { method, .. } if *method == "predict"),
        "{err}"
    );
}

#[test]
fn float64_outputs_and_scalar_latents() {
    let err = load_err("Double.pt");
    assert!(matches!(err, ModelError::WrongKind { .. }), "{err}");
    let err = load_err("ScalarLatent.pt");
    assert!(
        matches!(&err, ModelError::ShapeMismatch { method, .. } if *method == "encode"),
        "{err}"
    );
}

#[test]
fn model_expecting_another_observation_size() {
    let err = load_err("WrongObs.pt");
    assert!(matches!(err, ModelError::Torch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("`encode`") && text.contains("[2, 4]"),
        "{text}"
    );
}

#[test]
fn invalid_sizes_are_rejected_before_loading() {
    common::init();
    let path = common::models_dir().join("vec.pt");
    assert!(matches!(
        zplan_models::state_shape_spec(&[]),
        Err(ModelError::InvalidConfig(_))
    ));
    assert!(matches!(
        TorchScriptModel::load(&path, &zplan_models::state_spec(4), 0, Device::Cpu),
        Err(ModelError::InvalidConfig(_))
    ));
}
