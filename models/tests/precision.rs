//! bf16 precision: native JEPA (the shipped reach model) and TorchScript models compute in
//! bfloat16 but hand float32 to planners, close to their float32 results.

mod common;

use std::sync::Arc;
use tch::{Device, Kind, Tensor};
use zplan_models::{
    compare_precision, load_model_with, LoadOptions, ModelError, ModelSpec, ObsBatch,
    ParallelRollout, Precision, TorchScriptModel, WorldModel,
};
use zplan_sim::ScenarioConfig;

fn reach() -> ScenarioConfig {
    ScenarioConfig::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/reach.ron"),
    )
    .unwrap()
}

fn reach_model(precision: Precision) -> Arc<dyn WorldModel> {
    common::init();
    let spec = ModelSpec::Jepa(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("trained/reach.safetensors")
            .to_string_lossy()
            .into_owned(),
    );
    let opts = LoadOptions {
        device: zplan_models::DeviceChoice::Cpu,
        precision,
        sim_threads: 1,
    };
    load_model_with(&spec, &reach(), &opts).unwrap()
}

/// Start observations of `n` reach episodes.
fn reach_observations(model: &dyn WorldModel, n: u64) -> ObsBatch {
    let mut env = reach().build().unwrap();
    let obs: Vec<_> = (0..n)
        .map(|seed| {
            env.reset(1000 + seed).unwrap();
            env.observe()
        })
        .collect();
    let refs: Vec<_> = obs.iter().collect();
    ObsBatch::from_observations(model.obs_spec(), &refs, Device::Cpu).unwrap()
}

fn actions(b: i64, h: i64, a: i64) -> Tensor {
    tch::manual_seed(7);
    Tensor::rand([b, h, a], (Kind::Float, Device::Cpu)) * 2.0 - 1.0
}

/// `max |a - b| / max |b|`.
fn rel(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
}

#[test]
fn jepa_bf16_stays_within_bf16_accuracy_of_fp32_and_hands_out_float32() {
    let fp32 = reach_model(Precision::Fp32);
    let bf16 = reach_model(Precision::Bf16);
    assert_eq!(fp32.precision(), Precision::Fp32);
    assert_eq!(bf16.precision(), Precision::Bf16);
    let obs = reach_observations(bf16.as_ref(), 64);
    let acts = actions(64, 15, bf16.action_dim());
    let _guard = tch::no_grad_guard();

    let z32 = fp32.encode(&obs).unwrap();
    let z16 = bf16.encode(&obs).unwrap();
    assert_eq!(
        z16.kind(),
        Kind::Float,
        "latents leave the model as float32"
    );
    // bf16 keeps 8 mantissa bits (relative rounding 2^-9 = 0.2 %) per operation.
    let latent_err = rel(&z16, &z32);
    assert!(
        latent_err > 0.0 && latent_err < 0.02,
        "latents: {latent_err}"
    );

    let p32 = fp32.rollout(&z32, &acts).unwrap();
    let p16 = bf16.rollout(&z16, &acts).unwrap();
    assert_eq!(p16.kind(), Kind::Float);
    assert_eq!(p16.size(), [64, 15, 32]);
    let rollout_err = rel(&p16, &p32);
    assert!(rollout_err < 0.05, "rollout over 15 steps: {rollout_err}");

    // The planner's in-place host read sees float32 memory with the same values.
    let owned = bf16.rollout_owned(&z16, &acts).unwrap();
    assert!(owned.is_exclusive());
    let host = owned
        .host_f32()
        .expect("an exclusive float32 CPU result")
        .to_vec();
    assert_eq!(host, Vec::<f32>::try_from(p16.reshape([-1])).unwrap());

    // The report `zplan model inspect --precision bf16` prints.
    let diff = compare_precision(fp32.as_ref(), bf16.as_ref(), &obs, 15).unwrap();
    assert_eq!(diff.precision, Precision::Bf16);
    assert!((diff.latent_rel - latent_err).abs() < 1e-9, "{diff}");
    assert!(diff.rollout_rel < 0.05, "{diff}");
    assert!(diff.to_string().starts_with("bf16 vs fp32:"), "{diff}");
    let same = compare_precision(fp32.as_ref(), fp32.as_ref(), &obs, 3).unwrap();
    assert_eq!((same.latent_max_abs, same.rollout_max_abs), (0.0, 0.0));
}

#[test]
fn jepa_bf16_gradients_reach_float32_actions() {
    let fp32 = reach_model(Precision::Fp32);
    let bf16 = reach_model(Precision::Bf16);
    assert!(bf16.supports_grad());
    let obs = reach_observations(bf16.as_ref(), 8);
    let grad = |m: &dyn WorldModel| {
        let z = tch::no_grad(|| m.encode(&obs)).unwrap();
        let leaf = actions(8, 6, m.action_dim()).set_requires_grad(true);
        let pred = m.rollout_grad(&z, &leaf).unwrap();
        assert_eq!(pred.kind(), Kind::Float);
        pred.square().sum(Kind::Float).backward();
        leaf.grad()
    };
    let (g32, g16) = (grad(fp32.as_ref()), grad(bf16.as_ref()));
    assert_eq!(g16.kind(), Kind::Float);
    assert!(bool::try_from(g16.isfinite().all()).unwrap());
    let cosine = (&g16 * &g32).sum(Kind::Double).double_value(&[])
        / (g16.norm().double_value(&[]) * g32.norm().double_value(&[]));
    assert!(
        cosine > 0.99,
        "bf16 and fp32 gradients point apart: cosine {cosine}"
    );
}

#[test]
fn wrappers_report_the_inner_precision() {
    let bf16 = reach_model(Precision::Bf16);
    let wrapped = ParallelRollout::new(bf16, 2).unwrap();
    assert_eq!(wrapped.precision(), Precision::Bf16);
}

#[test]
fn sim_has_no_weights_to_cast() {
    let opts = LoadOptions {
        precision: Precision::Bf16,
        ..LoadOptions::default()
    };
    let err = load_model_with(&ModelSpec::Sim, &reach(), &opts).unwrap_err();
    assert!(matches!(err, ModelError::Precision(_)), "{err}");
    assert!(err.to_string().contains("`Sim`"), "{err}");
    let fp32 = LoadOptions {
        sim_threads: 1,
        ..LoadOptions::default()
    };
    assert!(load_model_with(&ModelSpec::Sim, &reach(), &fp32).is_ok());
}

fn torchscript(
    name: &str,
    obs: &[i64],
    precision: Precision,
) -> zplan_models::Result<TorchScriptModel> {
    common::init();
    TorchScriptModel::load_with_precision(
        common::models_dir().join(name),
        &zplan_models::state_shape_spec(obs)?,
        2,
        Device::Cpu,
        precision,
    )
}

#[test]
fn torchscript_bf16_casts_the_module_and_agrees_with_fp32() {
    // `vec.pt` has a fused `rollout`; `tok.pt` (token latents) loops `predict`.
    for (name, obs) in [("vec.pt", &[4i64][..]), ("tok.pt", &[2, 3][..])] {
        let fp32 = torchscript(name, obs, Precision::Fp32).unwrap();
        let bf16 = torchscript(name, obs, Precision::Bf16).unwrap();
        assert_eq!(bf16.precision(), Precision::Bf16);
        assert_eq!(bf16.latent_shape(), fp32.latent_shape());
        let mut size = vec![16i64];
        size.extend_from_slice(obs);
        tch::manual_seed(3);
        let x = Tensor::rand(size.as_slice(), (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let (z32, z16) = (
            fp32.encode_state(&x).unwrap(),
            bf16.encode_state(&x).unwrap(),
        );
        assert_eq!(z16.kind(), Kind::Float, "{name}");
        assert!(
            rel(&z16, &z32) < 0.02,
            "{name} latents: {}",
            rel(&z16, &z32)
        );
        let acts = actions(16, 5, 2);
        let (p32, p16) = (
            fp32.rollout(&z32, &acts).unwrap(),
            bf16.rollout(&z16, &acts).unwrap(),
        );
        assert_eq!(p16.kind(), Kind::Float, "{name}");
        assert!(
            rel(&p16, &p32) < 0.05,
            "{name} rollout: {}",
            rel(&p16, &p32)
        );
        let step = bf16.predict(&z16, &acts.select(1, 0)).unwrap();
        assert_eq!(step.kind(), Kind::Float);
        // Gradients flow through the bf16 module back to float32 actions.
        let leaf = acts.detach().set_requires_grad(true);
        let pred = bf16.rollout_grad(&z16, &leaf).unwrap();
        pred.sum(Kind::Float).backward();
        let g = leaf.grad();
        assert_eq!(g.kind(), Kind::Float);
        assert!(g.abs().sum(Kind::Double).double_value(&[]) > 0.0, "{name}");
    }
}

#[test]
fn torchscript_that_cannot_compute_in_bf16_is_refused_at_load_with_a_hint() {
    assert!(torchscript("Float32Constant.pt", &[4], Precision::Fp32).is_ok());
    let err = torchscript("Float32Constant.pt", &[4], Precision::Bf16).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ModelError::Torch { .. }), "{text}");
    assert!(
        text.contains("`predict` failed") && text.contains("precision bf16"),
        "{text}"
    );
}

#[test]
fn pixel_jepa_computes_its_cnn_in_bf16() {
    common::init();
    let config = zplan_models::JepaConfig {
        latent_dim: 12,
        pred_hidden: 16,
        ..zplan_models::JepaConfig::pixels(3, 32, 32, 2, 2)
    };
    let fp32 = zplan_models::JepaModel::new(config.clone(), Device::Cpu).unwrap();
    let bf16 = zplan_models::JepaModel::new(config, Device::Cpu)
        .unwrap()
        .with_precision(Precision::Bf16)
        .unwrap();
    let images = Tensor::arange(4 * 3 * 32 * 32, (Kind::Int64, Device::Cpu))
        .remainder(251)
        .to_kind(Kind::Uint8)
        .reshape([4, 3, 32, 32]);
    let proprio = Tensor::linspace(-1.0, 1.0, 8, (Kind::Float, Device::Cpu)).reshape([4, 2]);
    let obs = ObsBatch::single("image", images)
        .with("proprio", proprio)
        .unwrap();
    let (z32, z16) = (fp32.encode(&obs).unwrap(), bf16.encode(&obs).unwrap());
    assert_eq!(z16.kind(), Kind::Float);
    assert!(rel(&z16, &z32) < 0.03, "{}", rel(&z16, &z32));
    // The float32 networks are kept: saving a bf16 model writes the float32 weights.
    let dir = tempfile::tempdir().unwrap();
    bf16.save(dir.path().join("m")).unwrap();
    let back = zplan_models::JepaModel::load(dir.path().join("m"), Device::Cpu).unwrap();
    assert_eq!(back.precision(), Precision::Fp32);
    assert_eq!(
        (back.encode(&obs).unwrap() - &z32)
            .abs()
            .max()
            .double_value(&[]),
        0.0
    );
}
