//! The built `zplan` binary runs anywhere: rpath to libtorch, libtorch_cuda kept linked.

use std::process::Command;

const ZPLAN: &str = env!("CARGO_BIN_EXE_zplan");

#[test]
fn info_runs_from_another_directory_with_an_empty_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ZPLAN)
        .arg("info")
        .current_dir(dir.path())
        .env_clear()
        .output()
        .expect("zplan starts without LD_LIBRARY_PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("libtorch        2.11.0"), "{text}");
    assert!(text.contains("cuda available"), "{text}");
    assert!(text.contains("torch threads"), "{text}");
    assert!(text.contains("build profile"), "{text}");
    let json = Command::new(ZPLAN)
        .args(["info", "--json"])
        .env_clear()
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["libtorch_version"], "2.11.0");
}

#[test]
fn libtorch_cuda_stays_linked() {
    // The wheel is a CUDA build: the binary must keep libtorch_cuda as a dependency (the
    // linker's --as-needed would drop it and CUDA would silently be unavailable on GPU machines).
    let lib = std::path::Path::new(env!("ZPLAN_LIBTORCH_LIB"));
    if !lib.join("libtorch_cuda.so").exists() {
        eprintln!("this libtorch has no libtorch_cuda.so (CPU-only build); nothing to check");
        return;
    }
    let out = Command::new("readelf").args(["-d", ZPLAN]).output();
    let Ok(out) = out else {
        eprintln!("readelf not available; skipped");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[libtorch_cuda.so]"),
        "libtorch_cuda.so not NEEDED:\n{text}"
    );
    assert!(
        text.contains("RUNPATH") || text.contains("RPATH"),
        "no rpath:\n{text}"
    );
}

#[test]
fn help_lists_the_subcommands() {
    let out = Command::new(ZPLAN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "info",
        "validate",
        "run",
        "merge",
        "model",
        "collect",
        "train",
        "bench-plan",
        "bench",
    ] {
        assert!(text.contains(cmd), "`{cmd}` missing from --help:\n{text}");
    }
}

#[test]
fn validate_reports_bad_scenarios_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.ron");
    std::fs::write(&p, "TwoRooms(\n    door_width: -1.0,\n)\n").unwrap();
    let out = Command::new(ZPLAN)
        .arg("validate")
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.ron:2") && err.contains("door_width"),
        "{err}"
    );
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/default.ron");
    let out = Command::new(ZPLAN)
        .arg("validate")
        .arg(&good)
        .args(["--device", "cpu"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn model_inspect_prints_shapes_and_rejects_bad_models() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("models/trained/reach.safetensors");
    let scenario = root.join("scenarios/reach.ron");
    let out = Command::new(ZPLAN)
        .args(["model", "inspect"])
        .arg(&model)
        .arg("--scenario")
        .arg(&scenario)
        .args(["--device", "cpu", "--batch", "16", "--horizon", "4"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("latent shape") && text.contains("[32]"),
        "{text}"
    );
    assert!(text.contains("rollout"), "{text}");
    // Explicit sizes that do not fit the model: one clear error naming both shapes.
    let out = Command::new(ZPLAN)
        .args(["model", "inspect"])
        .arg(&model)
        .args(["--obs-shape", "5", "--action-dim", "3", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("11") && err.contains('5'), "{err}");
    // Not a model at all.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("junk.pt");
    std::fs::write(&bad, "not a model").unwrap();
    let out = Command::new(ZPLAN)
        .args(["model", "inspect"])
        .arg(&bad)
        .args(["--obs-shape", "4", "--action-dim", "2", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TorchScript"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn train_reads_several_datasets_only_when_refitting_a_predictor() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ZPLAN)
        .args(["train", "--data", "a", "--data", "b", "--out"])
        .arg(dir.path().join("m.safetensors"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--data is given 2 times") && err.contains("--refit-predictor"),
        "{err}"
    );
    // --planner-model names what it could not parse.
    let out = Command::new(ZPLAN)
        .args(["collect", "scenarios/two_rooms.ron", "--episodes", "1"])
        .args([
            "--planner-fraction",
            "1",
            "--planner-model",
            "weights.bin",
            "--out",
        ])
        .arg(dir.path().join("d"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--planner-model") && err.contains("weights.bin"),
        "{err}"
    );
    assert!(!dir.path().join("d").exists());
}
