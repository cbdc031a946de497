//! Shared pieces of the zplan fuzz targets: an allocation guard, the fixtures (a scratch
//! directory with scenario files, a tiny saved JEPA, a small collected dataset), and one
//! function per target so that every target is a one-line `fuzz_target!`.
//!
//! Every function feeds the fuzz input to the entry point a user reaches (the same size,
//! UTF-8, byte-order-mark and nesting checks of `zplan_io`), and panics only where an
//! invariant of zplan itself is broken (a panic is what libFuzzer reports as a crash).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Largest single allocation the targets allow: 1 GiB, as `-malloc_limit_mb=1024` asks.
/// libFuzzer enforces `-malloc_limit_mb` only through sanitizer malloc hooks, which a build
/// without a sanitizer (`cargo fuzz run -s none`) lacks; this allocator enforces it for every
/// Rust allocation in every build.
pub const MAX_ALLOCATION: usize = 1 << 30;

/// [`System`] with a ceiling on a single allocation: above [`MAX_ALLOCATION`] the process
/// aborts with a message (libFuzzer saves the input as a crash).
pub struct GuardedAlloc;

fn too_large(size: usize) -> ! {
    // No allocation here: write the message with a fixed buffer.
    let mut buf = [0u8; 96];
    let msg = b"==zplan-fuzz== single allocation above 1 GiB: ";
    buf[..msg.len()].copy_from_slice(msg);
    let mut n = msg.len();
    let digits = size.to_string(); // tiny, below the guard
    for b in digits.bytes().take(buf.len() - n - 1) {
        buf[n] = b;
        n += 1;
    }
    buf[n] = b'\n';
    n += 1;
    use std::io::Write;
    let _ = std::io::stderr().write_all(&buf[..n]);
    std::process::abort()
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the guard only refuses (aborts) before forwarding.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            too_large(layout.size());
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            too_large(layout.size());
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            too_large(new_size);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: GuardedAlloc = GuardedAlloc;

/// The memory budget the targets run under (`ZPLAN_MEMORY_LIMIT`, the documented override of
/// zplan's allocation estimates): 256 MiB, well under `-rss_limit_mb=2048`, so an input that
/// passes the estimates and still allocates more is a finding.
pub const MEMORY_LIMIT: &str = "256MiB";

/// Scratch directory of the fixtures: `/dev/shm` when present (no disk I/O per execution).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // SAFETY-free: set once, before any zplan code reads it, from the first input.
        std::env::set_var("ZPLAN_MEMORY_LIMIT", MEMORY_LIMIT);
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("zplan-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("writing a fuzz input to the scratch directory");
}

/// The scenario files a fuzzed suite may reference (`File("reach.ron")`, ...).
pub const SCENARIOS: [(&str, &str); 3] = [
    ("reach.ron", include_str!("../../scenarios/reach.ron")),
    (
        "two_rooms.ron",
        include_str!("../../scenarios/two_rooms.ron"),
    ),
    ("push.ron", include_str!("../../scenarios/push.ron")),
];

/// Checks an error message: never empty.
fn message(e: impl std::fmt::Display) {
    let m = format!("{e:#}");
    assert!(!m.trim().is_empty(), "empty error message");
}

/// Scenario RON: bytes through `zplan_io::text_from_bytes` (what `ScenarioConfig::load` applies
/// to a file), then `ScenarioConfig::from_ron_str` (parse and validate); a valid scenario must
/// serialise to RON that reads back.
pub fn scenario_ron(data: &[u8]) {
    let _ = scratch();
    let text = match zplan_io::text_from_bytes(
        "fuzz.ron",
        data.to_vec(),
        "a scenario file",
        zplan_io::MAX_CONFIG_BYTES,
    ) {
        Ok(t) => t,
        Err(e) => return message(e),
    };
    match zplan_sim::ScenarioConfig::from_ron_str(&text, "fuzz.ron") {
        Ok(cfg) => {
            let again = cfg.to_ron_string();
            if let Err(e) = zplan_sim::ScenarioConfig::from_ron_str(&again, "round-trip") {
                panic!("a valid scenario does not read back: {e}\n{again}");
            }
            let spec = cfg.spec();
            assert_eq!(spec.action_low.len(), spec.action_high.len());
            // Building the Rapier world of every valid input would cut the rate fourfold;
            // tests/fuzz_inputs.rs builds and resets the mutated scenarios that validate.
        }
        Err(e) => message(e),
    }
}

/// Suite RON: bytes through `zplan_io::text_from_bytes` and `LoadedSuite::from_text` (what
/// `zplan validate` and `zplan run` do after reading the file), with `reach.ron`,
/// `two_rooms.ron` and `push.ron` beside the suite.
pub fn suite_ron(data: &[u8]) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = scratch().join("suite");
        std::fs::create_dir_all(&d).expect("suite dir");
        for (name, text) in SCENARIOS {
            write(&d.join(name), text.as_bytes());
        }
        d
    });
    let path = dir.join("suite.ron");
    let text = match zplan_io::text_from_bytes(
        "suite.ron",
        data.to_vec(),
        "a suite file",
        zplan_io::MAX_CONFIG_BYTES,
    ) {
        Ok(t) => t,
        Err(e) => return message(e),
    };
    match zplan::suite::LoadedSuite::from_text(&path, text) {
        Ok(s) => {
            let n = s.all_episodes().len() as u64;
            let want: u64 = (0..s.suite.entries.len()).map(|i| s.episodes(i)).sum();
            assert_eq!(n, want);
            let _ = s.text_hash();
        }
        Err(e) => message(e),
    }
}

/// Planner, energy and MPC RON strings (`--planner`, `--energy`, `--mpc`, and the suite
/// fields): the first byte picks which; a valid planner must serialise to RON that reads back.
pub fn planner_ron(data: &[u8]) {
    let _ = scratch();
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 3 {
        0 => match zplan_planner::PlannerConfig::from_ron_str(text) {
            Ok(cfg) => {
                let again = cfg.to_ron_string();
                if let Err(e) = zplan_planner::PlannerConfig::from_ron_str(&again) {
                    panic!("a valid planner does not read back: {e}\n{again}");
                }
                let _ = cfg.horizon();
            }
            Err(e) => message(e),
        },
        1 => match zplan_planner::EnergyConfig::from_ron_str(text) {
            Ok(cfg) => {
                let _ = format!("{cfg:?}");
            }
            Err(e) => message(e),
        },
        _ => match zplan_planner::MpcConfig::from_ron_str(text) {
            Ok(cfg) => {
                let _ = cfg.budget();
                for h in [1, 2, 5, usize::MAX] {
                    if let Err(e) = cfg.validate_for_horizon(h) {
                        message(e);
                    }
                }
            }
            Err(e) => message(e),
        },
    }
}

/// JEPA sidecar JSON: bytes through `zplan_io::text_from_bytes` and `JepaSidecar::parse` (what
/// `JepaSidecar::read` does after reading); a valid sidecar's sizes are then used the way
/// loading uses them before anything is allocated.
pub fn sidecar_json(data: &[u8]) {
    let _ = scratch();
    let path = Path::new("fuzz.json");
    let text = match zplan_io::text_from_bytes(
        "fuzz.json",
        data.to_vec(),
        "a JEPA sidecar",
        zplan_io::MAX_CONFIG_BYTES,
    ) {
        Ok(t) => t,
        Err(e) => return message(e),
    };
    match zplan_models::JepaSidecar::parse(&text, path) {
        Ok(s) => {
            let _ = s.config.param_estimate();
            let _ = s.config.encoder_dims();
            let _ = s.config.predictor_dims();
            let _ = s.config.scene_fields();
            let _ = s.config.proprio_latent();
            let _ = s.config.check_memory();
        }
        Err(e) => message(e),
    }
}

/// A saved tiny JEPA (obs 2, action 2, latent 4, one hidden layer of 8) whose sidecar records
/// no checksum, so that every weights file reaches the safetensors reader.
fn jepa_fixture() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let d = scratch().join("jepa");
        std::fs::create_dir_all(&d).expect("jepa dir");
        let mut cfg = zplan_models::JepaConfig::new(2, 2);
        cfg.latent_dim = 4;
        cfg.enc_hidden = 8;
        cfg.enc_layers = 1;
        cfg.pred_hidden = 8;
        cfg.pred_layers = 1;
        let nets = zplan_models::JepaNets::new(cfg, tch::Device::Cpu).expect("tiny JEPA");
        let path = d.join("m.safetensors");
        nets.save(&path).expect("saving the tiny JEPA");
        let side = d.join("m.json");
        let mut s = zplan_models::JepaSidecar::read(&side).expect("its sidecar");
        s.weights_sha256 = None;
        s.write(&side).expect("rewriting the sidecar");
        // The inputs overwrite `m.safetensors`; keep zplan's own file as a seed.
        std::fs::copy(&path, d.join("seed.safetensors")).expect("seed copy");
        path
    })
}

/// The tiny JEPA's weights file as written by zplan (a seed for the weights target).
pub fn jepa_weights_seed() -> Vec<u8> {
    std::fs::read(jepa_fixture()).expect("seed weights")
}

/// Safetensors weights: the input is the weights file of a saved JEPA, loaded with
/// `JepaNets::load` (header, tensor names, dtypes, shapes, finiteness). Inputs whose header
/// tch's reader (safetensors 0.3.3, `SafeTensors::deserialize`, the first thing
/// `Tensor::read_safetensors` does with the bytes) refuses are checked there directly: the
/// load would fail at that same call, after building the networks (a few hundred
/// microseconds that would cut the rate tenfold).
pub fn safetensors_weights(data: &[u8]) {
    if let Err(e) = safetensors03::SafeTensors::deserialize(data) {
        return message(e);
    }
    let path = jepa_fixture();
    write(path, data);
    match zplan_models::JepaNets::load(path, tch::Device::Cpu) {
        Ok(nets) => assert!(nets.num_parameters() > 0),
        Err(e) => message(e),
    }
}

/// A collected dataset (reach, 2 episodes of 4 steps) in `scratch()/data`, and its meta.
fn dataset_fixture() -> &'static (PathBuf, zplan::collect::DatasetMeta) {
    static D: OnceLock<(PathBuf, zplan::collect::DatasetMeta)> = OnceLock::new();
    D.get_or_init(|| {
        let dir = scratch().join("data");
        let _ = std::fs::remove_dir_all(&dir);
        let scenario = zplan_sim::ScenarioConfig::from_ron_str(SCENARIOS[0].1, "reach.ron")
            .expect("reach scenario");
        let cfg = zplan::collect::CollectConfig {
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
        let meta = zplan::collect::collect(&scenario, &cfg, &dir, false).expect("collect");
        (dir, meta)
    })
}

/// The fixture dataset's `meta.json` and first chunk (seeds for the dataset target).
pub fn dataset_seeds() -> (Vec<u8>, Vec<u8>) {
    let (dir, meta) = dataset_fixture();
    (
        std::fs::read(dir.join("meta.json")).expect("meta"),
        std::fs::read(dir.join(&meta.chunks[0].file)).expect("chunk"),
    )
}

/// Dataset files: the first byte picks `meta.json` (bytes through `zplan_io::text_from_bytes`
/// and `train::parse_meta`, as `train::read_meta` reads it; when it parses, the whole
/// `train::load_dataset` runs over it and the fixture's chunk) or a chunk
/// (`dataset::chunk_from_bytes` against the fixture's description, as `read_chunk` reads it).
pub fn dataset(data: &[u8]) {
    let (dir, meta) = dataset_fixture();
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        let mdir = scratch().join("data-meta");
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| {
            std::fs::create_dir_all(&mdir).expect("meta dir");
            for c in &meta.chunks {
                std::fs::copy(dir.join(&c.file), mdir.join(&c.file)).expect("chunk copy");
            }
        });
        let path = mdir.join("meta.json");
        let text = match zplan_io::text_from_bytes(
            "meta.json",
            rest.to_vec(),
            "a dataset description",
            zplan::train::MAX_META_BYTES,
        ) {
            Ok(t) => t,
            Err(e) => return message(e),
        };
        if let Err(e) = zplan::train::parse_meta(&text, &path) {
            return message(e);
        }
        write(&path, rest);
        match zplan::train::load_dataset(&mdir) {
            Ok(d) => assert_eq!(d.obs.size()[0], d.actions.size()[0]),
            Err(e) => message(e),
        }
    } else {
        let spec = meta.scenario.spec();
        let obs = meta.observation.clone().expect("v2 meta");
        let info = meta.chunks[0].clone();
        match zplan::dataset::chunk_from_bytes(
            Path::new("chunk-00000.safetensors"),
            rest,
            &info,
            &obs,
            spec.state_dim(),
            spec.action_dim(),
            meta.steps as usize,
        ) {
            Ok(c) => assert_eq!(c.seeds.size(), vec![info.episodes as i64]),
            Err(e) => message(e),
        }
    }
}

/// The suite `results.jsonl` inputs are checked against (entries `a` of 3 episodes and `b` of
/// 2, seed 7).
pub const RESULTS_SUITE: &str = r#"Suite(name: "fuzz", seed: 7, episodes: 3, entries: [
    (name: "a", scenario: File("reach.ron"), model: Sim, planner: Cem(samples: 4, elites: 2, iterations: 1, horizon: 2)),
    (name: "b", scenario: File("reach.ron"), model: Sim, planner: Cem(samples: 4, elites: 2, iterations: 1, horizon: 2), episodes: Some(2)),
])"#;

/// `results.jsonl` as `--resume` reads it: `results::read_results_from` (what
/// `read_results_numbered` does with the file), then `runner::check_records` against
/// [`RESULTS_SUITE`].
pub fn results_jsonl(data: &[u8]) {
    static SUITE: OnceLock<zplan::suite::Suite> = OnceLock::new();
    let _ = scratch();
    let suite = SUITE.get_or_init(|| {
        zplan::suite::Suite::parse(RESULTS_SUITE, "fuzz-suite.ron").expect("results suite")
    });
    let path = Path::new("results.jsonl");
    match zplan::results::read_results_from(data, "results.jsonl") {
        Ok(records) => {
            if let Err(e) = zplan::runner::check_records(suite, path, &records) {
                message(e);
            }
        }
        Err(e) => message(e),
    }
}
