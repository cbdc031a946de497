//! `--precision` and `precision:` end to end: the flags and the suite field parse and refuse
//! other values clearly, bf16 is refused for the simulator-backed model, run manifests record
//! the override for `--resume`, and a bf16 JEPA still plans the reach arm to its goal.

use std::path::{Path, PathBuf};

mod common;
use common::{ok, records, repo, text, zplan};

/// A suite of one reach entry with the shipped JEPA model; `extra` is added to the entry.
fn reach_suite(dir: &Path, planner: &str, max_steps: u32, extra: &str) -> PathBuf {
    let text = format!(
        r#"Suite(
    name: "bf16",
    seed: 2026,
    episodes: 2,
    entries: [
        (
            name: "reach/jepa",
            scenario: File("{scenario}"),
            model: Jepa("{model}"),
            planner: {planner},
            energy: (metric: L2, reduction: Sum),
            mpc: (replan_every: 4),
            max_steps: Some({max_steps}),
            seeds_from: Some("reach"),{extra}
        ),
    ],
)
"#,
        scenario = repo().join("scenarios/reach.ron").display(),
        model = repo().join("models/trained/reach.safetensors").display(),
    );
    let p = dir.join("suite.ron");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_bf16_jepa_plans_the_reach_arm_to_its_goal() {
    let tmp = tempfile::tempdir().unwrap();
    // The default suite's reach entry with a smaller budget, so the test takes seconds.
    let suite = reach_suite(
        tmp.path(),
        "Cem(samples: 64, elites: 8, iterations: 3, horizon: 10)",
        40,
        "\n            precision: Bf16,",
    );
    let out = tmp.path().join("run");
    let o = zplan(&[
        "run",
        suite.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ]);
    let (_, stderr) = ok(&o);
    assert!(!stderr.contains("panic"), "{stderr}");
    let recs = records(&out);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        assert!(r["error"].is_null(), "{r}");
        assert!(
            r["first_success_step"].as_u64().is_some_and(|s| s <= 40),
            "episode {} never reached the goal with bf16: {r}",
            r["episode"]
        );
    }
    // The entry asked for bf16 itself: no override in the manifest, and resuming with one
    // would mix precisions in one run.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert!(manifest["precision"].is_null(), "{manifest}");
    let o = zplan(&[
        "run",
        "--resume",
        out.to_str().unwrap(),
        "--precision",
        "fp32",
    ]);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(stderr.contains("must not mix precisions"), "{stderr}");
}

#[test]
fn run_records_the_precision_override_and_resume_repeats_it() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = reach_suite(
        tmp.path(),
        "Cem(samples: 8, elites: 2, iterations: 1, horizon: 4)",
        2,
        "",
    );
    let out = tmp.path().join("run");
    let (_, stderr) = ok(&zplan(&[
        "run",
        suite.to_str().unwrap(),
        "--precision",
        "bf16",
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ]));
    assert!(stderr.contains("precision bf16"), "{stderr}");
    let manifest = std::fs::read_to_string(out.join("run.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(v["precision"], "Bf16", "{manifest}");
    // Lose the second episode, as an interrupted run would, and resume: bf16 again.
    let results = out.join("results.jsonl");
    let first = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&results, format!("{first}\n")).unwrap();
    let o = zplan(&["run", "--resume", out.to_str().unwrap(), "--no-progress"]);
    let (stdout, stderr) = ok(&o);
    assert!(stderr.contains("precision bf16"), "{stderr}");
    assert!(
        stdout.contains("1 episodes run now, 1 from before"),
        "{stdout}"
    );
    let o = zplan(&[
        "run",
        "--resume",
        out.to_str().unwrap(),
        "--precision",
        "fp32",
    ]);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(
        stderr.contains("was run with --precision bf16, not with --precision fp32"),
        "{stderr}"
    );
    // A manifest written before `precision` existed still resumes (as no override).
    let old = manifest.replace("\"precision\": \"Bf16\",", "");
    assert_ne!(old, manifest);
    std::fs::write(out.join("run.json"), old).unwrap();
    ok(&zplan(&[
        "run",
        "--resume",
        out.to_str().unwrap(),
        "--no-progress",
    ]));
}

#[test]
fn precision_flags_take_fp32_or_bf16_only() {
    let model = repo().join("models/trained/reach.safetensors");
    let model = model.to_str().unwrap();
    let bad = [
        vec!["run", "--precision", "fp16"],
        vec!["bench-plan", "--model", model, "--precision", "fp16"],
        vec!["model", "inspect", model, "--precision", "fp16"],
    ];
    for args in bad {
        let o = zplan(&args);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("'--precision <PRECISION>'")
                && stderr.contains("unknown precision `fp16`: expected fp32 or bf16"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn suites_refuse_bf16_for_sim_and_bad_values_naming_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let reach = repo().join("scenarios/reach.ron");
    let write = |model: &str, precision: &str| {
        let p = tmp.path().join("s.ron");
        std::fs::write(
            &p,
            format!(
                "Suite(name: \"s\", entries: [(\n    name: \"reach/x\",\n    scenario: File(\"{}\"),\n    \
                 model: {model},\n    planner: Cem(samples: 8, elites: 2, iterations: 1, horizon: 2),\n    \
                 precision: {precision},\n)])\n",
                reach.display()
            ),
        )
        .unwrap();
        p
    };
    let o = zplan(&["validate", write("Sim", "Bf16").to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(
        stderr.contains("entry `reach/x`: `precision: Bf16` needs a model with weights")
            && stderr.contains("`Sim`"),
        "{stderr}"
    );
    let o = zplan(&["validate", write("Sim", "bf16").to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(
        stderr.contains("s.ron:6:") && stderr.contains("entry `reach/x`: `precision`:"),
        "{stderr}"
    );
    let (stdout, _) = ok(&zplan(&[
        "validate",
        write("Sim", "Fp32").to_str().unwrap(),
    ]));
    assert!(stdout.contains("ok"), "{stdout}");
    let jepa = format!(
        "Jepa(\"{}\")",
        repo().join("models/trained/reach").display()
    );
    let (stdout, _) = ok(&zplan(&[
        "validate",
        write(&jepa, "Bf16").to_str().unwrap(),
    ]));
    assert!(stdout.contains(" in bf16 latent [32]"), "{stdout}");
}

#[test]
fn inspect_bench_plan_and_info_report_bf16() {
    let model = repo().join("models/trained/reach.safetensors");
    let scenario = repo().join("scenarios/reach.ron");
    let (stdout, _) = ok(&zplan(&[
        "model",
        "inspect",
        model.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--batch",
        "16",
        "--horizon",
        "4",
    ]));
    assert!(stdout.contains("precision:      bf16"), "{stdout}");
    assert!(
        stdout.contains("bf16 vs fp32:   latents max |diff|"),
        "{stdout}"
    );
    let o = zplan(&[
        "model",
        "inspect",
        "sim",
        "--scenario",
        scenario.to_str().unwrap(),
        "--precision",
        "bf16",
    ]);
    let (_, stderr) = text(&o);
    assert!(!o.status.success() && stderr.contains("`Sim`"), "{stderr}");

    let (stdout, _) = ok(&zplan(&[
        "bench-plan",
        "--model",
        model.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
        "--precision",
        "bf16",
        "--samples",
        "16",
        "--horizon",
        "4",
        "--iters",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--matmul-size",
        "64",
    ]));
    assert!(stdout.contains("on cpu in bf16"), "{stdout}");
    assert!(stdout.contains("64x64 bf16 matmul"), "{stdout}");

    let (stdout, _) = ok(&zplan(&["info"]));
    assert!(stdout.contains("bf16 units      AVX512-BF16 "), "{stdout}");
    let (json, _) = ok(&zplan(&["info", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["bf16_units"]["avx512_bf16"].is_boolean(), "{json}");
}
