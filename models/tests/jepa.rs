//! Native JEPA networks: construction, forward shapes, save/load round trip, bad files.

mod common;

use std::sync::Arc;
use tch::{Device, Kind, Tensor};
use zplan_models::{JepaConfig, JepaModel, JepaNets, ModelError, ObsNorm, WorldModel};

fn config() -> JepaConfig {
    JepaConfig {
        latent_dim: 16,
        enc_hidden: 32,
        pred_hidden: 32,
        inverse_hidden: 24,
        inverse_layers: 1,
        layer_norm: true,
        seed: 7,
        ..JepaConfig::new(6, 2)
    }
}

fn obs(b: i64) -> Tensor {
    Tensor::linspace(-2.0, 3.0, b * 6, (Kind::Float, Device::Cpu)).reshape([b, 6])
}

fn actions(b: i64, h: i64) -> Tensor {
    Tensor::linspace(-1.0, 1.0, b * h * 2, (Kind::Float, Device::Cpu))
        .reshape([b, h, 2])
        .sin()
}

fn bits(t: &Tensor) -> Vec<u32> {
    Vec::<f32>::try_from(t.reshape([-1]))
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

#[test]
fn forward_shapes() {
    common::init();
    let nets = JepaNets::new(config(), Device::Cpu).unwrap();
    let z = nets.encode(&obs(5)).unwrap();
    assert_eq!(z.size(), vec![5, 16]);
    assert_eq!(
        nets.predict(&z, &actions(5, 1).select(1, 0))
            .unwrap()
            .size(),
        vec![5, 16]
    );
    assert_eq!(
        nets.rollout(&z, &actions(5, 4)).unwrap().size(),
        vec![5, 4, 16]
    );
    assert_eq!(nets.inverse(&z, &z).unwrap().size(), vec![5, 2]);
    assert!(nets.num_parameters() > 0);

    let model = nets.into_model();
    assert_eq!(model.latent_shape(), &[16]);
    let z = model.encode_state(&obs(3)).unwrap();
    assert_eq!(
        model.rollout(&z, &actions(3, 7)).unwrap().size(),
        vec![3, 7, 16]
    );
    assert_eq!(
        model.rollout(&z, &actions(3, 0)).unwrap().size(),
        vec![3, 0, 16]
    );
}

#[test]
fn rollout_is_the_predictor_looped() {
    common::init();
    let model = JepaModel::new(config(), Device::Cpu).unwrap();
    let z0 = model.encode_state(&obs(4)).unwrap();
    let a = actions(4, 3);
    let roll = model.rollout(&z0, &a).unwrap();
    let mut z = z0;
    for t in 0..3 {
        z = model.predict(&z, &a.select(1, t)).unwrap();
        assert_eq!(bits(&z), bits(&roll.select(1, t)));
    }
}

#[test]
fn a_frameskip_predictor_steps_once_per_block_and_interpolates_inside() {
    common::init();
    let model = JepaModel::new(
        JepaConfig {
            frameskip: 2,
            ..config()
        },
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(model.frameskip(), 2);
    assert_eq!(
        JepaModel::new(config(), Device::Cpu).unwrap().frameskip(),
        1
    );
    let z0 = model.encode_state(&obs(4)).unwrap();
    // Five actions: two blocks of two (each stepped once with its mean action) and a last,
    // shorter block, interpolated half way towards its prediction.
    let a = actions(4, 5);
    let roll = model.rollout(&z0, &a).unwrap();
    assert_eq!(roll.size(), [4, 5, 16]);
    let mut z = z0;
    for (block, start) in [0i64, 2, 4].into_iter().enumerate() {
        let len = (5 - start).min(2);
        let mean = a.narrow(1, start, len).mean_dim(1, false, Kind::Float);
        let next = model.predict(&z, &mean).unwrap();
        let half = &z + (&next - &z) * 0.5;
        approx::assert_abs_diff_eq!(
            &*Vec::<f32>::try_from(roll.select(1, start).reshape([-1])).unwrap(),
            &*Vec::<f32>::try_from(half.reshape([-1])).unwrap(),
            epsilon = 1e-5
        );
        if len == 2 {
            // A block's end is the predictor's own output, bit for bit.
            assert_eq!(
                bits(&roll.select(1, start + 1)),
                bits(&next),
                "block {block}"
            );
        }
        z = next;
    }
    // Held actions read the same as the block's one action.
    let held = a.narrow(1, 0, 1).repeat([1, 2, 1]);
    let once = model.predict(&model.encode_state(&obs(4)).unwrap(), &a.select(1, 0));
    assert_eq!(
        bits(
            &model
                .rollout(&model.encode_state(&obs(4)).unwrap(), &held)
                .unwrap()
                .select(1, 1)
        ),
        bits(&once.unwrap())
    );
    // A frameskip of 0 is refused by name.
    let e = JepaModel::new(
        JepaConfig {
            frameskip: 0,
            ..config()
        },
        Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("frameskip"), "{e}");
}

#[test]
fn seeded_construction_is_reproducible() {
    common::init();
    let a = JepaNets::new(config(), Device::Cpu).unwrap();
    tch::manual_seed(12345); // the global RNG plays no part
    let b = JepaNets::new(config(), Device::Cpu).unwrap();
    assert_eq!(
        bits(&a.encode(&obs(2)).unwrap()),
        bits(&b.encode(&obs(2)).unwrap())
    );
    let c = JepaNets::new(
        JepaConfig {
            seed: 8,
            ..config()
        },
        Device::Cpu,
    )
    .unwrap();
    assert_ne!(
        bits(&a.encode(&obs(2)).unwrap()),
        bits(&c.encode(&obs(2)).unwrap())
    );
}

#[test]
fn save_load_round_trip_is_identical() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let mut nets = JepaNets::new(config(), Device::Cpu).unwrap();
    nets.set_obs_norm(ObsNorm {
        mean: vec![0.5; 6],
        std: vec![2.0, 1.0, 0.5, 3.0, 1.0, 1.0],
    })
    .unwrap();
    nets.scenario = Some(serde_json::json!({"kind": "reach"}));
    nets.training = serde_json::json!({"steps": 3});
    // Perturb the weights like a training step would, so the round trip checks real values.
    tch::no_grad(|| {
        for (_, mut v) in nets.vs.variables() {
            let _ = v.f_add_scalar_(0.01).unwrap();
        }
    });
    let model = nets.into_model();
    let path = dir.path().join("sub/reach");
    model.save(&path).unwrap();
    assert!(dir.path().join("sub/reach.safetensors").is_file());
    assert!(dir.path().join("sub/reach.json").is_file());

    for form in ["sub/reach", "sub/reach.safetensors", "sub/reach.json"] {
        let loaded = JepaModel::load(dir.path().join(form), Device::Cpu).unwrap();
        let (z1, z2) = (
            model.encode_state(&obs(3)).unwrap(),
            loaded.encode_state(&obs(3)).unwrap(),
        );
        assert_eq!(bits(&z1), bits(&z2));
        let (r1, r2) = (
            model.rollout(&z1, &actions(3, 5)).unwrap(),
            loaded.rollout(&z2, &actions(3, 5)).unwrap(),
        );
        assert_eq!(bits(&r1), bits(&r2));
        assert_eq!(loaded.config(), model.config());
        assert_eq!(
            loaded.scenario_json(),
            Some(serde_json::json!({"kind": "reach"}))
        );
        assert_eq!(loaded.training_info()["steps"], 3);
    }
    let nets = JepaModel::load(&path, Device::Cpu).unwrap().into_nets();
    assert_eq!(nets.obs_norm().std[3], 3.0);
    assert!(nets.inverse.is_some());
}

#[test]
fn loads_through_the_world_model_trait_and_serves_threads() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    JepaModel::new(config(), Device::Cpu)
        .unwrap()
        .save(dir.path().join("m"))
        .unwrap();
    let model: Arc<dyn WorldModel> =
        Arc::new(JepaModel::load(dir.path().join("m"), Device::Cpu).unwrap());
    assert_eq!(model.obs_spec().fields()[0].shape, [6]);
    assert_eq!(model.action_dim(), 2);
    let want = bits(
        &model
            .rollout(&model.encode_state(&obs(8)).unwrap(), &actions(8, 6))
            .unwrap(),
    );
    std::thread::scope(|s| {
        for _ in 0..4 {
            let model = model.clone();
            let want = want.clone();
            s.spawn(move || {
                for _ in 0..5 {
                    let z = model.encode_state(&obs(8)).unwrap();
                    assert_eq!(bits(&model.rollout(&z, &actions(8, 6)).unwrap()), want);
                }
            });
        }
    });
}

#[test]
fn rollout_grad_reaches_actions_not_weights() {
    common::init();
    let nets = JepaNets::new(config(), Device::Cpu).unwrap();
    let vars = nets.vs.trainable_variables();
    let model = nets.into_model();
    let z0 = model.encode_state(&obs(2)).unwrap();
    assert!(!z0.requires_grad());
    let a = actions(2, 3).set_requires_grad(true);
    assert!(!model.rollout(&z0, &a).unwrap().requires_grad());
    let loss = model
        .rollout_grad(&z0, &a)
        .unwrap()
        .square()
        .sum(Kind::Float);
    loss.backward();
    assert!(a.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(
        vars.iter().all(|v| !v.grad().defined()),
        "inference must not touch weight gradients"
    );
}

#[test]
fn training_and_ema_target() {
    common::init();
    let nets = JepaNets::new(config(), Device::Cpu).unwrap();
    let mut target = nets.target_encoder().unwrap();
    assert_eq!(
        bits(&target.encode(&obs(2)).unwrap()),
        bits(&nets.encode(&obs(2)).unwrap())
    );
    let mut opt =
        tch::nn::OptimizerConfig::build(tch::nn::Adam::default(), &nets.vs, 1e-2).unwrap();
    let (o, a) = (obs(16), actions(16, 2));
    let goal = target.encode(&o).unwrap();
    let first = nets
        .rollout(&nets.encode(&o).unwrap(), &a)
        .unwrap()
        .select(1, 1)
        .mse_loss(&goal, tch::Reduction::Mean);
    let mut last = first.double_value(&[]);
    for _ in 0..20 {
        let loss = nets
            .rollout(&nets.encode(&o).unwrap(), &a)
            .unwrap()
            .select(1, 1)
            .mse_loss(&goal, tch::Reduction::Mean);
        opt.backward_step(&loss);
        last = loss.double_value(&[]);
    }
    assert!(
        last < first.double_value(&[]),
        "{last} vs {}",
        first.double_value(&[])
    );
    let before = bits(&target.encode(&o).unwrap());
    target.ema_update(&nets, 0.9).unwrap();
    assert_ne!(bits(&target.encode(&o).unwrap()), before);
    assert!(target.ema_update(&nets, 1.5).is_err());
}

fn saved(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("m");
    JepaModel::new(config(), Device::Cpu)
        .unwrap()
        .save(&path)
        .unwrap();
    path
}

#[test]
fn bad_sidecars() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let sidecar = dir.path().join("m.json");
    let good = std::fs::read_to_string(&sidecar).unwrap();

    let err = JepaModel::load(dir.path().join("nothing"), Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::NotFound { .. }), "{err}");

    let cases: Vec<(&str, String)> = vec![
        ("not json", "{ nope".to_string()),
        ("format", good.replace("zplan-jepa", "other")),
        ("version", good.replace("\"version\": 1", "\"version\": 99")),
        (
            "latent_dim",
            good.replace("\"latent_dim\": 16", "\"latent_dim\": 0"),
        ),
        (
            "unknown field",
            good.replace("\"obs_dim\"", "\"obz_dim\": 1, \"obs_dim\""),
        ),
        (
            "std",
            good.replacen("\"std\": [\n      1.0", "\"std\": [\n      -1.0", 1),
        ),
    ];
    for (what, text) in cases {
        assert_ne!(text, good, "{what}: the test edit did not apply");
        std::fs::write(&sidecar, text).unwrap();
        let err = JepaModel::load(&path, Device::Cpu).unwrap_err();
        eprintln!("{what}: {err}");
        assert!(matches!(err, ModelError::Sidecar { .. }), "{what}: {err}");
    }
    // Sizes that disagree with the weights.
    std::fs::write(
        &sidecar,
        good.replace("\"enc_hidden\": 32", "\"enc_hidden\": 33"),
    )
    .unwrap();
    let err = JepaModel::load(&path, Device::Cpu).unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(err, ModelError::Weights { .. }) && err.to_string().contains("needs [33]"),
        "{err}"
    );
    // An architecture without the inverse head finds an unexpected tensor.
    std::fs::write(
        &sidecar,
        good.replace("\"inverse_layers\": 1", "\"inverse_layers\": 0"),
    )
    .unwrap();
    let err = JepaModel::load(&path, Device::Cpu).unwrap_err();
    assert!(
        err.to_string().contains("unexpected tensor `inverse."),
        "{err}"
    );
}

#[test]
fn bad_weights() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let weights = dir.path().join("m.safetensors");
    let sidecar = dir.path().join("m.json");

    std::fs::remove_file(&weights).unwrap();
    assert!(matches!(
        JepaModel::load(&path, Device::Cpu),
        Err(ModelError::NotFound { .. })
    ));

    // Any change to the file is caught by the sidecar's checksum first.
    std::fs::write(&weights, "not safetensors").unwrap();
    let err = JepaModel::load(&path, Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::Weights { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");

    // Without a recorded checksum (sidecars written by hand), the contents are checked.
    let mut side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sidecar).unwrap()).unwrap();
    side.as_object_mut().unwrap().remove("weights_sha256");
    std::fs::write(&sidecar, side.to_string()).unwrap();
    let err = JepaModel::load(&path, Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::Weights { .. }), "{err}");
    assert!(!err.to_string().contains("checksum"), "{err}");

    // A missing tensor, and a NaN.
    let t = Tensor::zeros([3], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(&[("encoder.l0.bias", &t)], &weights).unwrap();
    let err = JepaModel::load(&path, Device::Cpu).unwrap_err();
    assert!(
        err.to_string().contains("missing tensor") || err.to_string().contains("shape"),
        "{err}"
    );

    let nets = JepaNets::new(config(), Device::Cpu).unwrap();
    let mut vars: Vec<(String, Tensor)> = nets.vs.variables().into_iter().collect();
    for (name, t) in vars.iter_mut() {
        if name == "predictor.l0.weight" {
            *t = t.detach().fill(f64::NAN);
        }
    }
    Tensor::write_safetensors(&vars, &weights).unwrap();
    let err = JepaModel::load(&path, Device::Cpu).unwrap_err();
    assert!(
        err.to_string().contains("predictor.l0.weight") && err.to_string().contains("NaN"),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    common::init();
    let model = JepaModel::new(config(), Device::Cpu).unwrap();
    let err = model
        .encode_state(&Tensor::zeros([2, 5], (Kind::Float, Device::Cpu)))
        .unwrap_err();
    assert!(
        err.to_string().contains("[B=2, 6]") && err.to_string().contains("[2, 5]"),
        "{err}"
    );
    let z = model.encode_state(&obs(2)).unwrap();
    assert!(model.rollout(&z, &actions(3, 2)).is_err());
    assert!(model.rollout(&z.select(1, 0), &actions(2, 2)).is_err());
    let err = JepaNets::new(
        JepaConfig {
            latent_dim: -1,
            ..config()
        },
        Device::Cpu,
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::InvalidConfig(_)));
    let nets = JepaNets::new(
        JepaConfig {
            inverse_layers: 0,
            ..config()
        },
        Device::Cpu,
    )
    .unwrap();
    assert!(nets.inverse(&z, &z).is_err());
}
