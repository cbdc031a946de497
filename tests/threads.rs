//! The threads a suite run keeps alive.
//!
//! `zplan run` starts one worker per episode slot and gives every worker `cores / workers`
//! threads, counted for libtorch's intra-op pool and the simulator-backed model's rollout pool
//! alike; the simulator-backed model's threads persist for the whole run instead of being
//! spawned for every rollout. These tests run the real binary on a small suite of
//! simulator-backed and JEPA entries and watch `/proc/<pid>/task` while it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A suite of a simulator-backed entry on two_rooms and one on reach (several rollouts per
/// plan, dozens of plans per episode), plus the shipped two_rooms JEPA.
fn write_suite(dir: &Path) -> PathBuf {
    let scen = repo().join("scenarios");
    let model = repo().join("models/trained/two_rooms.safetensors");
    let text = format!(
        r#"Suite(
    name: "threads",
    seed: 5,
    episodes: 3,
    entries: [
        (
            name: "two_rooms/sim",
            scenario: File("{tr}"),
            model: Sim,
            planner: Cem(samples: 48, elites: 6, iterations: 2, horizon: 8),
            mpc: (replan_every: 2),
            max_steps: Some(30),
        ),
        (
            name: "reach/sim",
            scenario: File("{re}"),
            model: Sim,
            planner: Cem(samples: 32, elites: 4, iterations: 2, horizon: 4),
            mpc: (replan_every: 2),
            max_steps: Some(16),
        ),
        (
            name: "two_rooms/jepa",
            scenario: File("{tr}"),
            model: Jepa("{model}"),
            planner: Cem(samples: 64, elites: 8, iterations: 2, horizon: 8),
            mpc: (replan_every: 2),
            max_steps: Some(30),
        ),
    ],
)
"#,
        tr = scen.join("two_rooms.ron").display(),
        re = scen.join("reach.ron").display(),
        model = model.display(),
    );
    let path = dir.join("threads.ron");
    std::fs::write(&path, text).unwrap();
    path
}

/// What the watcher saw: every thread id with its name, and the most alive at once.
struct Watched {
    names: BTreeMap<u32, String>,
    max_alive: usize,
    max_sim_alive: usize,
    samples: usize,
}

fn watch(workers: usize) -> Watched {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_zplan"))
        .args(["run", suite.to_str().unwrap(), "--no-progress", "--out"])
        .arg(dir.path().join("run"))
        .args(["--workers", &workers.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let task = PathBuf::from(format!("/proc/{}/task", child.id()));
    let mut seen = Watched {
        names: BTreeMap::new(),
        max_alive: 0,
        max_sim_alive: 0,
        samples: 0,
    };
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "run took too long"
        );
        let Ok(entries) = std::fs::read_dir(&task) else {
            break;
        };
        let mut alive = 0;
        let mut sim_alive = 0;
        for e in entries.flatten() {
            let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let name = std::fs::read_to_string(e.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            alive += 1;
            sim_alive += usize::from(name.starts_with("zplan-sim-"));
            seen.names.entry(tid).or_insert(name);
        }
        seen.max_alive = seen.max_alive.max(alive);
        seen.max_sim_alive = seen.max_sim_alive.max(sim_alive);
        seen.samples += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "zplan run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = std::fs::read_to_string(dir.path().join("run/results.jsonl")).unwrap();
    assert_eq!(results.lines().count(), 9, "every episode ran");
    seen
}

fn check(workers: usize) {
    let w = watch(workers);
    let per_worker = (cores() / workers).max(1);
    let names: BTreeSet<&String> = w.names.values().collect();
    eprintln!(
        "--workers {workers} on {} cores: {} samples, max {} threads alive, {} distinct threads {:?}, max {} simulator threads",
        cores(),
        w.samples,
        w.max_alive,
        w.names.len(),
        names,
        w.max_sim_alive
    );
    assert!(
        w.samples > 20,
        "the watcher saw the run ({} samples)",
        w.samples
    );
    // The simulator-backed models' pools: `per_worker - 1` persistent threads per model.
    assert!(
        w.max_sim_alive <= 2 * (per_worker - 1),
        "at most {} simulator threads per model, saw {} alive",
        per_worker - 1,
        w.max_sim_alive
    );
    // Computing threads: the workers, each with `per_worker - 1` libtorch helpers, and the
    // simulator pools (idle while libtorch computes); plus the main thread and a little slack
    // for threads libtorch and the runtime start once.
    let bound = 1 + workers * per_worker + 2 * (per_worker - 1) + 3;
    assert!(
        w.max_alive <= bound,
        "{} threads alive at once, more than {bound}",
        w.max_alive
    );
    // Threads persist: a thread spawned per rollout would show up as hundreds of distinct
    // thread ids over the run (the suite makes thousands of rollouts).
    assert!(
        w.names.len() <= bound + workers,
        "{} distinct threads over the run: threads are being spawned per call ({:?})",
        w.names.len(),
        w.names
    );
}

#[test]
fn one_worker_per_core_adds_no_simulator_threads() {
    check(cores());
}

#[test]
fn one_worker_gets_every_core() {
    check(1);
}

/// `--torch-threads` is accepted (every episode runs) and 0 is refused with the flag named.
/// (Results are not compared: libtorch's sums may split differently across thread counts.)
#[test]
fn torch_threads_override_runs_every_episode() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path());
    let run = |name: &str, threads: &str| -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_zplan"))
            .args([
                "run",
                suite.to_str().unwrap(),
                "--no-progress",
                "--workers",
                "1",
            ])
            .args(["--torch-threads", threads, "--out"])
            .arg(dir.path().join(name))
            .output()
            .unwrap()
    };
    let ok = run("one", "1");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let results = std::fs::read_to_string(dir.path().join("one/results.jsonl")).unwrap();
    assert_eq!(results.lines().count(), 9, "every episode ran");
    let bad = run("zero", "0");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--torch-threads"), "{err}");
}
