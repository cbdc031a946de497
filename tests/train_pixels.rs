//! Pixel JEPA training from chunked camera datasets: validation loss goes down without
//! collapse, results are deterministic, the model loads for its pixel scenario, and bad
//! datasets fail before training.

use std::path::Path;
use zplan::collect::{collect, CollectConfig};
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
    let cfg = CollectConfig {
        episodes,
        steps: 16,
        seed: 4,
        beta: 1.0,
        scale: 1.0,
        action_repeat: 1,
        workers: 2,
        planner_fraction: 0.0,
        planner: None,
        chunk_episodes: Some(8),
    };
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
