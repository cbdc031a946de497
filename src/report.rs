//! Suite reports: `summary.csv`, `summary.md`, the terminal table and the plots.
//!
//! Everything here is a pure function of the set of episode records (sorted by entry and
//! episode first), so a merged sharded run reports exactly what an unsharded run does.

use crate::results::EpisodeRecord;
use crate::stats::{percentile, wilson_interval};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One line of the summary: how one suite entry did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SummaryRow {
    /// Entry name.
    pub entry: String,
    /// Scenario name.
    pub scenario: String,
    /// Model identity.
    pub model: String,
    /// Planner name.
    pub planner: String,
    /// Episodes recorded (including errored ones).
    pub episodes: usize,
    /// Episodes that ended in an error.
    pub errors: usize,
    /// Successful episodes.
    pub successes: usize,
    /// `successes / episodes`.
    pub success_rate: f64,
    /// 95 % Wilson interval, low end.
    pub success_ci_low: f64,
    /// 95 % Wilson interval, high end.
    pub success_ci_high: f64,
    /// Mean final distance over episodes without error.
    pub mean_final_distance: f64,
    /// Plan latency percentiles over every plan of the entry, milliseconds.
    pub plan_ms_p50: f64,
    /// 95th percentile.
    pub plan_ms_p95: f64,
    /// 99th percentile.
    pub plan_ms_p99: f64,
    /// Candidate rollouts evaluated per second of planning.
    pub rollouts_per_s: f64,
}

/// Deduplicates (first record of a key wins) and sorts records by (entry, episode).
pub fn canonical(records: &[EpisodeRecord]) -> Vec<EpisodeRecord> {
    let mut map: BTreeMap<(usize, u64), EpisodeRecord> = BTreeMap::new();
    for r in records {
        map.entry(r.key()).or_insert_with(|| r.clone());
    }
    map.into_values().collect()
}

/// Per-entry summary rows, in entry order.
pub fn summarize(records: &[EpisodeRecord]) -> Vec<SummaryRow> {
    let recs = canonical(records);
    let mut by_entry: BTreeMap<usize, Vec<&EpisodeRecord>> = BTreeMap::new();
    for r in &recs {
        by_entry.entry(r.entry_index).or_default().push(r);
    }
    by_entry
        .values()
        .map(|rs| {
            let first = rs[0];
            let episodes = rs.len();
            let errors = rs.iter().filter(|r| r.error.is_some()).count();
            let successes = rs.iter().filter(|r| r.success).count();
            let (lo, hi) = wilson_interval(successes, episodes);
            let ok: Vec<f64> = rs
                .iter()
                .filter(|r| r.error.is_none() && r.final_distance.is_finite())
                .map(|r| r.final_distance)
                .collect();
            let mean_final_distance = if ok.is_empty() {
                f64::NAN
            } else {
                ok.iter().sum::<f64>() / ok.len() as f64
            };
            let lat: Vec<f64> = rs.iter().flat_map(|r| r.plan_ms.iter().copied()).collect();
            let plan_s: f64 = lat.iter().sum::<f64>() / 1000.0;
            let rollouts: u64 = rs.iter().map(|r| r.rollouts).sum();
            SummaryRow {
                entry: first.entry.clone(),
                scenario: first.scenario.clone(),
                model: first.model.clone(),
                planner: first.planner.clone(),
                episodes,
                errors,
                successes,
                success_rate: if episodes == 0 {
                    0.0
                } else {
                    successes as f64 / episodes as f64
                },
                success_ci_low: lo,
                success_ci_high: hi,
                mean_final_distance,
                plan_ms_p50: percentile(&lat, 50.0).unwrap_or(f64::NAN),
                plan_ms_p95: percentile(&lat, 95.0).unwrap_or(f64::NAN),
                plan_ms_p99: percentile(&lat, 99.0).unwrap_or(f64::NAN),
                rollouts_per_s: if plan_s > 0.0 {
                    rollouts as f64 / plan_s
                } else {
                    0.0
                },
            }
        })
        .collect()
}

const CSV_HEADER: &str = "entry,scenario,model,planner,episodes,errors,successes,success_rate,success_ci_low,success_ci_high,mean_final_distance,plan_ms_p50,plan_ms_p95,plan_ms_p99,rollouts_per_s";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `summary.csv` contents.
pub fn to_csv(rows: &[SummaryRow]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{:.4},{:.4},{:.4},{:.4},{:.3},{:.3},{:.3},{:.1}",
            csv_field(&r.entry),
            csv_field(&r.scenario),
            csv_field(&r.model),
            csv_field(&r.planner),
            r.episodes,
            r.errors,
            r.successes,
            r.success_rate,
            r.success_ci_low,
            r.success_ci_high,
            r.mean_final_distance,
            r.plan_ms_p50,
            r.plan_ms_p95,
            r.plan_ms_p99,
            r.rollouts_per_s
        );
    }
    s
}

/// A table cell: `|` escaped and line breaks flattened, so any entry name keeps the table whole.
fn md_cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// A number for the table, `–` when it is undefined (no plan finished, every episode errored).
fn md_num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "–".into()
    }
}

/// `summary.md` contents (also what the terminal prints).
pub fn to_markdown(rows: &[SummaryRow]) -> String {
    let mut s = String::from(
        "| entry | scenario | model | planner | success | 95% CI | final dist | plan ms p50 / p95 / p99 | rollouts/s | errors |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {}/{} ({:.0}%) | [{:.0}%, {:.0}%] | {} | {} / {} / {} | {:.0} | {} |",
            md_cell(&r.entry),
            md_cell(&r.scenario),
            md_cell(&r.model),
            md_cell(&r.planner),
            r.successes,
            r.episodes,
            100.0 * r.success_rate,
            100.0 * r.success_ci_low,
            100.0 * r.success_ci_high,
            md_num(r.mean_final_distance, 3),
            md_num(r.plan_ms_p50, 1),
            md_num(r.plan_ms_p95, 1),
            md_num(r.plan_ms_p99, 1),
            r.rollouts_per_s,
            r.errors
        );
    }
    s
}

/// Writes `summary.csv`, `summary.md` and the plots into `dir`; returns the Markdown table.
pub fn write_report(dir: &Path, records: &[EpisodeRecord]) -> anyhow::Result<String> {
    let recs = canonical(records);
    let rows = summarize(&recs);
    std::fs::write(dir.join("summary.csv"), to_csv(&rows))?;
    let md = to_markdown(&rows);
    std::fs::write(
        dir.join("summary.md"),
        format!("# zplan run summary\n\n{md}"),
    )?;
    crate::plots::write_all(dir, &recs, &rows)?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::sample_record;

    #[test]
    fn summary_is_order_and_duplicate_independent() {
        let mut a = vec![
            sample_record(0, 0, true),
            sample_record(0, 1, false),
            sample_record(1, 0, true),
        ];
        let s1 = summarize(&a);
        a.reverse();
        a.push(sample_record(0, 0, true));
        assert_eq!(s1, summarize(&a));
        assert_eq!(s1.len(), 2);
        assert_eq!(s1[0].successes, 1);
        assert_eq!(s1[0].episodes, 2);
        assert!(to_csv(&s1).starts_with("entry,scenario"));
        assert!(to_markdown(&s1).contains("| e0 |"));
    }

    #[test]
    fn errored_episodes_count_as_failures_and_odd_names_keep_the_table() {
        let mut bad = sample_record(0, 1, false);
        bad.entry = "a|b\nc".into();
        bad.final_distance = f64::NAN;
        bad.plan_ms.clear();
        bad.error = Some("boom".into());
        let mut good = sample_record(0, 0, true);
        good.entry = bad.entry.clone();
        let rows = summarize(&[good, bad.clone()]);
        assert_eq!(
            (rows[0].episodes, rows[0].successes, rows[0].errors),
            (2, 1, 1)
        );
        assert_eq!(rows[0].mean_final_distance, 0.5);
        let md = to_markdown(&rows);
        let line = md.lines().nth(2).unwrap();
        assert!(line.starts_with("| a\\|b c |"), "{line}");
        assert!(line.ends_with("| 1 |"), "{line}");
        // Only errored episodes: the numbers are undefined, not NaN in the table.
        let rows = summarize(&[bad]);
        assert!(to_markdown(&rows).contains("| – | – / – / – |"));
    }
}
