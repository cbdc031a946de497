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
//!             // precision: Bf16,                    // learned models only; default Fp32
//!         ),
//!     ],
//! )
//! ```

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zplan_models::{ModelSpec, Precision};
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
    /// What the world model computes in: `Fp32` (the default) or `Bf16` (bfloat16 weights and
    /// latents inside the model; energies and planner statistics stay float32). `Bf16` needs a
    /// model with weights (`TorchScript` or `Jepa`); `zplan run --precision` overrides it.
    #[serde(default, deserialize_with = "precision_field")]
    pub precision: Precision,
}

/// Deserialises `precision`, naming the field in the error (RON adds the line and column, and
/// [`Suite::parse`] the entry).
fn precision_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Precision, D::Error> {
    Precision::deserialize(d)
        .map_err(|e| serde::de::Error::custom(format!("`precision`: {e} (Fp32 or Bf16)")))
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
                msg: match entry_at(text, e.position.line, e.position.col) {
                    Some(name) => format!("entry `{name}`: {}", e.code),
                    None => e.code.to_string(),
                },
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

/// The name of the entry of `entries: [...]` whose text holds the 1-based `line` and `col`
/// (for error messages): a lexical scan of brackets outside strings and `//` comments, so it
/// also works on text that does not parse. `None` outside the entries, or for an entry
/// without a readable `name: "..."`.
pub fn entry_at(text: &str, line: usize, col: usize) -> Option<String> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let in_line = text.get(line_start..)?.lines().next().map_or(0, |l| {
        l.char_indices()
            .nth(col.saturating_sub(1))
            .map_or(l.len(), |(i, _)| i)
    });
    let target = line_start + in_line;
    let code = code_only(text);
    let list = find_key(&code, "entries")?;
    let mut depth = 0usize;
    let mut entry = None;
    for (i, b) in code.bytes().enumerate().skip(list) {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth == 2 {
                    if i > target {
                        return None; // between entries
                    }
                    entry = Some(i);
                }
            }
            b')' | b']' | b'}' => {
                if depth == 2 && i >= target {
                    break; // `target` lies in the entry that closes here
                }
                depth = depth.saturating_sub(1);
                if depth < 2 {
                    entry = None;
                }
                if depth == 0 {
                    return None; // the list closed before `target`
                }
            }
            _ => {}
        }
    }
    let start = entry?;
    let name = start + find_key(code.get(start..)?, "name")?;
    let rest = text.get(name..)?.trim_start();
    rest.strip_prefix('"')?
        .split('"')
        .next()
        .map(str::to_string)
}

/// `text` with the contents of string literals and `//` comments blanked out (same length,
/// the quotes kept), so that brackets and keys are only found in code.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let blank = |out: &mut String, c: char| {
        out.extend(std::iter::repeat_n(' ', c.len_utf8()));
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    if c == '"' {
                        out.push('"');
                        break;
                    }
                    blank(&mut out, c);
                    if c == '\\' {
                        if let Some(escaped) = chars.next() {
                            blank(&mut out, escaped);
                        }
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                blank(&mut out, c);
                while let Some(&c) = chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    blank(&mut out, c);
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Offset just after the first `key:` in `code` whose `key` is a whole word.
fn find_key(code: &str, key: &str) -> Option<usize> {
    code.match_indices(key).find_map(|(i, _)| {
        let whole = code[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let rest = code[i + key.len()..].trim_start().strip_prefix(':')?;
        whole.then(|| code.len() - rest.len())
    })
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
    /// A precision for every learned model, overriding the entries' `precision`
    /// (`zplan run --precision`; [`LoadedSuite::with_precision`]).
    pub precision_override: Option<Precision>,
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
            if e.model.check_precision(e.precision).is_err() {
                return Err(bad(format!(
                    "`precision: {:?}` needs a model with weights (TorchScript or Jepa); the \
                     simulator-backed model `Sim` has none and always computes in float32: \
                     remove `precision` or write `precision: Fp32`",
                    e.precision
                )));
            }
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
            precision_override: None,
        })
    }

    /// The suite with every learned model (TorchScript, Jepa) computing in `precision`
    /// whatever its entry says (`None`: each entry's own). Simulator-backed entries keep
    /// float32: they have no weights, as `--device` leaves them on the CPU.
    pub fn with_precision(mut self, precision: Option<Precision>) -> Self {
        self.precision_override = precision;
        self
    }

    /// The precision entry `i`'s model computes in: the override for learned models, else
    /// the entry's own `precision` (float32 for entries that do not exist).
    pub fn precision(&self, i: usize) -> Precision {
        let own = self
            .suite
            .entries
            .get(i)
            .map_or(Precision::Fp32, |e| e.precision);
        match (self.precision_override, self.models.get(i)) {
            (Some(p), Some(m)) if m.check_precision(p).is_ok() => p,
            _ => own,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: &str = r#"// A comment with entries: [ ( name: "not this" ) ]
Suite(
    name: "s",
    entries: [
        (
            name: "reach/jepa",
            scenario: File("reach.ron"),
            model: Jepa("m"),
            planner: Cem(samples: 10, elites: 2, iterations: 1, horizon: 4),
            precision: Bf16,
        ),
        (
            name: "reach/sim", // a comment with ( and "
            scenario: File("reach.ron"),
            model: Sim,
            planner: Cem(samples: 10, elites: 2, iterations: 1, horizon: 4),
            precision: Bf32,
        ),
    ],
)
"#;

    #[test]
    fn precision_parses_and_defaults_to_fp32() {
        let text = SUITE.replace("Bf32", "Fp32");
        let suite = Suite::parse(&text, "s.ron").unwrap();
        assert_eq!(suite.entries[0].precision, Precision::Bf16);
        assert_eq!(suite.entries[1].precision, Precision::Fp32);
        let text = SUITE.replace("            precision: Bf32,\n", "");
        let suite = Suite::parse(&text, "s.ron").unwrap();
        assert_eq!(suite.entries[1].precision, Precision::Fp32);
    }

    #[test]
    fn a_bad_precision_names_the_file_position_entry_and_field() {
        let err = Suite::parse(SUITE, "s.ron").unwrap_err().to_string();
        assert!(
            err.starts_with("s.ron:17:") && err.contains("entry `reach/sim`: `precision`:"),
            "{err}"
        );
        assert!(
            err.contains("Bf32") && err.contains("Fp32 or Bf16"),
            "{err}"
        );
        // Lower case is the command line's spelling, not RON's.
        let err = Suite::parse(&SUITE.replace("Bf16", "bf16"), "s.ron")
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry `reach/jepa`: `precision`"), "{err}");
    }

    #[test]
    fn entry_at_finds_the_entry_around_a_position() {
        assert_eq!(entry_at(SUITE, 7, 20).as_deref(), Some("reach/jepa"));
        assert_eq!(entry_at(SUITE, 17, 24).as_deref(), Some("reach/sim"));
        // The suite's own fields, the comment line, between entries, after the list.
        for (line, col) in [(3, 5), (1, 10), (11, 11), (20, 1), (21, 1), (99, 1)] {
            assert_eq!(entry_at(SUITE, line, col), None, "{line}:{col}");
        }
        assert_eq!(entry_at("Suite(name: \"x\")", 1, 3), None);
    }

    #[test]
    fn the_override_applies_to_learned_models_only() {
        let text = SUITE.replace("Bf32", "Fp32");
        let suite = Suite::parse(&text, "s.ron").unwrap();
        let loaded = LoadedSuite {
            path: "s.ron".into(),
            text: text.clone(),
            models: suite.entries.iter().map(|e| e.model.clone()).collect(),
            scenarios: Vec::new(),
            suite,
            precision_override: None,
        };
        assert_eq!(loaded.precision(0), Precision::Bf16);
        let fp32 = loaded.clone().with_precision(Some(Precision::Fp32));
        assert_eq!(fp32.precision(0), Precision::Fp32);
        let bf16 = loaded.with_precision(Some(Precision::Bf16));
        assert_eq!(
            (bf16.precision(0), bf16.precision(1)),
            (Precision::Bf16, Precision::Fp32)
        );
        assert_eq!(bf16.precision(7), Precision::Fp32);
    }
}
