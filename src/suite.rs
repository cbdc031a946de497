//! Suite files: which scenario × world model × planner pairs to run, how many episodes, which seed.
//!
//! ```ron
//! Suite(
//!     name: "demo",
//!     seed: 7,
//!     entries: [
//!         (
//!             name: "reach/sim/cem",
//!             scenario: File("reach.ron"),          // relative to the suite file
//!             model: Sim,                            // or TorchScript("m.pt"), Jepa("m.safetensors")
//!             planner: Cem(samples: 200, elites: 20, iterations: 4, horizon: 8),
//!             energy: (metric: L2, reduction: Sum),
//!             mpc: (replan_every: 1),
//!             episodes: 10,
//!         ),
//!     ],
//! )
//! ```

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zplan_models::ModelSpec;
use zplan_planner::{EnergyConfig, MpcConfig, PlannerConfig};
use zplan_sim::ScenarioConfig;

/// Where an entry's scenario comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ScenarioRef {
    /// A scenario RON file, relative to the suite file.
    File(String),
    /// A scenario written inline.
    Inline(ScenarioConfig),
}

/// One suite entry: a scenario, a world model, a planner with its energy, and episodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Unique name, used in reports and in seeds.
    pub name: String,
    /// The scenario.
    pub scenario: ScenarioRef,
    /// The world model.
    pub model: ModelSpec,
    /// The planner configuration.
    pub planner: PlannerConfig,
    /// The energy the planner minimises.
    #[serde(default)]
    pub energy: EnergyConfig,
    /// Receding-horizon settings (`replan_every`, `action_block`, `iterations`, `deadline_ms`,
    /// `warm_start`).
    #[serde(default)]
    pub mpc: MpcConfig,
    /// Episode step limit; defaults to the scenario's own limit.
    #[serde(default)]
    pub max_steps: Option<u32>,
    /// Episodes to run; defaults to the suite's `episodes`.
    #[serde(default)]
    pub episodes: Option<u64>,
    /// Episode seeds derive from (suite seed, `seeds_from`, episode); entries that share it run
    /// the very same start/goal pairs (e.g. a learned model and its simulator-backed upper
    /// bound). Defaults to the entry's name.
    #[serde(default)]
    pub seeds_from: Option<String>,
}

impl Entry {
    /// The key episode seeds derive from.
    pub fn seed_key(&self) -> &str {
        self.seeds_from.as_deref().unwrap_or(&self.name)
    }
}

/// A suite file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Suite name.
    pub name: String,
    /// Suite seed; each episode's evaluation seed derives from (seed, entry name, episode).
    #[serde(default)]
    pub seed: u64,
    /// Default episodes per entry.
    #[serde(default = "default_episodes")]
    pub episodes: u64,
    /// Entries, run in order.
    pub entries: Vec<Entry>,
}

impl Suite {
    /// Parses suite RON (no file access, no validation of the entries); `origin` names the
    /// text in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Suite, SuiteError> {
        zplan_io::check_nesting(origin, text, zplan_io::MAX_NESTING)?;
        ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .from_str(text)
            .map_err(|e| SuiteError::Parse {
                path: origin.to_string(),
                line: e.position.line,
                col: e.position.col,
                msg: e.code.to_string(),
            })
    }

    /// Episodes of entry `i` (its own `episodes`, else the suite's).
    pub fn episodes_of(&self, i: usize) -> u64 {
        self.entries[i].episodes.unwrap_or(self.episodes)
    }
}

fn default_episodes() -> u64 {
    10
}

/// A suite problem, always naming the file (and line/column or entry) it comes from.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// Reading failed.
    #[error("{path}: {cause}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// The file was refused before parsing: not a regular file, too large, not UTF-8, or
    /// nested too deep.
    #[error(transparent)]
    Input(#[from] zplan_io::InputError),
    /// RON syntax or type error.
    #[error("{path}:{line}:{col}: {msg}")]
    Parse {
        /// File.
        path: String,
        /// Line (1-based).
        line: usize,
        /// Column (1-based).
        col: usize,
        /// What went wrong.
        msg: String,
    },
    /// A semantic problem in an entry.
    #[error("{path}: entry `{entry}`: {msg}")]
    Entry {
        /// File.
        path: String,
        /// Entry name.
        entry: String,
        /// What went wrong.
        msg: String,
    },
    /// A suite-level problem.
    #[error("{path}: {msg}")]
    Invalid {
        /// File.
        path: String,
        /// What went wrong.
        msg: String,
    },
}

/// A suite with every entry's scenario loaded and paths resolved against the suite's folder.
#[derive(Debug, Clone)]
pub struct LoadedSuite {
    /// The suite file.
    pub path: PathBuf,
    /// Its exact text (hashed into run manifests).
    pub text: String,
    /// The parsed suite.
    pub suite: Suite,
    /// Per entry: the scenario and a display name for it.
    pub scenarios: Vec<(String, ScenarioConfig)>,
    /// Per entry: the model spec with paths made absolute.
    pub models: Vec<ModelSpec>,
}

impl LoadedSuite {
    /// Reads, parses and validates a suite file and the scenario files it references.
    /// Models are not loaded here (see [`crate::runner::check_models`]).
    pub fn load(path: &Path) -> Result<Self, SuiteError> {
        let text = zplan_io::read_text(path, "a suite file", zplan_io::MAX_CONFIG_BYTES)?;
        Self::from_text(path, text)
    }

    /// [`LoadedSuite::load`] for a suite text already read (and checked with
    /// [`zplan_io::read_text`] or [`zplan_io::text_from_bytes`]) from `path`: parses and
    /// validates it; scenario files are resolved against `path`'s folder and read from disk.
    pub fn from_text(path: &Path, text: String) -> Result<Self, SuiteError> {
        let p = path.display().to_string();
        let suite = Suite::parse(&text, &p)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if suite.entries.is_empty() {
            return Err(SuiteError::Invalid {
                path: p,
                msg: "`entries` is empty".into(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        let mut file_names = std::collections::HashMap::new();
        let mut scenarios = Vec::new();
        let mut models = Vec::new();
        let (mut all_records, mut all_episodes) = (0u64, 0u64);
        for e in &suite.entries {
            let bad = |msg: String| SuiteError::Entry {
                path: p.clone(),
                entry: e.name.clone(),
                msg,
            };
            if e.name.trim().is_empty() {
                return Err(SuiteError::Invalid {
                    path: p.clone(),
                    msg: "an entry has an empty `name`".into(),
                });
            }
            if !seen.insert(e.name.clone()) {
                return Err(bad("duplicate entry name".into()));
            }
            if e.episodes.unwrap_or(suite.episodes) == 0 {
                return Err(bad("`episodes` must be at least 1".into()));
            }
            e.mpc
                .validate_for_horizon(e.planner.horizon())
                .map_err(|err| bad(err.to_string()))?;
            if e.max_steps == Some(0) {
                return Err(bad("`max_steps` must be at least 1".into()));
            }
            let (name, sc) = match &e.scenario {
                ScenarioRef::File(f) => {
                    let fp = base.join(f);
                    let sc =
                        ScenarioConfig::load(&fp).map_err(|err| bad(format!("scenario: {err}")))?;
                    let stem = fp
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (stem, sc)
                }
                ScenarioRef::Inline(sc) => {
                    sc.validate()
                        .map_err(|err| bad(format!("inline scenario: {err}")))?;
                    (sc.kind().to_string(), sc.clone())
                }
            };
            e.planner
                .validate()
                .map_err(|err| bad(format!("planner: {err}")))?;
            e.energy
                .validate()
                .map_err(|err| bad(format!("energy: {err}")))?;
            // Every episode's record stays in memory for the report: its distance trace and
            // plan latencies grow with the episode's steps.
            let episodes = e.episodes.unwrap_or(suite.episodes);
            let steps = e.max_steps.unwrap_or(sc.spec().max_steps) as u64;
            let records =
                zplan_io::bytes_of(&[episodes, steps.saturating_mul(24).saturating_add(1024)]);
            zplan_io::check_memory(
                || format!("{episodes} episodes of up to {steps} steps (their records)"),
                records,
            )
            .map_err(|err| bad(err.to_string()))?;
            // The report holds every entry's records at once: the sum counts too.
            all_records = all_records.saturating_add(records);
            all_episodes = all_episodes.saturating_add(episodes);
            let sanitized = crate::runner::sanitize(&e.name);
            if let Some(other) = file_names.insert(sanitized.clone(), e.name.clone()) {
                return Err(bad(format!(
                    "its file name `{sanitized}` (filmstrips) is the same as entry `{other}`'s; rename one"
                )));
            }
            scenarios.push((name, sc));
            models.push(e.model.relative_to(base));
        }
        zplan_io::check_memory(
            || {
                format!(
                    "{all_episodes} episodes over {} entries (their records)",
                    suite.entries.len()
                )
            },
            all_records,
        )
        .map_err(|err| SuiteError::Invalid {
            path: p.clone(),
            msg: err.to_string(),
        })?;
        Ok(LoadedSuite {
            path: path.to_path_buf(),
            text,
            suite,
            scenarios,
            models,
        })
    }

    /// Episodes of entry `i`.
    pub fn episodes(&self, i: usize) -> u64 {
        self.suite.episodes_of(i)
    }

    /// All (entry index, episode) pairs in canonical order; position = global episode index.
    pub fn all_episodes(&self) -> Vec<(usize, u64)> {
        (0..self.suite.entries.len())
            .flat_map(|i| (0..self.episodes(i)).map(move |e| (i, e)))
            .collect()
    }

    /// A short stable hash of the suite text (FNV-1a), recorded in run manifests.
    pub fn text_hash(&self) -> String {
        text_hash(&self.text)
    }
}

/// A short stable hash of a suite text (FNV-1a, 16 hex digits), as run manifests record it.
pub fn text_hash(text: &str) -> String {
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}
