//! World-model throughput on the CPU: batched encode (observations/s) and batched rollout
//! (latent steps/s, `batch * horizon` per rollout) at batch 256 and 1024, horizon 16.
//!
//! Models:
//! - `jepa_small`: a native JEPA network (latent 64, hidden 256, two hidden layers);
//! - `torchscript_small`: `models/python/export_example.py --size small` (same sizes), when the
//!   setup's python (`$ZPLAN_PYTHON`, else `python3`) can export it; skipped otherwise;
//! - `sim_two_rooms`: the simulator-backed model of the default two_rooms scenario (rollout only,
//!   batch 256), for scale;
//! - `jepa_pixels/encode`: the pixel JEPA's image encoder (`JepaConfig::pixels`, 64 × 64 RGB u8
//!   images and 2 proprio entries, convolutions of 16/32/32 channels, latent 64) at batch 1 and
//!   256, images per second.
//! - `jepa_pixels_keypoints/encode`: the shipped `two_rooms_pixels` model (convolutions of 8/16
//!   channels and one soft-argmax keypoint) at batch 1 and 256, images per second.
//!
//! libtorch's intra-op thread count is left at its default (all cores).
//!
//! ```text
//! cargo bench --bench model_throughput
//! ```

use criterion::{BenchmarkId, Criterion, Throughput};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tch::{Device, Kind, Tensor};
use zplan_models::{JepaConfig, JepaModel, SimModel, TorchScriptModel, WorldModel};
use zplan_sim::ScenarioConfig;

const OBS_DIM: i64 = 11;
const ACTION_DIM: i64 = 2;
const HORIZON: i64 = 16;
const BATCHES: [i64; 2] = [256, 1024];

fn python() -> String {
    std::env::var("ZPLAN_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Exports the example TorchScript model, or explains why not.
fn export_torchscript() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("model_throughput");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = dir.join("small.pt");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/python/export_example.py");
    let status = std::process::Command::new(python())
        .arg(&script)
        .args([
            "--size",
            "small",
            "--obs-shape",
            &OBS_DIM.to_string(),
            "--action-dim",
            &ACTION_DIM.to_string(),
        ])
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", python()))?;
    if status.success() {
        Ok(out)
    } else {
        Err(format!("{} failed ({status})", script.display()))
    }
}

fn bench_model(
    c: &mut Criterion,
    label: &str,
    model: &dyn WorldModel,
    batches: &[i64],
    encode: bool,
) {
    let cpu = (Kind::Float, Device::Cpu);
    if encode {
        let mut group = c.benchmark_group(format!("{label}/encode"));
        for &b in batches {
            let obs = Tensor::rand([b, OBS_DIM], cpu) * 0.2 - 0.1;
            group.throughput(Throughput::Elements(b as u64));
            group.bench_with_input(BenchmarkId::from_parameter(b), &obs, |bench, obs| {
                bench.iter(|| model.encode_state(obs).expect("encode"))
            });
        }
        group.finish();
    }
    let mut group = c.benchmark_group(format!("{label}/rollout_h{HORIZON}"));
    for &b in batches {
        let obs = start_states(model, b);
        let z0 = model.encode_state(&obs).expect("encode");
        let actions = Tensor::rand([b, HORIZON, ACTION_DIM], cpu) * 2.0 - 1.0;
        group.throughput(Throughput::Elements((b * HORIZON) as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(b),
            &(z0, actions),
            |bench, (z0, actions)| bench.iter(|| model.rollout(z0, actions).expect("rollout")),
        );
    }
    group.finish();
}

/// Valid start states: reset observations for the simulator, small random ones otherwise.
fn start_states(model: &dyn WorldModel, b: i64) -> Tensor {
    if model.name().starts_with("sim:") {
        let mut env = ScenarioConfig::default().build().expect("two_rooms");
        let mut rows = Vec::new();
        for seed in 0..b as u64 {
            env.reset(seed).expect("reset");
            rows.extend(env.state());
        }
        Tensor::from_slice(&rows).reshape([b, -1])
    } else {
        let d = model.obs_spec().fields()[0].numel() as i64;
        Tensor::rand([b, d], (Kind::Float, Device::Cpu)) * 0.2 - 0.1
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();

    let config = JepaConfig {
        latent_dim: 64,
        enc_hidden: 256,
        pred_hidden: 256,
        ..JepaConfig::new(OBS_DIM, ACTION_DIM)
    };
    let jepa = JepaModel::new(config, Device::Cpu).expect("JEPA model");
    bench_model(&mut c, "jepa_small", &jepa, &BATCHES, true);

    match export_torchscript().and_then(|p| {
        TorchScriptModel::load(
            &p,
            &zplan_models::state_spec(OBS_DIM as usize),
            ACTION_DIM,
            Device::Cpu,
        )
        .map_err(|e| e.to_string())
    }) {
        Ok(ts) => bench_model(&mut c, "torchscript_small", &ts, &BATCHES, true),
        Err(why) => eprintln!("skipping the TorchScript benchmark: {why}"),
    }

    let pixels = JepaModel::new(JepaConfig::pixels(3, 64, 64, 2, ACTION_DIM), Device::Cpu)
        .expect("pixel JEPA");
    let mut group = c.benchmark_group("jepa_pixels/encode");
    for b in [1i64, 256] {
        let obs = zplan_models::ObsBatch::single(
            "image",
            (Tensor::rand([b, 3, 64, 64], (Kind::Float, Device::Cpu)) * 255.0).to_kind(Kind::Uint8),
        )
        .with("proprio", Tensor::zeros([b, 2], (Kind::Float, Device::Cpu)))
        .expect("batch");
        group.throughput(Throughput::Elements(b as u64));
        group.bench_with_input(BenchmarkId::from_parameter(b), &obs, |bench, obs| {
            bench.iter(|| pixels.encode(obs).expect("encode"))
        });
    }
    group.finish();

    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/trained/two_rooms_pixels.safetensors");
    match JepaModel::load(&shipped, Device::Cpu) {
        Ok(kp) => {
            let mut group = c.benchmark_group("jepa_pixels_keypoints/encode");
            for b in [1i64, 256] {
                let obs = zplan_models::ObsBatch::single(
                    "image",
                    (Tensor::rand([b, 3, 64, 64], (Kind::Float, Device::Cpu)) * 255.0)
                        .to_kind(Kind::Uint8),
                );
                group.throughput(Throughput::Elements(b as u64));
                group.bench_with_input(BenchmarkId::from_parameter(b), &obs, |bench, obs| {
                    bench.iter(|| kp.encode(obs).expect("encode"))
                });
            }
            group.finish();
        }
        Err(e) => eprintln!("skipping the keypoint encoder benchmark: {e}"),
    }

    let sim = SimModel::from_config(&ScenarioConfig::default()).expect("two_rooms");
    bench_model(&mut c, "sim_two_rooms", &sim, &[256], false);

    c.final_summary();
}
