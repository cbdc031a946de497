//! `zplan bench-plan` and `zplan bench` end to end, with small settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tch::Device;
use zplan_models::{JepaConfig, JepaModel};

mod common;
use common::{python, repo, text, zplan};

/// The `key=value` pairs of the last stdout line; every value must be a positive number.
fn last_line(out: &Output) -> BTreeMap<String, f64> {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "zplan failed:\n{stdout}\n{stderr}");
    let line = stdout.lines().last().expect("some output");
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("`{kv}` in `{line}`"));
            let v: f64 = v.parse().unwrap_or_else(|_| panic!("`{kv}` in `{line}`"));
            assert!(v.is_finite() && v > 0.0, "`{kv}` in `{line}`");
            (k.to_string(), v)
        })
        .collect()
}

fn keys(m: &BTreeMap<String, f64>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

const BASE_KEYS: [&str; 4] = [
    "overhead",
    "plan_ms_median",
    "plan_ms_p99",
    "rollout_ms_median",
];
const SMALL: [&str; 10] = [
    "--samples",
    "24",
    "--horizon",
    "4",
    "--iters",
    "2",
    "--repeats",
    "3",
    "--warmup",
    "1",
];

/// Exports the tiny example TorchScript model, or explains why it cannot.
fn export_tiny(dir: &Path) -> Result<PathBuf, String> {
    let out = dir.join("tiny.pt");
    let status = Command::new(python())
        .arg(repo().join("models/python/export_example.py"))
        .args([
            "--size",
            "tiny",
            "--obs-shape",
            "4",
            "--action-dim",
            "2",
            "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", python()))?;
    status
        .success()
        .then_some(out)
        .ok_or_else(|| format!("export_example.py failed ({status})"))
}

#[test]
fn bench_plan_on_a_torchscript_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = match export_tiny(dir.path()) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipping: {why} (set ZPLAN_PYTHON to a python with torch)");
            return;
        }
    };
    let mut args = vec!["bench-plan", "--model", model.to_str().unwrap()];
    args.extend(["--obs-shape", "4", "--action-dim", "2", "--planner", "cem"]);
    args.extend(SMALL);
    let out = zplan(&args);
    let line = last_line(&out);
    assert_eq!(
        keys(&line),
        BASE_KEYS,
        "TorchScript models have no FLOP count"
    );
    let (stdout, _) = text(&out);
    assert!(stdout.contains("2 x [24, 4]"), "{stdout}");

    // Candidate groups rolled out on two threads (64 candidates: two groups of 32).
    let mut args = vec!["bench-plan", "--model", model.to_str().unwrap()];
    args.extend(["--obs-shape", "4", "--action-dim", "2", "--planner", "mppi"]);
    args.extend(["--samples", "64", "--horizon", "4", "--iters", "2"]);
    args.extend(["--repeats", "2", "--warmup", "1", "--rollout-threads", "2"]);
    let out = zplan(&args);
    assert_eq!(keys(&last_line(&out)), BASE_KEYS);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("1 torch thread(s) × 2 candidate groups in parallel"),
        "{stdout}"
    );
    // The CPU clock would add the threads' times up.
    args.extend(["--clock", "cpu"]);
    let out = zplan(&args);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("wall clock"), "{stderr}");
}

#[test]
fn bench_plan_on_native_jepa_models_counts_flops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let config = JepaConfig {
        latent_dim: 8,
        enc_hidden: 16,
        pred_hidden: 16,
        enc_layers: 1,
        pred_layers: 1,
        ..JepaConfig::new(4, 2)
    };
    JepaModel::new(config, Device::Cpu)
        .unwrap()
        .save(&path)
        .unwrap();
    let json = dir.path().join("report.json");
    for planner in ["cem", "icem", "mppi", "grad"] {
        let mut args = vec!["bench-plan", "--model", path.to_str().unwrap()];
        args.extend([
            "--obs-shape",
            "4",
            "--action-dim",
            "2",
            "--planner",
            planner,
        ]);
        args.extend(["--matmul-size", "64", "--threads", "1", "--json"]);
        args.push(json.to_str().unwrap());
        args.extend(SMALL);
        let line = last_line(&zplan(&args));
        let mut want: Vec<&str> = BASE_KEYS.to_vec();
        want.extend(["efficiency", "gflops", "matmul_gflops"]);
        want.sort_unstable();
        assert_eq!(keys(&line), want, "{planner}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert!(report["arithmetic"]["flops_per_plan"].as_f64().unwrap() > 0.0);
        assert_eq!(report["plan"]["all_ms"].as_array().unwrap().len(), 3);
    }
    // The device-resident CEM population: one download per plan, the same rollouts asked for.
    let mut args = vec!["bench-plan", "--model", path.to_str().unwrap()];
    args.extend(["--obs-shape", "4", "--action-dim", "2", "--planner", "cem"]);
    args.extend(["--backend", "device", "--matmul-size", "64", "--json"]);
    args.push(json.to_str().unwrap());
    args.extend(SMALL);
    last_line(&zplan(&args));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let planner = report["planner"].as_str().unwrap();
    assert!(
        planner.replace(' ', "").contains("backend:Device"),
        "{planner}"
    );
    assert_eq!(report["calls"].as_array().unwrap().len(), 2, "{report}");
    // Fresh networks need no file, with the CPU clock.
    let mut args = vec!["bench-plan", "--model", "jepa-new", "--obs-shape", "4"];
    args.extend(["--action-dim", "2", "--latent-dim", "8", "--hidden", "16"]);
    args.extend(["--layers", "1", "--matmul-size", "64", "--clock", "cpu"]);
    args.extend(SMALL);
    assert!(last_line(&zplan(&args)).contains_key("efficiency"));
}

#[test]
fn bench_plan_with_a_scenario_and_the_simulator() {
    let scenario = repo().join("scenarios/two_rooms.ron");
    let mut args = vec!["bench-plan", "--model", "sim", "--scenario"];
    args.push(scenario.to_str().unwrap());
    args.extend([
        "--planner",
        "mppi",
        "--samples",
        "8",
        "--horizon",
        "3",
        "--iters",
        "1",
    ]);
    args.extend(["--repeats", "2", "--warmup", "0"]);
    assert_eq!(keys(&last_line(&zplan(&args))), BASE_KEYS);
}

#[test]
fn bench_plan_bad_inputs_fail_clearly() {
    let out = zplan(&[
        "bench-plan",
        "--model",
        "/nonexistent/model.pt",
        "--obs-shape",
        "4",
        "--action-dim",
        "2",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/nonexistent/model.pt") && stderr.contains("not found"),
        "{stderr}"
    );

    let out = zplan(&["bench-plan", "--model", "jepa-new", "--obs-shape", "4"]);
    assert!(!out.status.success(), "--obs-shape needs --action-dim");

    jepa_new_fails_with(&["--samples", "10", "--elites", "20"], "elites");
    jepa_new_fails_with(
        &["--rollout-threads", "0"],
        "--rollout-threads must be at least 1",
    );
    jepa_new_fails_with(
        &["--rollout-threads", "2", "--threads", "2"],
        "leave --threads at 1",
    );
    jepa_new_fails_with(
        &["--planner", "mppi", "--backend", "device"],
        "--backend device is a CEM backend",
    );
}

/// `bench-plan` on fresh JEPA networks (obs 4, action 2) with `extra` flags fails, and its
/// error mentions `needle`.
fn jepa_new_fails_with(extra: &[&str], needle: &str) {
    let mut args = vec![
        "bench-plan",
        "--model",
        "jepa-new",
        "--obs-shape",
        "4",
        "--action-dim",
        "2",
    ];
    args.extend_from_slice(extra);
    let out = zplan(&args);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{extra:?} should fail");
    assert!(stderr.contains(needle), "{stderr}");
}

#[test]
fn bench_suite_writes_pareto_plots_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let reach = repo().join("scenarios/reach.ron");
    let entry = |name: &str, samples: u32, iterations: u32| {
        format!(
            "(name: \"{name}\", scenario: File(\"{}\"), model: Sim, \
             planner: Cem(samples: {samples}, elites: 2, iterations: {iterations}, horizon: 3), \
             mpc: (replan_every: 2), max_steps: 4)",
            reach.display()
        )
    };
    let suite = format!(
        "Suite(name: \"tiny-bench\", seed: 1, episodes: 1, entries: [{}, {}])",
        entry("reach/cheap", 4, 1),
        entry("reach/more", 8, 2)
    );
    let suite_path = dir.path().join("suite.ron");
    std::fs::write(&suite_path, suite).unwrap();
    let out_dir = dir.path().join("out");
    let out = zplan(&[
        "bench",
        suite_path.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--workers",
        "1",
        "--no-progress",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for f in [
        "pareto_reach.png",
        "pareto_reach.svg",
        "bench.md",
        "bench.csv",
        "results.jsonl",
    ] {
        let p = out_dir.join(f);
        assert!(
            p.is_file() && std::fs::metadata(&p).unwrap().len() > 0,
            "{f} missing"
        );
    }
    let csv = std::fs::read_to_string(out_dir.join("bench.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("scenario,entry,"), "{csv}");
    assert!(lines[1].starts_with("reach,reach/cheap,"), "{csv}");
    // At least one entry is on the front.
    assert!(lines[1..].iter().any(|l| l.ends_with(",true")), "{csv}");
    assert!(stdout.contains("### reach"), "{stdout}");
}
