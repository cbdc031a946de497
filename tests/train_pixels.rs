//! Pixel JEPA training from chunked camera datasets: validation loss goes down without
//! collapse, results are deterministic, the model loads for its pixel scenario, and bad
//! datasets fail before training.

use std::path::Path;
use zplan::collect::{collect, CollectConfig};

mod common;
use zplan::train::{read_meta, TrainConfig};
use zplan::train_pixels::train_pixels;
use zplan_sim::ScenarioConfig;

fn scenario(name: &str) -> ScenarioConfig {
    ScenarioConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(name),
    )
    .unwrap()
}

fn data(dir: &Path, name: &str, episodes: u64) {
    let cfg = common::random_collect(episodes, 16, 4, Some(8));
    collect(&scenario(name), &cfg, dir, false).unwrap();
}

fn tiny() -> TrainConfig {
    TrainConfig {
        latent_dim: 16,
        hidden: 32,
        layers: 1,
        rollout_steps: 3,
        batch: 16,
        steps: 120,
        eval_every: 40,
        conv_widths: vec![8, 16, 16],
        ..TrainConfig::default()
    }
}

#[test]
fn pixel_training_lowers_validation_loss_without_collapse_and_is_deterministic() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    data(&d, "push_pixels.ron", 24);
    let meta = read_meta(&d).unwrap();
    assert!(zplan::train::is_pixel_dataset(&meta));
    let out = tmp.path().join("a.safetensors");
    let r = train_pixels(&d, &meta, &tiny(), &out, tch::Device::Cpu, false).unwrap();
    assert!(
        r.best_val_loss < r.initial_val_loss,
        "validation loss {} -> {}",
        r.initial_val_loss,
        r.best_val_loss
    );
    assert!(
        r.health.min_std > 1e-3,
        "collapsed: {:?}",
        r.health.per_dim_std
    );
    assert!(r.health.probe_r2.is_finite());
    assert!(out.with_extension("loss.png").exists());
    // The model is a pixel JEPA that fits its scenario.
    let model = zplan_models::load_model(
        &zplan_models::ModelSpec::Jepa(out.to_string_lossy().into_owned()),
        &scenario("push_pixels.ron"),
        zplan_models::DeviceChoice::Cpu,
    )
    .unwrap();
    assert_eq!(
        model.obs_spec().to_string(),
        "image [3, 64, 64] u8, proprio [2] f32"
    );
    // Same seed, same weights.
    let out2 = tmp.path().join("b.safetensors");
    train_pixels(&d, &meta, &tiny(), &out2, tch::Device::Cpu, false).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&out2).unwrap(),
        "weights differ between runs"
    );
}

#[test]
fn orientation_keypoints_at_full_resolution_train_and_reload() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    data(&d, "push_pixels.ron", 12);
    let meta = read_meta(&d).unwrap();
    let out = tmp.path().join("m.safetensors");
    let cfg = TrainConfig {
        conv_widths: vec![8],
        conv_strides: vec![1],
        keypoints: 1,
        keypoint_moment: 4,
        keypoint_gain: 10.0,
        keypoint_std: 0.1,
        proprio_decorrelation: 1.0,
        keypoint_spread: 0.01,
        keypoint_moment_radius: 0.2,
        keypoint_mask: true,
        image_norm: zplan_models::jepa::ImageNorm::Channel,
        enc_layers: 0,
        steps: 30,
        eval_every: 15,
        ..tiny()
    };
    let r = train_pixels(&d, &meta, &cfg, &out, tch::Device::Cpu, false).unwrap();
    assert!(r.best_val_loss.is_finite() && r.best_val_loss < r.initial_val_loss);
    // One keypoint (x, y), its moment (re, im), the proprio latent (4).
    assert_eq!(r.health.per_dim_std.len(), 8);
    assert_eq!(r.health.probe_r2_per_field.len(), 6);
    let model = zplan_models::jepa::JepaModel::load(&out, tch::Device::Cpu).unwrap();
    let im = model.config().image.unwrap();
    assert_eq!(im.strides, [1]);
    assert_eq!(im.feature_shape(), (8, 64, 64));
    assert_eq!(
        im.head,
        zplan_models::jepa::ImageHead::Keypoints {
            count: 1,
            context: 0,
            moment: 4,
            gain: 10.0,
            radius: 0.2,
            mask: true
        }
    );
    // Per-channel input normalisation: one mean per colour channel over every pixel.
    let w = tch::Tensor::read_safetensors(&out).unwrap();
    let mean = &w.iter().find(|(n, _)| n == "image_encoder.mean").unwrap().1;
    assert_eq!(mean.size(), [3, 64, 64]);
    for c in 0..3 {
        let m = mean.get(c);
        assert!(
            (m.max() - m.min()).double_value(&[]) < 1e-6,
            "channel {c} mean varies over pixels"
        );
    }
    assert!(
        (mean.get(0).max() - mean.get(2).max())
            .abs()
            .double_value(&[])
            > 1e-3
    );
    // Flags that need others are refused before training.
    for (bad, what) in [
        (
            TrainConfig {
                keypoints: 0,
                keypoint_std: 0.0,
                proprio_decorrelation: 0.0,
                keypoint_spread: 0.0,
                keypoint_mask: false,
                ..cfg.clone()
            },
            "--keypoint-moment needs --keypoints",
        ),
        (
            TrainConfig {
                keypoints: 0,
                keypoint_moment: 0,
                keypoint_moment_radius: 0.0,
                keypoint_std: 0.0,
                proprio_decorrelation: 0.0,
                keypoint_spread: 0.0,
                ..cfg.clone()
            },
            "--keypoint-mask needs --keypoints",
        ),
        (
            TrainConfig {
                conv_strides: vec![1, 2],
                ..cfg.clone()
            },
            "--conv-strides has 2 entries but --conv-widths has 1",
        ),
        (
            TrainConfig {
                keypoint_moment: 3,
                keypoint_gain: 0.0,
                ..cfg.clone()
            },
            "--keypoint-gain",
        ),
    ] {
        let e = train_pixels(&d, &meta, &bad, &out, tch::Device::Cpu, false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(what), "{e}");
    }
}

/// A one-room variant of `two_rooms_pixels.ron` (starts and goals both in the left room, a
/// wider goal radius, 50 steps): a small pixel scenario a briefly trained model can solve.
fn one_room(goal_radius: f64) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/two_rooms_pixels.ron"),
    )
    .unwrap();
    let mut s = text
        .replace(
            "goal: (x: (2.4, 3.7), y: (0.5, 1.5)),",
            "goal: (x: (0.3, 1.6), y: (0.4, 1.6)),",
        )
        .replace(
            "start: (x: (0.3, 1.6), y: (0.5, 1.5)),",
            "start: (x: (0.3, 1.6), y: (0.4, 1.6)),",
        )
        .replace("max_steps: 120,", "max_steps: 50,");
    s = s.replace(
        "goal_radius: 0.1, ",
        &format!("goal_radius: {goal_radius}, "),
    );
    assert!(s.contains(&format!("goal_radius: {goal_radius}")), "{s}");
    assert!(s.contains("max_steps: 50") && s.contains("goal: (x: (0.3, 1.6)"));
    s
}

#[test]
fn a_briefly_trained_keypoint_model_reaches_goal_images_in_closed_loop() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let scenario_path = tmp.path().join("one_room.ron");
    std::fs::write(&scenario_path, one_room(0.2)).unwrap();
    let d = tmp.path().join("data");
    let cfg = CollectConfig {
        episodes: 120,
        steps: 24,
        seed: 11,
        beta: 1.5,
        scale: 1.0,
        action_repeat: 1,
        workers: 2,
        planner_fraction: 0.0,
        planner: None,
        chunk_episodes: Some(40),
    };
    collect(
        &ScenarioConfig::load(&scenario_path).unwrap(),
        &cfg,
        &d,
        false,
    )
    .unwrap();
    let meta = read_meta(&d).unwrap();
    let model = tmp.path().join("kp.safetensors");
    let train = TrainConfig {
        keypoints: 1,
        hidden: 64,
        layers: 2,
        rollout_steps: 4,
        batch: 32,
        steps: 800,
        eval_every: 100,
        inverse_weight: 1.0,
        conv_widths: vec![8, 16],
        ..TrainConfig::default()
    };
    let r = train_pixels(&d, &meta, &train, &model, tch::Device::Cpu, false).unwrap();
    assert!(r.health.probe_r2 > 0.8, "probe R2 {}", r.health.probe_r2);
    let suite = tmp.path().join("suite.ron");
    std::fs::write(
        &suite,
        format!(
            r#"Suite(name: "kp", seed: 5, episodes: 4, entries: [(
                name: "one_room/jepa",
                scenario: File("{}"),
                model: Jepa("{}"),
                planner: Cem(samples: 100, elites: 10, iterations: 3, horizon: 15, init_std: 0.8),
                energy: (metric: L2, reduction: Sum, action_weight: 0.02),
                mpc: (replan_every: 2),
            )])"#,
            scenario_path.display(),
            model.display()
        ),
    )
    .unwrap();
    let run = tmp.path().join("run");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zplan"))
        .args([
            "run",
            suite.to_str().unwrap(),
            "--workers",
            "1",
            "--no-progress",
        ])
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = std::fs::read_to_string(run.join("results.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = results
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 4);
    // Reaching: the ball comes within the goal radius of the goal image's position. Staying
    // there is what a longer-trained model adds: with 400-1200 steps this predictor drifts
    // by a few centimetres at the goal, and 55-80 % of 20 episodes *end* inside the radius
    // (measured 2026-12-06 with the same data and settings), against 20/20 that reach it. The
    // suite's `success` (ending inside) is therefore not asserted on 4 episodes.
    let reached = records
        .iter()
        .filter(|r| !r["first_success_step"].is_null())
        .count();
    assert!(
        reached >= 3,
        "{reached}/4 episodes reached the goal image: {results}"
    );
    let mean = |key: &str| -> f64 {
        records
            .iter()
            .map(|r| match key {
                "start" => r["distance_trace"][0].as_f64().unwrap(),
                _ => r["final_distance"].as_f64().unwrap(),
            })
            .sum::<f64>()
            / records.len() as f64
    };
    assert!(
        mean("final") < 0.5 * mean("start"),
        "mean final distance {} is not below half the mean start distance {}: {results}",
        mean("final"),
        mean("start")
    );
}

#[test]
fn bad_pixel_datasets_fail_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    data(&d, "push_pixels.ron", 8);
    let meta = read_meta(&d).unwrap();
    let out = tmp.path().join("m.safetensors");
    // NaN proprio in a chunk.
    let path = d.join(&meta.chunks[0].file);
    let t = tch::Tensor::read_safetensors(&path).unwrap();
    let named: Vec<(String, tch::Tensor)> = t
        .into_iter()
        .map(|(n, x)| {
            if n == "obs.proprio" {
                let y = x.copy();
                let _ = y.get(3).get(2).get(1).fill_(f64::NAN);
                (n, y)
            } else {
                (n, x)
            }
        })
        .collect();
    let refs: Vec<(&str, &tch::Tensor)> = named.iter().map(|(n, x)| (n.as_str(), x)).collect();
    tch::Tensor::write_safetensors(&refs, &path).unwrap();
    let e = train_pixels(&d, &meta, &tiny(), &out, tch::Device::Cpu, false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("obs.proprio") && e.contains("NaN"), "{e}");
    assert!(!out.exists());
}
