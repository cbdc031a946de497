//! Pixel scenarios end to end through the real binary: a TorchScript CNN exported by the
//! Python example plans `two_rooms_pixels` through `zplan run`; the simulator-backed oracle
//! plans pixel scenarios from the true state; a model whose image does not fit is refused by
//! `zplan validate` and `zplan run` before any episode, naming the field and both shapes.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{python, records, repo, zplan};

/// Exports the example CNN with `args`, panicking with python's output on failure (the
/// project's python with torch is part of the setup).
fn export_cnn(out: &Path, args: &[&str]) {
    let o = Command::new(python())
        .arg(repo().join("models/python/export_cnn_example.py"))
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        o.status.success(),
        "export_cnn_example.py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn suite(dir: &Path, model: &str, scenario: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"Suite(
    name: "pixels",
    seed: 3,
    episodes: 1,
    entries: [
        (
            name: "rooms/cnn",
            scenario: File("{rooms}"),
            model: {model},
            planner: Cem(samples: 32, elites: 4, iterations: 2, horizon: 6),
            energy: (metric: L2, reduction: Sum),
            mpc: (replan_every: 2),
            max_steps: Some(6),
        ),
        {extra}
    ],
)
"#,
        rooms = repo().join("scenarios").join(scenario).display(),
    );
    let p = dir.join("suite.ron");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_torchscript_cnn_plans_a_pixel_scenario_through_zplan_run() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("cnn.pt");
    export_cnn(&model, &["--image", "3,64,64", "--latent-dim", "16"]);
    let sim_entries = format!(
        r#"(
            name: "rooms/sim",
            scenario: File("{}"),
            model: Sim,
            planner: Cem(samples: 32, elites: 4, iterations: 2, horizon: 6),
            mpc: (replan_every: 2),
            max_steps: Some(6),
        ),
        (
            name: "doors/sim",
            scenario: File("{}"),
            model: Sim,
            planner: Cem(samples: 32, elites: 4, iterations: 2, horizon: 6),
            mpc: (replan_every: 2),
            max_steps: Some(6),
        ),"#,
        repo().join("scenarios/two_rooms_pixels.ron").display(),
        repo().join("scenarios/two_rooms_doors.ron").display(),
    );
    let s = suite(
        tmp.path(),
        &format!("TorchScript(\"{}\")", model.display()),
        "two_rooms_pixels.ron",
        &sim_entries,
    );
    let v = zplan(&["validate", s.to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let out = tmp.path().join("run");
    let r = zplan(&[
        "run",
        s.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
        "--device",
        "cpu",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let recs = records(&out);
    assert_eq!(recs.len(), 3);
    for rec in &recs {
        assert!(rec["error"].is_null(), "{rec}");
        assert_eq!(rec["steps"], 6, "{rec}");
        assert!(rec["plan_ms"].as_array().unwrap().len() >= 3, "{rec}");
    }
    // The filmstrip shows what the robot saw under the top-down view (taller than wide).
    let strip = out.join("filmstrip_rooms_cnn.png");
    let bytes = std::fs::read(&strip).unwrap();
    let h = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    assert!(h > 160, "filmstrip height {h}");
}

#[test]
fn a_model_whose_image_does_not_fit_is_refused_before_any_episode() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("cnn6.pt");
    // Two stacked frames (6 channels) where the scenario renders one.
    export_cnn(&model, &["--image", "6,64,64", "--latent-dim", "8"]);
    let s = suite(
        tmp.path(),
        &format!("TorchScript(\"{}\")", model.display()),
        "two_rooms_pixels.ron",
        "",
    );
    let v = zplan(&["validate", s.to_str().unwrap()]);
    assert!(!v.status.success());
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(
        err.contains("rooms/cnn") && err.contains("[2, 3, 64, 64]"),
        "{err}"
    );
    let out = tmp.path().join("run");
    let r = zplan(&[
        "run",
        s.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(!r.status.success());
    assert!(!out.join("results.jsonl").exists(), "an episode ran");

    // A state-vector model on a scenario that observes only pixels: the field is named.
    let jepa = repo().join("models/trained/two_rooms.safetensors");
    let s = suite(
        tmp.path(),
        &format!("Jepa(\"{}\")", jepa.display()),
        "two_rooms_pixels.ron",
        "",
    );
    let v = zplan(&["validate", s.to_str().unwrap()]);
    assert!(!v.status.success());
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(err.contains("`state`") && err.contains("f32 [2]"), "{err}");
}

#[test]
fn validate_prints_the_observation_spec() {
    let v = zplan(&[
        "validate",
        repo()
            .join("scenarios/two_rooms_pixels.ron")
            .to_str()
            .unwrap(),
    ]);
    assert!(v.status.success());
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(text.contains("image [3, 64, 64] u8"), "{text}");
    let v = zplan(&[
        "validate",
        repo().join("scenarios/push_pixels.ron").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        text.contains("proprio [2] f32 (pusher_x, pusher_y)"),
        "{text}"
    );
}
