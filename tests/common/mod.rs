//! Helpers shared by the integration tests that drive the real `zplan` binary: where the
//! repository and its scenarios are, the project's python, running zplan, and reading a run's
//! `results.jsonl`.
#![allow(dead_code)] // each test binary uses a subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `zplan` binary cargo built for these tests.
pub const ZPLAN: &str = env!("CARGO_BIN_EXE_zplan");

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The path of `scenarios/<name>` as a string (for RON files written by tests).
pub fn scenario(name: &str) -> String {
    repo().join("scenarios").join(name).display().to_string()
}

/// The project's python with torch (`ZPLAN_PYTHON`, set by .cargo/config.toml), else python3.
pub fn python() -> String {
    std::env::var("ZPLAN_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Runs zplan with `args` to completion (warnings logged; no backtraces from the
/// environment's `RUST_BACKTRACE` in its error output).
pub fn zplan(args: &[&str]) -> Output {
    Command::new(ZPLAN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running zplan")
}

/// stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout and stderr of a run that must have succeeded (else a panic showing both).
pub fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "zplan failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// The episode records of the run directory `dir` (its `results.jsonl` must exist).
pub fn records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap_or_else(|e| panic!("{}/results.jsonl: {e}", dir.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The deterministic part of episode records, sorted for comparison: (entry, episode, seed,
/// success, steps, final distance to the last bit).
pub fn facts(recs: &[serde_json::Value]) -> Vec<(String, u64, u64, bool, u64, String)> {
    let mut v: Vec<_> = recs
        .iter()
        .map(|r| {
            (
                r["entry"].as_str().unwrap().to_string(),
                r["episode"].as_u64().unwrap(),
                r["seed"].as_u64().unwrap(),
                r["success"].as_bool().unwrap(),
                r["steps"].as_u64().unwrap(),
                format!("{:?}", r["final_distance"].as_f64()),
            )
        })
        .collect();
    v.sort();
    v
}

/// Random-action collection (coloured noise, beta 1) of `episodes` x `steps` with `seed`, two
/// workers, `chunk_episodes` per chunk: the small datasets the training tests learn from.
pub fn random_collect(
    episodes: u64,
    steps: u32,
    seed: u64,
    chunk_episodes: Option<u64>,
) -> zplan::collect::CollectConfig {
    zplan::collect::CollectConfig {
        episodes,
        steps,
        seed,
        beta: 1.0,
        scale: 1.0,
        action_repeat: 1,
        workers: 2,
        planner_fraction: 0.0,
        planner: None,
        chunk_episodes,
    }
}
