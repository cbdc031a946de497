//! End-to-end tests of `zplan run`, `--resume`, `--shard` and `zplan merge` on real scenarios
//! with the simulator-backed world model (the real binary, the real Rapier worlds).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{facts, records, zplan, ZPLAN};

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// A small, fast suite: two entries on two scenarios, short episodes.
fn write_suite(dir: &Path, episodes: u64) -> PathBuf {
    let s = scenarios();
    let text = format!(
        r#"// test suite
Suite(
    name: "e2e",
    seed: 11,
    episodes: {episodes},
    entries: [
        (
            name: "reach/sim",
            scenario: File("{reach}"),
            model: Sim,
            planner: Cem(samples: 24, elites: 6, iterations: 2, horizon: 4),
            energy: (metric: L2, reduction: Sum),
            max_steps: Some(6),
        ),
        (
            name: "rooms/sim",
            scenario: File("{rooms}"),
            model: Sim,
            planner: Mppi(samples: 24, elites: 6, iterations: 2, horizon: 4),
            mpc: (replan_every: 2),
            max_steps: Some(6),
        ),
    ],
)
"#,
        reach = s.join("reach.ron").display(),
        rooms = s.join("two_rooms.ron").display(),
    );
    let p = dir.join("suite.ron");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn small_suite_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(tmp.path(), 2);
    let out = tmp.path().join("run");
    let o = zplan(&[
        "run",
        suite.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("| reach/sim |"),
        "terminal ends with the summary table: {stdout}"
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 4);
    for r in &recs {
        for field in [
            "entry",
            "scenario",
            "model",
            "planner",
            "episode",
            "seed",
            "success",
            "steps",
            "final_distance",
            "plan_ms_p50",
            "plan_ms_p99",
            "error",
        ] {
            assert!(r.get(field).is_some(), "missing `{field}` in {r}");
        }
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["steps"].as_u64(), Some(6));
        let seed = r["seed"].as_u64().unwrap();
        assert!(
            seed >= 1 << 32,
            "evaluation seeds come from the evaluation range"
        );
    }
    for f in [
        "summary.csv",
        "summary.md",
        "success.png",
        "success.svg",
        "latency.png",
        "latency.svg",
        "distance.png",
        "distance.svg",
        "filmstrip_reach_sim.png",
        "filmstrip_rooms_sim.png",
        "run.json",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains("success_ci_low"));
    assert_eq!(csv.lines().count(), 3);
}

#[test]
fn shards_merge_to_the_unsharded_results() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(tmp.path(), 3);
    let s = suite.to_str().unwrap();
    let full = tmp.path().join("full");
    let a = tmp.path().join("s0");
    let b = tmp.path().join("s1");
    let merged = tmp.path().join("merged");
    for (dir, shard) in [(&full, None), (&a, Some("0/2")), (&b, Some("1/2"))] {
        let mut args = vec![
            "run",
            s,
            "--out",
            dir.to_str().unwrap(),
            "--no-progress",
            "--device",
            "cpu",
        ];
        if let Some(sh) = shard {
            args.extend(["--shard", sh]);
        }
        let o = zplan(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(records(&a).len() + records(&b).len(), 6);
    let o = zplan(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(facts(&records(&merged)), facts(&records(&full)));
    // The deterministic summary columns agree too.
    let cols = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("summary.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(11).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(cols(&merged), cols(&full));
}

#[test]
fn resume_after_kill_loses_nothing_and_repeats_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(tmp.path(), 5);
    let s = suite.to_str().unwrap();
    let out = tmp.path().join("killed");
    let mut child = Command::new(ZPLAN)
        .args([
            "run",
            s,
            "--out",
            out.to_str().unwrap(),
            "--no-progress",
            "--workers",
            "1",
            "--device",
            "cpu",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as the first episode is on disk.
    let started = Instant::now();
    loop {
        let n = std::fs::read_to_string(out.join("results.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= 1 || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("zplan run ended before it could be killed: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = records(&out).len();
    assert!(
        (1..10).contains(&before),
        "killed mid-run, {before} episodes recorded"
    );
    let o = zplan(&["run", "--resume", out.to_str().unwrap(), "--no-progress"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recs = records(&out);
    assert_eq!(recs.len(), 10, "every episode exactly once");
    let resumed = facts(&recs);
    let mut keys: Vec<_> = resumed.iter().map(|f| (f.0.clone(), f.1)).collect();
    keys.dedup();
    assert_eq!(keys.len(), 10, "no episode run twice");
    // Same results as an uninterrupted run.
    let clean = tmp.path().join("clean");
    let o = zplan(&[
        "run",
        s,
        "--out",
        clean.to_str().unwrap(),
        "--no-progress",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success());
    assert_eq!(resumed, facts(&records(&clean)));
}

#[test]
fn malformed_suite_fails_before_any_episode() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("Suite(name: \"x\", entries: [ (name: \"a\", scenario: File(\"nope.ron\"), model: Sim, planner: Cem()) ])", "nope.ron"),
        ("Suite(name: \"x\", entries: [ (name: \"a\", scenario: File(\"reach.ron\"), model: Sim, planner: Cem(elites: 500, samples: 10)) ])", "elites"),
        ("Suite(name: \"x\", bogus: 1, entries: [])", "bogus"),
        ("Suite(name: \"x\", entries: [ (name: \"a\", scenario: File(\"reach.ron\"), model: Jepa(\"missing.safetensors\"), planner: Cem()) ])", "missing"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(scenarios().join("reach.ron"), dir.join("reach.ron")).unwrap();
        let suite = dir.join("suite.ron");
        std::fs::write(&suite, text).unwrap();
        let out = dir.join("out");
        let o = zplan(&[
            "run",
            suite.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-progress",
            "--device",
            "cpu",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "case {i} should fail");
        assert!(
            err.contains("suite.ron"),
            "case {i}: error names the file: {err}"
        );
        assert!(
            err.contains(needle),
            "case {i}: error mentions `{needle}`: {err}"
        );
        assert!(
            !out.join("results.jsonl").exists(),
            "case {i}: no episode ran"
        );
        let v = zplan(&["validate", suite.to_str().unwrap()]);
        assert!(!v.status.success(), "validate rejects case {i}");
    }
}
