//! Reliability of the real binary against careless and hostile input (issue #16): failed
//! episodes never break a report, settings that can only fail are refused before any episode,
//! model files are verified, run directories defend themselves, and runs stop cleanly and
//! resume exactly however often they are killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{python, repo, scenario, stderr, zplan, ZPLAN};

/// Runs python code from the file `script` (TorchScript's compiler reads class sources, so the
/// code cannot come from `-c`), panicking with its output on failure.
fn run_python(script: &Path, code: &str, args: &[&str]) {
    std::fs::write(script, code).unwrap();
    let o = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(o.status.success(), "python failed: {}", stderr(&o));
}

/// A TorchScript model for two_rooms (state [2], action [2]) whose `predict` raises after
/// `fail_after` calls: a real exported model that fails mid-run.
fn export_flaky(out: &Path, fail_after: u32) {
    const CODE: &str = r#"
import sys, torch
from torch import nn
class Flaky(nn.Module):
    def __init__(self, fail_after: int):
        super().__init__()
        self.lin = nn.Linear(2, 4)
        self.calls = 0
        self.fail_after = fail_after
    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.lin(obs)
    @torch.jit.export
    def predict(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.fail_after:
            raise RuntimeError("injected failure after " + str(self.fail_after) + " calls")
        return z + 0.1 * torch.cat([a, a], dim=1)
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encode(obs)
torch.jit.script(Flaky(int(sys.argv[2]))).save(sys.argv[1])
"#;
    run_python(
        &out.with_extension("py"),
        CODE,
        &[out.to_str().unwrap(), &fail_after.to_string()],
    );
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// A fast simulator-backed suite: `episodes` episodes of two entries, `steps` steps each.
fn sim_suite(dir: &Path, name: &str, episodes: u64, steps: u32) -> PathBuf {
    write(
        &dir.join(format!("{name}.ron")),
        &format!(
            r#"Suite(name: "{name}", seed: 9, episodes: {episodes}, entries: [
    (name: "reach/sim", scenario: File("{reach}"), model: Sim,
     planner: Cem(samples: 16, elites: 4, iterations: 2, horizon: 3), max_steps: Some({steps})),
    (name: "rooms/sim", scenario: File("{rooms}"), model: Sim,
     planner: Cem(samples: 16, elites: 4, iterations: 2, horizon: 3), max_steps: Some({steps})),
])"#,
            reach = scenario("reach.ron"),
            rooms = scenario("two_rooms.ron"),
        ),
    )
}

fn results(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The deterministic facts of the records in `dir` (none when it has no results yet).
fn facts(dir: &Path) -> Vec<(String, u64, u64, bool, u64, String)> {
    common::facts(&results(dir))
}

#[test]
fn a_failing_entry_still_gets_its_summary_and_resume_and_merge_read_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("flaky.pt");
    export_flaky(&model, 40);
    let suite = write(
        &tmp.path().join("flaky.ron"),
        &format!(
            r#"Suite(name: "flaky", seed: 5, episodes: 3, entries: [
    (name: "good", scenario: File("{rooms}"), model: Sim,
     planner: Cem(samples: 16, elites: 4, iterations: 2, horizon: 4), max_steps: Some(4)),
    (name: "bad", scenario: File("{rooms}"), model: TorchScript("{model}"),
     planner: Cem(samples: 16, elites: 4, iterations: 2, horizon: 4), max_steps: Some(30)),
])"#,
            rooms = scenario("two_rooms.ron"),
            model = model.display()
        ),
    );
    let out = tmp.path().join("run");
    let o = zplan(&[
        "run",
        suite.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
        "--workers",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let row = |name: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no row for {name}: {md}"))
            .to_string()
    };
    assert!(row("good").ends_with("| 0 |"), "{md}");
    assert!(
        row("bad").ends_with("| 3 |"),
        "every bad episode errored: {md}"
    );
    let recs = results(&out);
    let bad: Vec<_> = recs.iter().filter(|r| r["entry"] == "bad").collect();
    assert_eq!(bad.len(), 3);
    for r in &bad {
        let e = r["error"].as_str().unwrap();
        assert!(e.contains("injected failure after 40 calls"), "{e}");
        assert_eq!(r["success"], false);
        // What the episode did before failing is kept.
        assert!(!r["distance_trace"].as_array().unwrap().is_empty());
    }
    // The first episode ran some plans before the model started failing.
    assert!(bad.iter().any(|r| r["steps"].as_u64().unwrap() > 0));
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains(",errors,"));

    let o = zplan(&["run", "--resume", out.to_str().unwrap(), "--no-progress"]);
    assert!(
        o.status.success(),
        "resume reads errored records: {}",
        stderr(&o)
    );
    let merged = tmp.path().join("merged");
    let o = zplan(&[
        "merge",
        out.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "merge reads errored records: {}",
        stderr(&o)
    );
    assert_eq!(facts(&merged), facts(&out));
}

#[test]
fn validate_refuses_what_can_only_fail_quickly_and_without_aborting() {
    let tmp = tempfile::tempdir().unwrap();
    let rooms = scenario("two_rooms.ron");
    let entry = |planner: &str, extra: &str| {
        format!(
            r#"Suite(name: "x", entries: [(name: "a", scenario: File("{rooms}"), model: Sim, planner: {planner}{extra})])"#
        )
    };
    let cases = [
        (
            entry(
                "Cem(samples: 10, elites: 2, iterations: 1, horizon: 2)",
                ", mpc: (replan_every: 3)",
            ),
            "exceed the plan",
        ),
        (
            entry(
                "Cem(samples: 10, elites: 2, iterations: 1, horizon: 4294967296)",
                "",
            ),
            "needs about",
        ),
        (
            entry("Cem(samples: 10, elites: 2, iterations: 1, horizon: 4)", "")
                .replace("entries:", "episodes: 4294967296, entries:"),
            "needs about",
        ),
        (
            entry("Cem(samples: 10, elites: 2, iterations: 0, horizon: 4)", ""),
            "cem.iterations",
        ),
        (
            entry(
                "Cem(samples: 1, elites: 1, iterations: 2, horizon: 4)",
                "",
            ),
            "include_mean",
        ),
        (
            entry(
                "Cem(samples: 10, elites: 2, iterations: 2, horizon: 4, init_std: 5.0)",
                "",
            ),
            "init_std",
        ),
        (
            entry("Cem(samples: 10, elites: 2, iterations: 2, horizon: 4)", "")
                .replace("(name: \"a\"", "(name: \"a/b\", scenario: File(\"SCEN\"), model: Sim, planner: Cem()), (name: \"a_b\"")
                .replace("SCEN", &rooms),
            "file name",
        ),
        (
            entry("Cem(samples: 10, elites: 2, iterations: 2, horizon: 4)", "")
                .replace("model: Sim", "model: Sim, mpc: (iterations: 0)"),
            "mpc.iterations",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let p = write(&tmp.path().join(format!("case{i}.ron")), text);
        let t = Instant::now();
        let o = zplan(&["validate", p.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "case {i} fails cleanly: {err}");
        assert!(err.contains(needle), "case {i}: expected `{needle}`: {err}");
        assert!(t.elapsed() < Duration::from_secs(20), "case {i}");
    }

    // Deep nesting is answered in well under a second beyond the process's own start-up
    // (loading libtorch), which is timed on a small valid file in the same conditions.
    let t = Instant::now();
    let o = zplan(&["validate", &scenario("reach.ron")]);
    let startup = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", stderr(&o));
    let deep = write(&tmp.path().join("deep.ron"), &"[".repeat(200_000));
    let t = Instant::now();
    let o = zplan(&["validate", deep.to_str().unwrap()]);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nest deeper than"), "{}", stderr(&o));
    assert!(
        secs < startup + 1.0,
        "answered in {secs:.2} s, start-up alone {startup:.2} s"
    );

    // Non-regular files are named as what they are; a BOM is fine.
    let o = zplan(&["validate", tmp.path().to_str().unwrap()]);
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    let o = zplan(&["validate", "/dev/zero"]);
    assert!(stderr(&o).contains("character device"), "{}", stderr(&o));
    let bom = tmp.path().join("bom.ron");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(std::fs::read(scenario("reach.ron")).unwrap());
    std::fs::write(&bom, bytes).unwrap();
    let o = zplan(&["validate", bom.to_str().unwrap()]);
    assert!(o.status.success(), "a BOM is accepted: {}", stderr(&o));
}

#[test]
fn model_files_are_verified_before_use() {
    let tmp = tempfile::tempdir().unwrap();
    let trained = repo().join("models/trained");
    let copy = |name: &str| {
        for ext in ["safetensors", "json"] {
            std::fs::copy(
                trained.join(format!("two_rooms.{ext}")),
                tmp.path().join(format!("{name}.{ext}")),
            )
            .unwrap();
        }
        tmp.path().join(format!("{name}.safetensors"))
    };
    let inspect = |m: &Path| {
        zplan(&[
            "model",
            "inspect",
            m.to_str().unwrap(),
            "--scenario",
            &scenario("two_rooms.ron"),
        ])
    };
    let ok = copy("ok");
    assert!(inspect(&ok).status.success(), "{}", stderr(&inspect(&ok)));

    // One flipped byte in the data region.
    let flipped = copy("flipped");
    let mut bytes = std::fs::read(&flipped).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    std::fs::write(&flipped, bytes).unwrap();
    let o = inspect(&flipped);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("checksum mismatch"), "{}", stderr(&o));

    // Absurd sizes in the sidecar: refused with an estimate, no abort.
    let huge = copy("huge");
    let side = huge.with_extension("json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&side).unwrap()).unwrap();
    v["config"]["pred_hidden"] = serde_json::json!(1_000_000_000i64);
    std::fs::write(&side, v.to_string()).unwrap();
    let o = inspect(&huge);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("needs about"), "{}", stderr(&o));

    // Finite but absurd weights (every entry 1e38), with a matching checksum: the load-time
    // probe refuses them.
    let big = copy("big");
    const CODE: &str = r#"
import sys, json, hashlib, torch
from safetensors.torch import load_file, save_file
w, side = sys.argv[1], sys.argv[2]
t = {k: torch.full_like(v, 1e38) for k, v in load_file(w).items()}
save_file(t, w)
d = json.load(open(side))
d["weights_sha256"] = hashlib.sha256(open(w, "rb").read()).hexdigest()
json.dump(d, open(side, "w"))
"#;
    run_python(
        &tmp.path().join("big.py"),
        CODE,
        &[
            big.to_str().unwrap(),
            big.with_extension("json").to_str().unwrap(),
        ],
    );
    let o = inspect(&big);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("NaN or Inf"), "{}", stderr(&o));

    // A directory where a model file should be is named as such.
    let dir = tmp.path().join("dir.pt");
    std::fs::create_dir(&dir).unwrap();
    let o = inspect(&dir);
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
}

#[test]
fn run_directories_defend_themselves() {
    let tmp = tempfile::tempdir().unwrap();
    let a = sim_suite(tmp.path(), "alpha", 2, 3);
    let b = sim_suite(tmp.path(), "beta", 3, 3);
    let (ra, rb) = (tmp.path().join("ra"), tmp.path().join("rb"));
    for (s, d) in [(&a, &ra), (&b, &rb)] {
        let o = zplan(&[
            "run",
            s.to_str().unwrap(),
            "--out",
            d.to_str().unwrap(),
            "--no-progress",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // Same entry names, different suites: no merge.
    let o = zplan(&[
        "merge",
        ra.to_str().unwrap(),
        rb.to_str().unwrap(),
        "--out",
        tmp.path().join("m").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("different suites"), "{}", stderr(&o));

    // Resuming with another suite is an error, with its own suite it is fine.
    let o = zplan(&["run", b.to_str().unwrap(), "--resume", ra.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is a run of suite"), "{}", stderr(&o));
    let o = zplan(&[
        "run",
        a.to_str().unwrap(),
        "--resume",
        ra.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Records that do not belong to the suite are refused, naming the line.
    let good = std::fs::read_to_string(ra.join("results.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(good.lines().next().unwrap()).unwrap();
    let tamper = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut r = first.clone();
        f(&mut r);
        format!("{good}{r}\n")
    };
    let cases = [
        (tamper(&|r| r["episode"] = 99.into()), "only 2 episodes"),
        (tamper(&|_| {}), "recorded twice"),
        (
            tamper(&|r| {
                r["episode"] = 1.into();
                r["seed"] = 12345.into();
            }),
            "seed 12345",
        ),
        (
            tamper(&|r| r["entry"] = "other".into()),
            "the record says `other`",
        ),
    ];
    let lines = good.lines().count();
    for (i, (text, needle)) in cases.iter().enumerate() {
        let d = tmp.path().join(format!("t{i}"));
        std::fs::create_dir(&d).unwrap();
        for f in ["run.json", "suite.ron"] {
            std::fs::copy(ra.join(f), d.join(f)).unwrap();
        }
        // The good record with the same key is dropped for the duplicate-free cases.
        std::fs::write(d.join("results.jsonl"), text).unwrap();
        let o = zplan(&["run", "--resume", d.to_str().unwrap(), "--no-progress"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "case {i}: {err}");
        assert!(err.contains(needle), "case {i}: expected `{needle}`: {err}");
        assert!(
            err.contains(&format!("results.jsonl:{}", lines + 1)),
            "case {i} names the line: {err}"
        );
        let o = zplan(&[
            "merge",
            d.to_str().unwrap(),
            "--out",
            d.join("m").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "merge refuses case {i} too");
    }
}

#[test]
fn a_second_run_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sim_suite(tmp.path(), "lock", 30, 20);
    let out = tmp.path().join("run");
    let mut first = Command::new(ZPLAN)
        .args([
            "run",
            s.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-progress",
            "--workers",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !out.join("run.lock").exists() && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = zplan(&["run", "--resume", out.to_str().unwrap(), "--no-progress"]);
    let still_running = first.try_wait().unwrap().is_none();
    first.kill().ok();
    first.wait().unwrap();
    if still_running {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("in use by another zplan run"),
            "{}",
            stderr(&o)
        );
    }
    // After the first is gone the lock is free again.
    let o = zplan(&["run", "--resume", out.to_str().unwrap(), "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(results(&out).len(), 60);
}

/// Waits until `dir`'s results hold at least `n` lines or the child exits.
fn wait_for_records(child: &mut std::process::Child, dir: &Path, n: usize) {
    let t = Instant::now();
    while results_lines(dir) < n && t.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn results_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn spawn_run(args: &[&str]) -> std::process::Child {
    Command::new(ZPLAN)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn sigint_stops_cleanly_and_says_how_to_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sim_suite(tmp.path(), "sig", 10, 15);
    let out = tmp.path().join("run");
    let o_str = out.to_str().unwrap();
    let mut child = spawn_run(&[
        "run",
        s.to_str().unwrap(),
        "--out",
        o_str,
        "--no-progress",
        "--workers",
        "1",
    ]);
    wait_for_records(&mut child, &out, 2);
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    if o.status.success() {
        return; // finished before the signal arrived: nothing to check
    }
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains(&format!("zplan run --resume {o_str}")),
        "{err}"
    );
    let n = results_lines(&out);
    assert!((2..20).contains(&n), "{n} completed episodes flushed");
    let o = zplan(&["run", "--resume", o_str, "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(results_lines(&out), 20);
}

#[test]
fn twenty_kills_then_resume_equal_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sim_suite(tmp.path(), "kills", 30, 12);
    let clean = tmp.path().join("clean");
    let o = zplan(&[
        "run",
        s.to_str().unwrap(),
        "--out",
        clean.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let total = results_lines(&clean);
    assert_eq!(total, 60);

    let out = tmp.path().join("killed");
    let o_str = out.to_str().unwrap();
    // A fixed pseudo-random sequence of kill points: after k more records, plus a delay.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut kills = 0;
    let mut runs = 0;
    while results_lines(&out) < total && runs < 200 {
        runs += 1;
        let mut child = if out.join("run.json").exists() {
            spawn_run(&["run", "--resume", o_str, "--no-progress"])
        } else {
            spawn_run(&["run", s.to_str().unwrap(), "--out", o_str, "--no-progress"])
        };
        if kills < 20 {
            let have = results_lines(&out);
            wait_for_records(&mut child, &out, have + (next() % 2) as usize);
            std::thread::sleep(Duration::from_millis(next() % 15));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
        }
        let o = child.wait_with_output().unwrap();
        if o.status.code().is_some() {
            assert!(o.status.success(), "{}", stderr(&o));
        }
    }
    assert!(kills >= 20, "only {kills} kills landed mid-run");
    assert_eq!(results_lines(&out), total, "0 lost, 0 duplicated");
    assert_eq!(
        facts(&out),
        facts(&clean),
        "identical to the uninterrupted run"
    );
}
