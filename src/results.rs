//! Per-episode records (`results.jsonl`) and reading them back after a crash.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Write};
use std::path::Path;

/// One closed-loop episode, as one line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRecord {
    /// Suite entry name.
    pub entry: String,
    /// Position of the entry in the suite (for stable ordering).
    pub entry_index: usize,
    /// Scenario name (file stem or inline kind).
    pub scenario: String,
    /// World model identity.
    pub model: String,
    /// Planner name.
    pub planner: String,
    /// Episode index within the entry.
    pub episode: u64,
    /// Evaluation seed the scenario was reset with.
    pub seed: u64,
    /// Whether the final state satisfies the scenario's success predicate.
    pub success: bool,
    /// Control steps executed.
    pub steps: u32,
    /// Task-space distance to the goal at the end (`null` in the file, NaN in memory, when the
    /// episode errored before it could be measured).
    #[serde(with = "nullable")]
    pub final_distance: f64,
    /// First control step at which the success predicate held (reported, never used to stop).
    pub first_success_step: Option<u32>,
    /// Median plan latency in milliseconds (`null` when no plan finished).
    #[serde(with = "nullable")]
    pub plan_ms_p50: f64,
    /// 99th-percentile plan latency in milliseconds (`null` when no plan finished).
    #[serde(with = "nullable")]
    pub plan_ms_p99: f64,
    /// Every plan's latency in milliseconds (for suite-wide percentiles and histograms).
    pub plan_ms: Vec<f64>,
    /// Plans whose deadline stopped refinement early.
    pub deadline_hits: u32,
    /// Candidate rollouts evaluated by the planner in this episode.
    pub rollouts: u64,
    /// Distance to goal after each control step (index 0 = after reset; `null` entries where
    /// the simulator produced a non-finite distance).
    #[serde(with = "nullable_vec")]
    pub distance_trace: Vec<f64>,
    /// Action entries clipped to the bounds.
    pub clipped: u64,
    /// Wall-clock seconds of the whole episode.
    #[serde(with = "nullable")]
    pub wall_s: f64,
    /// `None` unless the episode failed; then the error or panic message.
    pub error: Option<String>,
}

impl EpisodeRecord {
    /// Key that identifies an episode across shards and resumes.
    pub fn key(&self) -> (usize, u64) {
        (self.entry_index, self.episode)
    }
}

/// Serde for an `f64` that may be non-finite: JSON has no NaN, so a non-finite value is written
/// as `null` and `null` reads back as NaN. An errored episode's numeric fields are `null`, and
/// every reader (`run`, `--resume`, `merge`) accepts them.
mod nullable {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// [`nullable`] for every element of a vector.
mod nullable_vec {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            seq.serialize_element(&x.is_finite().then_some(*x))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let v = Vec::<Option<f64>>::deserialize(d)?;
        Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }
}

/// Appends records to a JSONL file, one flushed line per episode, so a kill loses at most the
/// episode in progress.
pub struct ResultsWriter {
    file: std::fs::File,
}

impl ResultsWriter {
    /// Opens `path` for appending (creating it). A torn last line left by a kill is cut off
    /// first so the file stays valid JSONL.
    pub fn append(path: &Path) -> std::io::Result<Self> {
        repair_torn_tail(path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(ResultsWriter { file })
    }

    /// Writes one record as one line and flushes it to the OS, then syncs data to disk.
    pub fn write(&mut self, rec: &EpisodeRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_string(rec).map_err(std::io::Error::other)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.flush()?;
        self.file.sync_data()
    }
}

fn repair_torn_tail(path: &Path) -> std::io::Result<()> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(());
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len(keep as u64)
}

/// Problems reading a results file.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The file could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// A complete line is not UTF-8.
    #[error("{path}:{line}: not valid UTF-8 at byte {col} of the line")]
    NotUtf8 {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based byte position of the first invalid byte in the line.
        col: usize,
    },
    /// A line is longer than any record can be.
    #[error("{path}:{line}: line longer than {limit} bytes, not an episode record")]
    LineTooLong {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// The limit ([`MAX_RECORD_LINE_BYTES`]).
        limit: u64,
    },
    /// A complete line is not a valid record.
    #[error("{path}:{line}: not a valid episode record: {cause}")]
    Parse {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// Cause.
        cause: serde_json::Error,
    },
}

/// Reads every complete record of a `results.jsonl`. A torn final line (no trailing newline,
/// left by a kill mid-write) is ignored; a corrupt complete line is an error naming the line.
pub fn read_results(path: &Path) -> Result<Vec<EpisodeRecord>, ResultsError> {
    Ok(read_results_numbered(path)?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// Longest line [`read_results_from`] accepts: 64 MiB. A record of an episode of a million
/// steps (its distance trace and plan latencies) takes about 40 MB.
pub const MAX_RECORD_LINE_BYTES: u64 = 64 << 20;

/// [`read_results`] with each record's 1-based line number, for errors that name the line.
/// A missing file holds no records.
pub fn read_results_numbered(path: &Path) -> Result<Vec<(usize, EpisodeRecord)>, ResultsError> {
    let p = path.display().to_string();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ResultsError::Io {
                path: p,
                cause: source,
            })
        }
    };
    read_results_from(std::io::BufReader::new(file), &p)
}

/// Reads records from any reader (the contents of a `results.jsonl`; `origin` names it in
/// errors), as [`read_results_numbered`] does from a file: a torn final line is ignored,
/// blank lines are skipped, and a complete line that is not UTF-8, longer than
/// [`MAX_RECORD_LINE_BYTES`] or not a valid record is an error naming the line.
pub fn read_results_from(
    mut reader: impl BufRead,
    origin: &str,
) -> Result<Vec<(usize, EpisodeRecord)>, ResultsError> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_RECORD_LINE_BYTES + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| ResultsError::Io {
                path: origin.to_string(),
                cause: source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if n as u64 > MAX_RECORD_LINE_BYTES {
            return Err(ResultsError::LineTooLong {
                path: origin.to_string(),
                line: line_no,
                limit: MAX_RECORD_LINE_BYTES,
            });
        }
        if !buf.ends_with(b"\n") {
            break; // torn tail
        }
        let text = std::str::from_utf8(&buf).map_err(|e| ResultsError::NotUtf8 {
            path: origin.to_string(),
            line: line_no,
            col: e.valid_up_to() + 1,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(text.trim_end()).map_err(|source| ResultsError::Parse {
            path: origin.to_string(),
            line: line_no,
            cause: source,
        })?;
        out.push((line_no, rec));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) fn sample_record(entry_index: usize, episode: u64, success: bool) -> EpisodeRecord {
    EpisodeRecord {
        entry: format!("e{entry_index}"),
        entry_index,
        scenario: "s".into(),
        model: "m".into(),
        planner: "p".into(),
        episode,
        seed: 1,
        success,
        steps: 10,
        final_distance: 0.5,
        first_success_step: None,
        plan_ms_p50: 1.0,
        plan_ms_p99: 2.0,
        plan_ms: vec![1.0, 2.0],
        deadline_hits: 0,
        rollouts: 100,
        distance_trace: vec![1.0, 0.5],
        clipped: 0,
        wall_s: 0.1,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_ignored_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let mut w = ResultsWriter::append(&path).unwrap();
        w.write(&sample_record(0, 0, true)).unwrap();
        w.write(&sample_record(0, 1, false)).unwrap();
        drop(w);
        // Simulate a kill in the middle of writing a third line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"entry\":\"e0\",\"entry_in").unwrap();
        drop(f);
        assert_eq!(read_results(&path).unwrap().len(), 2);
        let mut w = ResultsWriter::append(&path).unwrap();
        w.write(&sample_record(0, 2, true)).unwrap();
        let recs = read_results(&path).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.episode).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn errored_episode_round_trips_with_null_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let mut rec = sample_record(0, 0, false);
        rec.final_distance = f64::NAN;
        rec.plan_ms_p50 = f64::NAN;
        rec.plan_ms_p99 = f64::INFINITY;
        rec.distance_trace = vec![1.0, f64::NAN];
        rec.error = Some("planner: boom".into());
        let mut w = ResultsWriter::append(&path).unwrap();
        w.write(&rec).unwrap();
        w.write(&sample_record(0, 1, true)).unwrap();
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"final_distance\":null"), "{text}");
        let back = read_results(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back[0].final_distance.is_nan());
        assert!(back[0].plan_ms_p99.is_nan());
        assert_eq!(back[0].distance_trace[0], 1.0);
        assert!(back[0].distance_trace[1].is_nan());
        assert_eq!(back[0].error.as_deref(), Some("planner: boom"));
        assert_eq!(back[1], sample_record(0, 1, true));
    }

    #[test]
    fn corrupt_line_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        std::fs::write(&path, "{\"nope\":1}\n").unwrap();
        let e = read_results(&path).unwrap_err().to_string();
        assert!(e.contains("results.jsonl:1"), "{e}");
    }
}
