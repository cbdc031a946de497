//! Chunked pixel datasets: round trips, checked chunks whose errors name the file and tensor,
//! and collection whose memory stays bounded by one chunk.

use std::path::{Path, PathBuf};
use std::process::Command;
use zplan::collect::{collect, CollectConfig, DatasetMeta};
use zplan::dataset::read_chunk;
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

fn config(episodes: u64, steps: u32, chunk: u64) -> CollectConfig {
    common::random_collect(episodes, steps, 9, Some(chunk))
}

fn chunk(dir: &Path, meta: &DatasetMeta, i: usize) -> anyhow::Result<zplan::dataset::Chunk> {
    let spec = meta.scenario.spec();
    read_chunk(
        dir,
        &meta.chunks[i],
        meta.observation.as_ref().unwrap(),
        spec.state_dim(),
        spec.action_dim(),
        meta.steps as usize,
    )
}

#[test]
fn pixel_datasets_round_trip_with_u8_images_and_true_states() {
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("two_rooms_doors.ron");
    let dir = tmp.path().join("d");
    let meta = collect(&sc, &config(6, 10, 4), &dir, false).unwrap();
    assert_eq!(meta.format, "zplan-dataset-v2");
    assert_eq!(meta.chunks.len(), 2);
    assert_eq!(
        (meta.chunks[1].first_episode, meta.chunks[1].episodes),
        (4, 2)
    );
    // meta.json reads back to the same description.
    let text = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    assert_eq!(serde_json::from_str::<DatasetMeta>(&text).unwrap(), meta);

    let c = chunk(&dir, &meta, 1).unwrap();
    let image = c.field("image").unwrap();
    assert_eq!(image.kind(), tch::Kind::Uint8);
    assert_eq!(image.size(), [2, 11, 3, 64, 64]);
    assert_eq!(c.field("state").unwrap().size(), [2, 11, 2]);
    assert_eq!(c.state.size(), [2, 11, 3]); // true state: x, y, door_y
    assert_eq!(c.actions.size(), [2, 10, 2]);

    // Episode 5 replayed in the simulator gives the same images and states, bit for bit.
    let seed = zplan::seeds::collection_seed(9, 5);
    assert_eq!(c.seeds.int64_value(&[1]) as u64, seed);
    let mut env = sc.build().unwrap();
    env.reset(seed).unwrap();
    for t in 0..11i64 {
        if t > 0 {
            let a = Vec::<f32>::try_from(c.actions.get(1).get(t - 1)).unwrap();
            env.step(&a).unwrap();
        }
        let obs = env.observe();
        let stored = Vec::<u8>::try_from(image.get(1).get(t).reshape([-1])).unwrap();
        assert!(
            stored == obs.u8("image").unwrap(),
            "image at step {t} differs"
        );
        let state = Vec::<f32>::try_from(c.state.get(1).get(t)).unwrap();
        assert_eq!(state, env.state(), "true state at step {t}");
    }
    // The door differs between episodes and is recorded as a label, not an observation.
    let doors: Vec<f64> = (0..2).map(|e| c.state.double_value(&[e, 0, 2])).collect();
    assert_ne!(doors[0], doors[1]);

    // State-vector training reads the observed `state` field of every chunk.
    let d = zplan::train::load_dataset(&dir).unwrap();
    assert_eq!(d.obs.size(), [6, 11, 2]);
    // A dataset without a state field cannot train a state model, and says so.
    let pix = tmp.path().join("p");
    collect(
        &scenario("two_rooms_pixels.ron"),
        &config(2, 4, 8),
        &pix,
        false,
    )
    .unwrap();
    let e = zplan::train::load_dataset(&pix).err().unwrap().to_string();
    assert!(e.contains("no `state` field"), "{e}");
}

#[test]
fn corrupt_or_mismatched_chunks_name_themselves() {
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("push_pixels.ron");
    let dir = tmp.path().join("d");
    let meta = collect(&sc, &config(4, 5, 2), &dir, false).unwrap();
    chunk(&dir, &meta, 1).unwrap();

    // Flipped bytes in the header.
    let path = dir.join(&meta.chunks[1].file);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    for b in &mut bad[9..40] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bad).unwrap();
    let e = chunk(&dir, &meta, 1).err().unwrap().to_string();
    assert!(
        e.contains("chunk-00001.safetensors") && e.contains("corrupt"),
        "{e}"
    );

    // Truncated.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let e = chunk(&dir, &meta, 1).err().unwrap().to_string();
    assert!(e.contains("chunk-00001.safetensors"), "{e}");

    // A chunk whose image is float32 instead of u8, and one that lacks proprio.
    let t = tch::Tensor::read_safetensors(dir.join(&meta.chunks[0].file)).unwrap();
    let rewrite = |f: &dyn Fn(&str, &tch::Tensor) -> Option<tch::Tensor>| {
        let named: Vec<(String, tch::Tensor)> = t
            .iter()
            .filter_map(|(n, x)| f(n, x).map(|y| (n.clone(), y)))
            .collect();
        let refs: Vec<(&str, &tch::Tensor)> = named.iter().map(|(n, x)| (n.as_str(), x)).collect();
        tch::Tensor::write_safetensors(&refs, &path).unwrap();
    };
    rewrite(&|n, x| {
        Some(if n == "obs.image" {
            x.to_kind(tch::Kind::Float)
        } else {
            x.shallow_clone()
        })
    });
    let e = chunk(&dir, &meta, 1).err().unwrap().to_string();
    assert!(
        e.contains("chunk-00001.safetensors") && e.contains("`obs.image`") && e.contains("U8"),
        "{e}"
    );
    rewrite(&|n, x| (n != "obs.proprio").then(|| x.shallow_clone()));
    let e = chunk(&dir, &meta, 1).err().unwrap().to_string();
    assert!(e.contains("missing tensor `obs.proprio`"), "{e}");
    // NaN in the proprio field names the tensor.
    rewrite(&|n, x| {
        Some(if n == "obs.proprio" {
            let y = x.copy();
            let _ = y.get(0).get(1).get(0).fill_(f64::NAN);
            y
        } else {
            x.shallow_clone()
        })
    });
    let e = chunk(&dir, &meta, 1).err().unwrap().to_string();
    assert!(e.contains("`obs.proprio`") && e.contains("NaN"), "{e}");
}

/// Peak memory (MiB) `zplan collect` reports for `episodes` episodes.
fn collect_peak(dir: &Path, episodes: u64) -> f64 {
    let out = Command::new(env!("CARGO_BIN_EXE_zplan"))
        .args(["collect"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/two_rooms_pixels.ron"))
        .args([
            "--episodes",
            &episodes.to_string(),
            "--steps",
            "100",
            "--chunk-episodes",
            "4",
        ])
        .args(["--workers", "2", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("peak memory: "))
        .and_then(|v| v.trim_end_matches(" MiB").parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in {text}"))
}

#[test]
fn collection_memory_is_bounded_by_one_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    // 1.24 MB of images per episode (101 frames of 64 x 64 RGB): 20 MB for 16 episodes,
    // 79 MB for 64; a chunk of 4 episodes is 5 MB.
    let small = collect_peak(&tmp.path().join("a"), 16);
    let large = collect_peak(&tmp.path().join("b"), 64);
    let bytes: u64 = std::fs::read_dir(tmp.path().join("b"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(bytes > 75 << 20, "dataset is {bytes} bytes");
    eprintln!(
        "peak memory: {small:.0} MiB for 16 episodes, {large:.0} MiB for 64 ({} MiB of data)",
        bytes >> 20
    );
    assert!(
        large < small + 15.0,
        "peak memory grew with the dataset: {small:.0} -> {large:.0} MiB"
    );
}
