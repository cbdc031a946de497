//! In-process fuzzing of every file and string zplan reads from users (issue #16, item 3),
//! run by `cargo test` (so by `./test.sh`) with no nightly flags: the entry points of the
//! cargo-fuzz targets in `fuzz/` (see `fuzz/README.md`), fed arbitrary bytes and structured
//! mutations of valid files (truncation, byte flips, deep nesting, huge and non-finite numbers,
//! a byte-order mark, invalid UTF-8). Every call must return (no panic) within a time bound,
//! and every refusal must carry a non-empty message. The regressions at the bottom are inputs
//! the fuzz campaign found.

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use zplan::collect::{CollectConfig, DatasetMeta};
use zplan::suite::{LoadedSuite, Suite};
use zplan_io::MAX_CONFIG_BYTES;
use zplan_models::{JepaConfig, JepaNets, JepaSidecar};
use zplan_planner::{EnergyConfig, MpcConfig, PlannerConfig};
use zplan_sim::ScenarioConfig;

/// Longest any single parse may take (debug build, busy machine): a hostile input is refused
/// in well under this.
const BOUND: Duration = Duration::from_secs(2);

/// Every scenario file the default suite references (and the other pixel scenarios): a suite
/// entry whose file is missing here fails `valid_seeds_pass` with the name.
const SCENARIOS: [(&str, &str); 7] = [
    ("reach.ron", include_str!("../scenarios/reach.ron")),
    ("two_rooms.ron", include_str!("../scenarios/two_rooms.ron")),
    ("push.ron", include_str!("../scenarios/push.ron")),
    (
        "reach_pixels.ron",
        include_str!("../scenarios/reach_pixels.ron"),
    ),
    (
        "two_rooms_pixels.ron",
        include_str!("../scenarios/two_rooms_pixels.ron"),
    ),
    (
        "two_rooms_doors.ron",
        include_str!("../scenarios/two_rooms_doors.ron"),
    ),
    (
        "push_pixels.ron",
        include_str!("../scenarios/push_pixels.ron"),
    ),
];
const SUITE: &str = include_str!("../scenarios/default.ron");
const PLANNERS: [&str; 4] = [
    "Cem(samples: 300, elites: 30, iterations: 5, horizon: 15)",
    "ICem(samples: 100, elites: 10, iterations: 3, horizon: 8)",
    "Mppi(samples: 100, elites: 10, iterations: 2, horizon: 8, temperature: 0.5)",
    "Gradient(steps: 5, horizon: 8, lr: 0.1, samples: 4)",
];
const ENERGIES: [&str; 2] = [
    "(metric: L2, reduction: Sum, action_weight: 0.02)",
    "(metric: L1, reduction: Discounted(0.9), latent_weights: [1.0, 0.5], proprio_weight: 0.1)",
];
const MPCS: [&str; 2] = [
    "(replan_every: 2, action_block: 2)",
    "(replan_every: 1, iterations: Some(3), deadline_ms: Some(50.0), warm_start: false)",
];
const RESULTS_SUITE: &str = r#"Suite(name: "fuzz", seed: 7, episodes: 3, entries: [
    (name: "a", scenario: File("reach.ron"), model: Sim, planner: Cem(samples: 4, elites: 2, iterations: 1, horizon: 2)),
    (name: "b", scenario: File("reach.ron"), model: Sim, planner: Cem(samples: 4, elites: 2, iterations: 1, horizon: 2), episodes: Some(2)),
])"#;

/// Runs `f`, asserting it returns within [`BOUND`] and that an error has a message.
fn check<T, E: std::fmt::Display>(what: &str, f: impl FnOnce() -> Result<T, E>) -> Option<T> {
    let t = Instant::now();
    let r = f();
    let took = t.elapsed();
    assert!(took < BOUND, "{what}: took {took:?}");
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let m = format!("{e:#}");
            assert!(!m.trim().is_empty(), "{what}: empty error message");
            None
        }
    }
}

/// A scratch directory with the scenario files a suite may reference.
fn dir() -> &'static Path {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in SCENARIOS {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    })
    .path()
}

// ---- the entry points (as the fuzz targets call them) ----

fn scenario(bytes: &[u8]) {
    let text = check("scenario bytes", || {
        zplan_io::text_from_bytes("f.ron", bytes.to_vec(), "a scenario file", MAX_CONFIG_BYTES)
    });
    if let Some(text) = text {
        if let Some(cfg) = check("scenario", || ScenarioConfig::from_ron_str(&text, "f.ron")) {
            let again = cfg.to_ron_string();
            ScenarioConfig::from_ron_str(&again, "round trip").unwrap();
            // A scenario that validates must build and reset (the fuzz target skips this for
            // speed).
            if let Some(mut env) = check("build", || cfg.build()) {
                check("reset", || env.reset(1));
            }
        }
    }
}

fn suite(bytes: &[u8]) {
    let text = check("suite bytes", || {
        zplan_io::text_from_bytes("s.ron", bytes.to_vec(), "a suite file", MAX_CONFIG_BYTES)
    });
    if let Some(text) = text {
        if let Some(s) = check("suite", || {
            LoadedSuite::from_text(&dir().join("suite.ron"), text)
        }) {
            assert!(!s.suite.entries.is_empty());
        }
    }
}

fn planner_strings(text: &str) {
    if let Some(p) = check("planner", || PlannerConfig::from_ron_str(text)) {
        PlannerConfig::from_ron_str(&p.to_ron_string()).unwrap();
    }
    check("energy", || EnergyConfig::from_ron_str(text));
    if let Some(m) = check("mpc", || MpcConfig::from_ron_str(text)) {
        let _ = m.budget();
        check("mpc horizon", || m.validate_for_horizon(usize::MAX));
    }
}

fn sidecar(bytes: &[u8]) {
    let text = check("sidecar bytes", || {
        zplan_io::text_from_bytes("m.json", bytes.to_vec(), "a JEPA sidecar", MAX_CONFIG_BYTES)
    });
    if let Some(text) = text {
        if let Some(s) = check("sidecar", || JepaSidecar::parse(&text, Path::new("m.json"))) {
            let _ = s.config.param_estimate();
        }
    }
}

fn results(bytes: &[u8]) {
    static S: OnceLock<Suite> = OnceLock::new();
    let suite = S.get_or_init(|| Suite::parse(RESULTS_SUITE, "r.ron").unwrap());
    if let Some(recs) = check("results", || {
        zplan::results::read_results_from(bytes, "results.jsonl")
    }) {
        check("records", || {
            zplan::runner::check_records(suite, Path::new("results.jsonl"), &recs)
        });
    }
}

/// A small collected dataset (reach, 2 episodes of 4 steps): its folder and description.
fn dataset() -> (&'static Path, &'static DatasetMeta) {
    static D: OnceLock<(tempfile::TempDir, DatasetMeta)> = OnceLock::new();
    let (d, m) = D.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let sc = ScenarioConfig::from_ron_str(SCENARIOS[0].1, "reach.ron").unwrap();
        let cfg = CollectConfig {
            episodes: 2,
            steps: 4,
            seed: 1,
            beta: 1.0,
            scale: 0.5,
            action_repeat: 1,
            workers: 1,
            chunk_episodes: None,
            planner_fraction: 0.0,
            planner: None,
        };
        let meta = zplan::collect::collect(&sc, &cfg, &d.path().join("data"), false).unwrap();
        (d, meta)
    });
    static P: OnceLock<PathBuf> = OnceLock::new();
    (P.get_or_init(|| d.path().join("data")), m)
}

fn meta(bytes: &[u8]) {
    let text = check("meta bytes", || {
        zplan_io::text_from_bytes(
            "meta.json",
            bytes.to_vec(),
            "a dataset description",
            zplan::train::MAX_META_BYTES,
        )
    });
    if let Some(text) = text {
        check("meta", || {
            zplan::train::parse_meta(&text, Path::new("meta.json"))
        });
    }
}

fn chunk(bytes: &[u8]) {
    let (_, m) = dataset();
    let spec = m.scenario.spec();
    check("chunk", || {
        zplan::dataset::chunk_from_bytes(
            Path::new("chunk-00000.safetensors"),
            bytes,
            &m.chunks[0],
            m.observation.as_ref().unwrap(),
            spec.state_dim(),
            spec.action_dim(),
            m.steps as usize,
        )
    });
}

/// A saved tiny JEPA with no checksum in its sidecar (so any weights reach the reader).
fn jepa() -> &'static Path {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = JepaConfig::new(2, 2);
        cfg.latent_dim = 4;
        cfg.enc_hidden = 8;
        cfg.enc_layers = 1;
        cfg.pred_hidden = 8;
        cfg.pred_layers = 1;
        let nets = JepaNets::new(cfg, tch::Device::Cpu).unwrap();
        nets.save(d.path().join("m.safetensors")).unwrap();
        let side = d.path().join("m.json");
        let mut s = JepaSidecar::read(&side).unwrap();
        s.weights_sha256 = None;
        s.write(&side).unwrap();
        d
    })
    .path()
}

fn weights(bytes: &[u8]) {
    // One weights file shared by the cases: proptest runs them one after another.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = jepa().join("w.safetensors");
    let side = jepa().join("w.json");
    if !side.exists() {
        std::fs::copy(jepa().join("m.json"), &side).unwrap();
    }
    std::fs::write(&path, bytes).unwrap();
    check("weights", || JepaNets::load(&path, tch::Device::Cpu));
}

// ---- structured mutations ----

/// Hostile variants of a valid text: truncations, nests, huge and non-finite numbers, a BOM,
/// invalid UTF-8, each at a position chosen by proptest.
fn mutate(seed: &str, kind: u8, at: usize, n: usize) -> Vec<u8> {
    let b = seed.as_bytes();
    let at = if b.is_empty() { 0 } else { at % (b.len() + 1) };
    let mut out = Vec::with_capacity(b.len() + 64);
    let splice = |ins: &[u8]| {
        let mut v = b[..at].to_vec();
        v.extend_from_slice(ins);
        v.extend_from_slice(&b[at..]);
        v
    };
    match kind % 12 {
        0 => out.extend_from_slice(&b[..at]),
        1 => {
            out = b.to_vec();
            if at < out.len() {
                out[at] ^= 1 << (n % 8);
            }
        }
        2 => out = splice("[".repeat(n % 5000).as_bytes()),
        3 => out = splice("({".repeat(n % 3000).as_bytes()),
        4 => out = splice(b"18446744073709551616"),
        5 => out = splice(b"1e400"),
        6 => out = splice(["NaN", "inf", "-inf", "-0", "1e-45", "4294967296"][n % 6].as_bytes()),
        7 => {
            out = vec![0xEF, 0xBB, 0xBF];
            out.extend_from_slice(b);
        }
        8 => out = splice(&[0xFF, 0xC3, 0x28][..1 + n % 3]),
        9 => out = splice(b"\""),
        10 => {
            // Replace the number at the position with a huge one.
            let mut v = b.to_vec();
            if let Some(p) = v[at..].iter().position(|c| c.is_ascii_digit()) {
                let s = at + p;
                let e = s + v[s..].iter().take_while(|c| c.is_ascii_digit()).count();
                v.splice(
                    s..e,
                    (n as u64)
                        .wrapping_mul(1_000_003)
                        .to_string()
                        .repeat(4)
                        .bytes(),
                );
            }
            out = v;
        }
        _ => out = splice(b"/*"),
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn scenario_arbitrary(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        scenario(&bytes);
    }

    #[test]
    fn scenario_mutated(i in 0usize..4, kind in any::<u8>(), at in any::<usize>(), n in any::<usize>()) {
        scenario(&mutate(SCENARIOS[i].1, kind, at, n));
    }

    #[test]
    fn suite_arbitrary(s in "\\PC{0,300}") {
        suite(s.as_bytes());
    }

    #[test]
    fn suite_mutated(kind in any::<u8>(), at in any::<usize>(), n in any::<usize>()) {
        suite(&mutate(SUITE, kind, at, n));
    }

    #[test]
    fn planner_arbitrary(s in "[A-Za-z(){}\\[\\]:,. 0-9eE+-]{0,120}") {
        planner_strings(&s);
    }

    #[test]
    fn planner_mutated(i in 0usize..8, kind in any::<u8>(), at in any::<usize>(), n in any::<usize>()) {
        let seed = PLANNERS.iter().chain(&ENERGIES).chain(&MPCS).nth(i).unwrap();
        let bytes = mutate(seed, kind, at, n);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            planner_strings(s);
        }
    }

    #[test]
    fn sidecar_mutated(kind in any::<u8>(), at in any::<usize>(), n in any::<usize>()) {
        let text = std::fs::read_to_string(jepa().join("m.json")).unwrap();
        sidecar(&mutate(&text, kind, at, n));
    }

    #[test]
    fn results_arbitrary(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        results(&bytes);
    }

    #[test]
    fn results_mutated(kind in any::<u8>(), at in any::<usize>(), n in any::<usize>(), ep in 0u64..4) {
        let suite = Suite::parse(RESULTS_SUITE, "r.ron").unwrap();
        let line = record_line(&suite, 0, ep);
        let text = format!("{line}\n{}\n", record_line(&suite, 1, 1));
        results(&mutate(&text, kind, at, n));
    }

    #[test]
    fn meta_mutated(kind in any::<u8>(), at in any::<usize>(), n in any::<usize>()) {
        let text = std::fs::read_to_string(dataset().0.join("meta.json")).unwrap();
        meta(&mutate(&text, kind, at, n));
    }

    #[test]
    fn chunk_mutated(at in any::<usize>(), bit in 0u8..8, cut in any::<bool>()) {
        let (dir, m) = dataset();
        let mut bytes = std::fs::read(dir.join(&m.chunks[0].file)).unwrap();
        let at = at % bytes.len();
        if cut { bytes.truncate(at) } else { bytes[at] ^= 1 << bit }
        chunk(&bytes);
    }

    #[test]
    fn weights_mutated(at in any::<usize>(), bit in 0u8..8, cut in any::<bool>()) {
        let mut bytes = std::fs::read(jepa().join("m.safetensors")).unwrap();
        // Most of the file is data; aim half of the cases at the header.
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let at = if at % 2 == 0 { at % header } else { at % bytes.len() };
        if cut { bytes.truncate(at) } else { bytes[at] ^= 1 << bit }
        weights(&bytes);
    }
}

/// A valid record of episode `ep` of entry `i` of `suite`, as one JSON line.
fn record_line(suite: &Suite, i: usize, ep: u64) -> String {
    let e = &suite.entries[i];
    serde_json::json!({
        "entry": e.name, "entry_index": i, "scenario": "reach", "model": "sim",
        "planner": "cem", "episode": ep,
        "seed": zplan::seeds::evaluation_seed(suite.seed, e.seed_key(), ep),
        "success": true, "steps": 3, "final_distance": 0.1, "first_success_step": 2,
        "plan_ms_p50": 1.0, "plan_ms_p99": 2.0, "plan_ms": [1.0, 2.0], "deadline_hits": 0,
        "rollouts": 8, "distance_trace": [0.5, null, 0.1], "clipped": 0, "wall_s": 0.1,
        "error": null
    })
    .to_string()
}

// ---- limits every text entry point shares ----

#[test]
fn deep_nests_are_refused_fast_everywhere() {
    for open in ["[", "(", "{", "Some("] {
        let text = open.repeat(200_000);
        let t = Instant::now();
        let e = ScenarioConfig::from_ron_str(&text, "n.ron").unwrap_err();
        assert!(e.to_string().contains("nest deeper than 64"), "{e}");
        let e = Suite::parse(&text, "n.ron").unwrap_err();
        assert!(e.to_string().contains("nest deeper than 64"), "{e}");
        for r in [
            PlannerConfig::from_ron_str(&text).map(|_| ()),
            EnergyConfig::from_ron_str(&text).map(|_| ()),
            MpcConfig::from_ron_str(&text).map(|_| ()),
        ] {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("nest deeper than 64"), "{e}");
        }
        let e = zplan_io::text_from_bytes("m.json", text.clone().into_bytes(), "x", 1 << 20)
            .unwrap_err();
        assert!(e.to_string().contains("nest deeper than 64"), "{e}");
        let e = zplan::train::parse_meta(&text, Path::new("meta.json")).unwrap_err();
        assert!(!format!("{e:#}").is_empty());
        let took = t.elapsed();
        assert!(took < Duration::from_secs(1), "{open}: {took:?}");
    }
    // results.jsonl lines: serde_json's own recursion limit answers, naming the line.
    let line = "[".repeat(200_000) + "\n";
    let t = Instant::now();
    let e = zplan::results::read_results_from(line.as_bytes(), "r.jsonl").unwrap_err();
    assert!(e.to_string().starts_with("r.jsonl:1: "), "{e}");
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn huge_inputs_are_refused_with_the_limit() {
    let big = vec![b' '; MAX_CONFIG_BYTES as usize + 1];
    let e = zplan_io::text_from_bytes("s.ron", big, "a suite file", MAX_CONFIG_BYTES).unwrap_err();
    assert!(
        e.to_string()
            .contains("more than the 4194304-byte limit for a suite file"),
        "{e}"
    );
    let big = " ".repeat(MAX_CONFIG_BYTES as usize + 1);
    let e = PlannerConfig::from_ron_str(&big).unwrap_err().to_string();
    assert!(e.contains("more than the 4194304-byte limit"), "{e}");
    // A results line longer than any record, read without holding more than the limit.
    let mut long = vec![b'x'; zplan::results::MAX_RECORD_LINE_BYTES as usize + 10];
    long.push(b'\n');
    let e = zplan::results::read_results_from(&long[..], "r.jsonl").unwrap_err();
    assert_eq!(
        e.to_string(),
        "r.jsonl:1: line longer than 67108864 bytes, not an episode record"
    );
}

#[test]
fn bom_is_accepted_and_invalid_utf8_is_located() {
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice(SCENARIOS[0].1.as_bytes());
    let text = zplan_io::text_from_bytes("r.ron", bytes, "x", MAX_CONFIG_BYTES).unwrap();
    ScenarioConfig::from_ron_str(&text, "r.ron").unwrap();
    let suite = Suite::parse(RESULTS_SUITE, "r.ron").unwrap();
    let mut jsonl = format!("{}\n", record_line(&suite, 0, 0)).into_bytes();
    jsonl.extend_from_slice(b"{\"entry\": \"a\xFF\"}\n");
    let e = zplan::results::read_results_from(&jsonl[..], "r.jsonl").unwrap_err();
    assert_eq!(
        e.to_string(),
        "r.jsonl:2: not valid UTF-8 at byte 13 of the line"
    );
}

#[test]
fn valid_seeds_pass() {
    // The mutations start from inputs that are accepted: the harness is not vacuous.
    for (name, text) in SCENARIOS {
        ScenarioConfig::from_ron_str(text, name).unwrap();
    }
    LoadedSuite::from_text(&dir().join("suite.ron"), SUITE.into()).unwrap();
    for p in PLANNERS {
        PlannerConfig::from_ron_str(p).unwrap();
    }
    for e in ENERGIES {
        EnergyConfig::from_ron_str(e).unwrap();
    }
    for m in MPCS {
        MpcConfig::from_ron_str(m).unwrap();
    }
    let suite = Suite::parse(RESULTS_SUITE, "r.ron").unwrap();
    let text = format!(
        "{}\n{}\n{}",
        record_line(&suite, 0, 2),
        record_line(&suite, 1, 1),
        "{\"torn"
    );
    let recs = zplan::results::read_results_from(text.as_bytes(), "r.jsonl").unwrap();
    assert_eq!(recs.len(), 2);
    zplan::runner::check_records(&suite, Path::new("r.jsonl"), &recs).unwrap();
    let (dir, m) = dataset();
    let text = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    assert_eq!(&zplan::train::parse_meta(&text, Path::new("m")).unwrap(), m);
    chunk(&std::fs::read(dir.join(&m.chunks[0].file)).unwrap());
    let side = std::fs::read_to_string(jepa().join("m.json")).unwrap();
    JepaSidecar::parse(&side, Path::new("m.json")).unwrap();
    JepaNets::load(jepa().join("m.safetensors"), tch::Device::Cpu).unwrap();
}

// ---- regressions: inputs the fuzz campaign found ----

/// Writes the binary and generated seed corpora of the cargo-fuzz targets into `fuzz/seeds/`
/// (`cargo test --test fuzz_inputs -- --ignored write_fuzz_seeds`): the tiny JEPA's weights,
/// the small dataset's `meta.json` and chunk (behind the dataset target's selector byte), and
/// `results.jsonl` files consistent with the fuzz targets' suite.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let d = seeds.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    };
    put(
        "safetensors_weights",
        "tiny.safetensors",
        &std::fs::read(jepa().join("m.safetensors")).unwrap(),
    );
    let (dir, m) = dataset();
    let mut meta = vec![0u8];
    meta.extend(std::fs::read(dir.join("meta.json")).unwrap());
    put("dataset", "meta.json", &meta);
    let mut chunk = vec![1u8];
    chunk.extend(std::fs::read(dir.join(&m.chunks[0].file)).unwrap());
    put("dataset", "chunk", &chunk);
    let suite = Suite::parse(RESULTS_SUITE, "r.ron").unwrap();
    let all = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
        .map(|(i, e)| record_line(&suite, i, e) + "\n")
        .concat();
    put("results_jsonl", "complete.jsonl", all.as_bytes());
    let torn = record_line(&suite, 0, 0) + "\n{\"entry\":\"a\",\"entry_in";
    put("results_jsonl", "torn.jsonl", torn.as_bytes());
    put("suite_ron", "small.ron", RESULTS_SUITE.as_bytes());
}

#[test]
fn planner_strings_refuse_deep_nests_before_parsing() {
    let text = "Cem(".repeat(200_000);
    let t = Instant::now();
    let e = PlannerConfig::from_ron_str(&text).unwrap_err().to_string();
    assert_eq!(e, "planner: RON:1:260: brackets nest deeper than 64 levels");
    let e = EnergyConfig::from_ron_str(&"[".repeat(200_000))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "energy: RON:1:65: brackets nest deeper than 64 levels");
    let e = MpcConfig::from_ron_str(&"(".repeat(65))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "mpc: RON:1:65: brackets nest deeper than 64 levels");
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn strings_parse_like_suite_fields_and_are_validated() {
    let e =
        EnergyConfig::from_ron_str("(metric: L2, reduction: Sum, proprio_weight: 0.5)").unwrap();
    assert_eq!(e.proprio_weight, Some(0.5)); // implicit_some, as in suite files
    let e = EnergyConfig::from_ron_str("(action_weight: -1.0)").unwrap_err();
    assert_eq!(
        e.to_string(),
        "energy.action_weight: -1 must be finite and >= 0"
    );
    let e = MpcConfig::from_ron_str("(replan_every: 3, action_block: 2)").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("mpc.replan_every: 3 must be a multiple"),
        "{e}"
    );
    let e = MpcConfig::from_ron_str("(replan_evry: 3)").unwrap_err();
    assert!(e.to_string().starts_with("mpc: "), "{e}");
}

/// Found while writing the fuzz target `planner_ron`: `deadline_ms: 1e30` passed validation (it is a
/// finite f32), and `budget()` then panicked in `Duration::from_secs_f64` ("value is either too
/// big or NaN"); a deadline the clock cannot represent is now no deadline.
#[test]
fn a_deadline_beyond_the_clock_is_no_deadline() {
    for ms in ["1e30", "3.0e38", "1.8446744073709552e22"] {
        let m = MpcConfig::from_ron_str(&format!("(deadline_ms: {ms})")).unwrap();
        assert!(m.budget().deadline.is_none(), "{ms}");
    }
    let m = MpcConfig::from_ron_str("(deadline_ms: 5.0)").unwrap();
    assert!(m.budget().deadline.is_some());
}

/// Each entry's records fit the memory limit, but the report holds all of them at once: the
/// sum is refused with its estimate.
#[test]
fn suite_records_are_estimated_over_all_entries() {
    let limit = zplan_io::memory_limit().unwrap();
    let episodes = limit / 1048 * 6 / 10;
    let entry = |name: &str| {
        format!(
            "(name: \"{name}\", scenario: File(\"reach.ron\"), model: Sim, max_steps: 1, \
             episodes: {episodes}, planner: Cem(samples: 4, elites: 2, iterations: 1, horizon: 2))"
        )
    };
    let one = format!("Suite(name: \"big\", entries: [{}])", entry("a"));
    LoadedSuite::from_text(&dir().join("s.ron"), one).unwrap();
    let two = format!(
        "Suite(name: \"big\", entries: [{}, {}])",
        entry("a"),
        entry("b")
    );
    let e = LoadedSuite::from_text(&dir().join("s.ron"), two)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "{} episodes over 2 entries (their records) needs about",
            2 * episodes
        )),
        "{e}"
    );
}

/// `meta.json` is read through zplan_io (size limit, non-regular files named) and its scenario
/// is validated before anything uses its sizes.
#[test]
fn dataset_descriptions_are_checked() {
    let (dir, m) = dataset();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    v["scenario"]["Reach"]["links"] = serde_json::json!(0);
    let e = zplan::train::parse_meta(&v.to_string(), Path::new("d/meta.json")).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.starts_with("d/meta.json: `scenario`: "), "{e}");
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("meta.json")).unwrap();
    let e = zplan::train::read_meta(t.path()).unwrap_err().to_string();
    assert!(
        e.ends_with("meta.json: is a directory, not a regular file"),
        "{e}"
    );
    let mut info = m.chunks[0].clone();
    info.file = ".".into();
    let spec = m.scenario.spec();
    let e = zplan::dataset::read_chunk(
        dir,
        &info,
        m.observation.as_ref().unwrap(),
        spec.state_dim(),
        spec.action_dim(),
        m.steps as usize,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.ends_with("is a directory, not a regular file"), "{e}");
}
