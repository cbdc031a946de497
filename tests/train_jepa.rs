//! Data collection and JEPA training on real simulator data (real Rapier, real libtorch).

use std::path::Path;
use tch::{Device, Tensor};
use zplan::collect::{collect, CollectConfig};
use zplan::train::{load_dataset, train, TrainConfig};
use zplan_models::{JepaModel, WorldModel};
use zplan_sim::ScenarioConfig;

mod common;

fn scenario(name: &str) -> ScenarioConfig {
    ScenarioConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(name),
    )
    .unwrap()
}

fn small_collect(episodes: u64, steps: u32) -> CollectConfig {
    common::random_collect(episodes, steps, 5, None)
}

fn tiny_train() -> TrainConfig {
    TrainConfig {
        latent_dim: 8,
        hidden: 32,
        layers: 1,
        enc_layers: 0,
        rollout_steps: 3,
        batch: 64,
        steps: 300,
        eval_every: 50,
        ..TrainConfig::default()
    }
}

#[test]
fn collection_is_deterministic_and_uses_collection_seeds() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("two_rooms.ron");
    let a = collect(&sc, &small_collect(6, 12), &tmp.path().join("a"), false).unwrap();
    collect(&sc, &small_collect(6, 12), &tmp.path().join("b"), false).unwrap();
    assert_eq!(a.episodes, 6);
    let da = load_dataset(&tmp.path().join("a")).unwrap();
    let db = load_dataset(&tmp.path().join("b")).unwrap();
    assert_eq!(da.obs.size(), vec![6, 13, 2]); // two_rooms observes [x, y]
    assert_eq!(da.actions.size(), vec![6, 12, 2]);
    assert!(da.obs.equal(&db.obs) && da.actions.equal(&db.actions));
    assert_eq!(a.chunks.len(), 1);
    let seeds = Tensor::read_safetensors(tmp.path().join("a").join(&a.chunks[0].file))
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "seeds")
        .unwrap()
        .1;
    let max = seeds.max().int64_value(&[]) as u64;
    assert!(zplan::seeds::COLLECTION.contains(&max));
    assert!(!zplan::seeds::EVALUATION.contains(&max));
}

#[test]
fn training_lowers_validation_loss_without_collapse_and_round_trips() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("reach.ron");
    collect(&sc, &small_collect(40, 30), &tmp.path().join("data"), false).unwrap();
    let data = load_dataset(&tmp.path().join("data")).unwrap();
    let out = tmp.path().join("m.safetensors");
    let report = train(&data, &tiny_train(), &out, Device::Cpu, false).unwrap();
    assert!(
        report.best_val_loss < 0.7 * report.initial_val_loss,
        "validation loss {} -> {}",
        report.initial_val_loss,
        report.best_val_loss
    );
    assert!(
        report.health.min_std > 0.1,
        "latent collapsed: {:?}",
        report.health.per_dim_std
    );
    assert_eq!(report.health.collapsed_dims, 0);
    // A collapsed or untrained latent probes at R² ≈ 0; 150 tiny steps already carry signal.
    assert!(
        report.health.probe_r2 > 0.2,
        "probe R² {}",
        report.health.probe_r2
    );
    for f in ["m.json", "m.loss.png", "m.train.json"] {
        assert!(tmp.path().join(f).is_file(), "missing {f}");
    }
    assert!(!tmp.path().join("m.best-checkpoint.safetensors").exists());
    // Saved and loaded twice: identical outputs, through the WorldModel trait.
    let a = JepaModel::load(&out, Device::Cpu).unwrap();
    let b = JepaModel::load(&out, Device::Cpu).unwrap();
    let obs = data.obs.get(0).narrow(0, 0, 8);
    let acts = data
        .actions
        .get(0)
        .narrow(0, 0, 5)
        .unsqueeze(0)
        .repeat([8, 1, 1]);
    let za = a.encode_state(&obs).unwrap();
    let zb = b.encode_state(&obs).unwrap();
    assert!(za.equal(&zb));
    assert!(a
        .rollout(&za, &acts)
        .unwrap()
        .equal(&b.rollout(&zb, &acts).unwrap()));
    assert_eq!(a.latent_shape(), &[8]);
    // The sidecar records the scenario, so the model refuses another family.
    let err = zplan_models::load_model(
        &zplan_models::ModelSpec::Jepa(out.display().to_string()),
        &scenario("two_rooms.ron"),
        zplan_models::DeviceChoice::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("reach") || err.contains("two_rooms"), "{err}");
}

/// Writes a dataset of the first format (one `data.safetensors`), with `meta_from`'s metadata.
fn write_bad(dir: &Path, obs: &Tensor, actions: &Tensor, meta_from: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let (obs, actions) = (obs.contiguous(), actions.contiguous());
    Tensor::write_safetensors(
        &[("obs", &obs), ("actions", &actions)],
        dir.join("data.safetensors"),
    )
    .unwrap();
    let meta = std::fs::read_to_string(meta_from.join("meta.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&meta).unwrap();
    v["format"] = "zplan-dataset-v1".into();
    std::fs::write(dir.join("meta.json"), v.to_string()).unwrap();
}

#[test]
fn bad_datasets_fail_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    collect(
        &scenario("two_rooms.ron"),
        &small_collect(4, 8),
        &good,
        false,
    )
    .unwrap();
    let d = load_dataset(&good).unwrap();

    // The first format still loads, to the same data.
    let v1 = tmp.path().join("v1");
    write_bad(&v1, &d.obs, &d.actions, &good);
    let d1 = load_dataset(&v1).unwrap();
    assert!(d1.obs.equal(&d.obs) && d1.actions.equal(&d.actions));

    // Wrong observation width.
    let bad = tmp.path().join("shape");
    write_bad(&bad, &d.obs.narrow(2, 0, 1), &d.actions, &good);
    let e = load_dataset(&bad).err().unwrap().to_string();
    assert!(e.contains("obs") && e.contains("[N, T+1, 2]"), "{e}");

    // Actions that do not line up with observations.
    let bad = tmp.path().join("len");
    write_bad(&bad, &d.obs, &d.actions.narrow(1, 0, 5), &good);
    let e = load_dataset(&bad).err().unwrap().to_string();
    assert!(e.contains("actions"), "{e}");

    // NaN in the data.
    let bad = tmp.path().join("nan");
    let obs = d.obs.copy();
    let _ = obs.get(1).get(2).get(0).fill_(f64::NAN);
    write_bad(&bad, &obs, &d.actions, &good);
    let e = load_dataset(&bad).err().unwrap().to_string();
    assert!(e.contains("NaN"), "{e}");

    // A dataset that says it is from another scenario than its data.
    let bad = tmp.path().join("scenario");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(
        good.join("chunk-00000.safetensors"),
        bad.join("chunk-00000.safetensors"),
    )
    .unwrap();
    let meta = std::fs::read_to_string(good.join("meta.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&meta).unwrap();
    v["scenario"] = serde_json::to_value(scenario("reach.ron")).unwrap();
    std::fs::write(bad.join("meta.json"), v.to_string()).unwrap();
    let e = load_dataset(&bad).err().unwrap().to_string();
    assert!(e.contains("mismatched scenario"), "{e}");

    // Missing files.
    let e = load_dataset(&tmp.path().join("nowhere"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("meta.json"), "{e}");
}

/// Distance from the two_rooms ball to its goal at step `t` of episode `ep` of `data`
/// (collected with base seed 5).
fn goal_distance(sc: &ScenarioConfig, data: &zplan::train::Dataset, ep: i64, t: i64) -> f64 {
    let mut env = sc.build().unwrap();
    env.reset(zplan::seeds::collection_seed(5, ep as u64))
        .unwrap();
    let g = env.goal_state();
    let o = data.obs.get(ep).get(t);
    ((o.double_value(&[0]) - g[0] as f64).powi(2) + (o.double_value(&[1]) - g[1] as f64).powi(2))
        .sqrt()
}

#[test]
fn planner_driven_episodes_are_mixed_in_deterministically() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("two_rooms.ron");
    let cfg = CollectConfig {
        planner_fraction: 0.5,
        planner: Some(zplan::collect::PlannerDriven {
            planner: zplan_planner::PlannerConfig::from_ron_str(
                "Cem(samples: 24, elites: 4, iterations: 2, horizon: 8)",
            )
            .unwrap(),
            energy: Default::default(),
            mpc: Default::default(),
            noise: 0.1,
            model: None,
        }),
        ..small_collect(4, 20)
    };
    let meta = collect(&sc, &cfg, &tmp.path().join("a"), false).unwrap();
    assert_eq!(meta.planner_episodes, vec![1, 3]);
    collect(&sc, &cfg, &tmp.path().join("b"), false).unwrap();
    let a = load_dataset(&tmp.path().join("a")).unwrap();
    let b = load_dataset(&tmp.path().join("b")).unwrap();
    assert!(a.obs.equal(&b.obs) && a.actions.equal(&b.actions));
    // A planner-driven episode heads for its goal: it ends closer than it started.
    let dist = |t: i64| goal_distance(&sc, &a, 1, t);
    assert!(dist(20) < dist(0) - 0.3, "{} -> {}", dist(0), dist(20));
}

#[test]
fn planner_driven_episodes_can_plan_with_a_learned_model() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("two_rooms.ron");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let with = |model: &str| CollectConfig {
        planner_fraction: 1.0,
        planner: Some(zplan::collect::PlannerDriven {
            planner: zplan_planner::PlannerConfig::from_ron_str(
                "Cem(samples: 64, elites: 8, iterations: 3, horizon: 12)",
            )
            .unwrap(),
            energy: Default::default(),
            mpc: Default::default(),
            noise: 0.0,
            model: Some(model.parse().unwrap()),
        }),
        ..small_collect(2, 20)
    };
    // The shipped two_rooms JEPA, planning from observations: its episodes head for the goal.
    let good = root.join("models/trained/two_rooms.safetensors");
    let meta = collect(
        &sc,
        &with(good.to_str().unwrap()),
        &tmp.path().join("a"),
        false,
    )
    .unwrap();
    assert_eq!(meta.planner_episodes, vec![0, 1]);
    let a = load_dataset(&tmp.path().join("a")).unwrap();
    let dist = |t: i64| goal_distance(&sc, &a, 0, t);
    assert!(dist(20) < dist(0) - 0.3, "{} -> {}", dist(0), dist(20));
    // A model trained for another scenario is refused before anything is collected.
    let push = root.join("models/trained/push.safetensors");
    let out = tmp.path().join("b");
    let e = format!(
        "{:#}",
        collect(&sc, &with(push.to_str().unwrap()), &out, false).unwrap_err()
    );
    assert!(e.contains("--planner-model"), "{e}");
    assert!(!out.join("meta.json").exists());
}

#[test]
fn proprio_fields_get_their_own_latent_entries() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("push.ron"); // pusher_x, pusher_y, block_x, block_y, cos, sin
    collect(&sc, &small_collect(30, 20), &tmp.path().join("data"), false).unwrap();
    let data = load_dataset(&tmp.path().join("data")).unwrap();
    let out = tmp.path().join("p.safetensors");
    let cfg = TrainConfig {
        proprio: vec!["pusher_x".into(), "pusher_y".into()],
        proprio_latent_dim: 2,
        ..tiny_train()
    };
    let report = train(&data, &cfg, &out, Device::Cpu, false).unwrap();
    assert!(report.best_val_loss < report.initial_val_loss);
    assert_eq!(report.health.collapsed_dims, 0);
    let model = JepaModel::load(&out, Device::Cpu).unwrap();
    assert_eq!(model.proprio_latent(), Some(6..8));
    // Moving only the pusher changes only the proprio entries, and vice versa.
    let obs = data.obs.get(0).narrow(0, 0, 1);
    let z = model.encode_state(&obs).unwrap();
    let changed = |field: i64| {
        let o = obs.copy();
        let _ = o.narrow(1, field, 1).f_add_scalar_(0.3).unwrap();
        let d = (model.encode_state(&o).unwrap() - &z).abs().view([8]);
        Vec::<f32>::try_from(d).unwrap()
    };
    let d = changed(0);
    assert!(
        d[..6].iter().all(|&v| v == 0.0) && d[6..].iter().any(|&v| v > 0.0),
        "{d:?}"
    );
    let d = changed(2);
    assert!(
        d[6..].iter().all(|&v| v == 0.0) && d[..6].iter().any(|&v| v > 0.0),
        "{d:?}"
    );

    // Bad settings fail before training, naming the field.
    let bad = |cfg: TrainConfig| {
        train(
            &data,
            &cfg,
            &tmp.path().join("bad.safetensors"),
            Device::Cpu,
            false,
        )
        .unwrap_err()
        .to_string()
    };
    let err = bad(TrainConfig {
        proprio: vec!["pusher_z".into()],
        ..cfg.clone()
    });
    assert!(err.contains("pusher_z") && err.contains("block_x"), "{err}");
    let err = bad(TrainConfig {
        proprio_latent_dim: 8,
        ..cfg.clone()
    });
    assert!(err.contains("--proprio-latent-dim"), "{err}");
    assert!(!tmp.path().join("bad.json").exists());
}
