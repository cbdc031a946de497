//! `zplan bench`: success versus plan time per scenario, the Pareto front, and the table.
//!
//! A bench suite is an ordinary run suite (see [`crate::suite`]) whose entries differ in planner
//! and budget (samples, iterations, horizon, `mpc.iterations`, `mpc.deadline_ms`). Entries are
//! grouped by scenario; an entry is on the Pareto front of its scenario when no other entry of
//! that scenario is at least as successful *and* at least as fast (median plan time), and
//! strictly better in one of the two.

use crate::results::EpisodeRecord;
use crate::suite::{Entry, LoadedSuite};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;
use std::path::Path;
use zplan_planner::PlannerConfig;

/// One entry of a bench: its budget, success and plan times.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchRow {
    /// Scenario name.
    pub scenario: String,
    /// Entry name.
    pub entry: String,
    /// Model identity.
    pub model: String,
    /// Planner name.
    pub planner: String,
    /// The budget in words, e.g. `300 samples x 10 it x H16, deadline 20 ms`.
    pub budget: String,
    /// Episodes recorded.
    pub episodes: usize,
    /// Episodes that ended in an error.
    pub errors: usize,
    /// Successful episodes.
    pub successes: usize,
    /// `successes / episodes`.
    pub success_rate: f64,
    /// 95 % Wilson interval, low end.
    pub ci_low: f64,
    /// 95 % Wilson interval, high end.
    pub ci_high: f64,
    /// Median plan time over every plan of the entry, ms.
    pub plan_ms_p50: f64,
    /// 99th percentile, ms.
    pub plan_ms_p99: f64,
    /// On its scenario's Pareto front.
    pub pareto: bool,
}

/// The budget of an entry in words.
pub fn budget_label(entry: &Entry) -> String {
    let iters = |configured: u32| entry.mpc.iterations.unwrap_or(configured);
    let mut s = match &entry.planner {
        PlannerConfig::Cem(c) => {
            format!(
                "{} samples x {} it x H{}",
                c.samples,
                iters(c.iterations),
                c.horizon
            )
        }
        PlannerConfig::ICem(c) => {
            format!(
                "{} samples x {} it x H{}",
                c.samples,
                iters(c.iterations),
                c.horizon
            )
        }
        PlannerConfig::Mppi(c) => {
            format!(
                "{} samples x {} it x H{}",
                c.samples,
                iters(c.iterations),
                c.horizon
            )
        }
        PlannerConfig::Gradient(c) => {
            let mut s = format!(
                "{} seqs x {} steps x H{}",
                c.samples,
                iters(c.steps),
                c.horizon
            );
            if let Some(cem) = &c.init_cem {
                let _ = write!(s, " after CEM {}x{}", cem.samples, cem.iterations);
            }
            s
        }
    };
    if let Some(ms) = entry.mpc.deadline_ms {
        let _ = write!(s, ", deadline {ms} ms");
    }
    s
}

/// Indices of the Pareto-optimal points among `(time, success)`, lower time and higher
/// success being better; points with a non-finite time are never on the front. Sorted by time.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| {
            let (ti, si) = points[i];
            ti.is_finite()
                && !points.iter().enumerate().any(|(j, &(tj, sj))| {
                    j != i && tj.is_finite() && tj <= ti && sj >= si && (tj < ti || sj > si)
                })
        })
        .collect();
    front.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0).then(a.cmp(&b)));
    front
}

/// One row per entry with records, in suite order, with the Pareto flags set per scenario.
pub fn bench_rows(suite: &LoadedSuite, records: &[EpisodeRecord]) -> Vec<BenchRow> {
    let summary = crate::report::summarize(records);
    let mut rows: Vec<BenchRow> = summary
        .iter()
        .map(|r| {
            let budget = suite
                .suite
                .entries
                .iter()
                .find(|e| e.name == r.entry)
                .map(budget_label)
                .unwrap_or_default();
            BenchRow {
                scenario: r.scenario.clone(),
                entry: r.entry.clone(),
                model: r.model.clone(),
                planner: r.planner.clone(),
                budget,
                episodes: r.episodes,
                errors: r.errors,
                successes: r.successes,
                success_rate: r.success_rate,
                ci_low: r.success_ci_low,
                ci_high: r.success_ci_high,
                plan_ms_p50: r.plan_ms_p50,
                plan_ms_p99: r.plan_ms_p99,
                pareto: false,
            }
        })
        .collect();
    for (_, idx) in by_scenario(&rows) {
        let points: Vec<(f64, f64)> = idx
            .iter()
            .map(|&i| (rows[i].plan_ms_p50, rows[i].success_rate))
            .collect();
        for k in pareto_front(&points) {
            rows[idx[k]].pareto = true;
        }
    }
    rows
}

/// Row indices per scenario, scenarios in order of first appearance.
fn by_scenario(rows: &[BenchRow]) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match out.iter_mut().find(|(s, _)| *s == r.scenario) {
            Some((_, v)) => v.push(i),
            None => out.push((r.scenario.clone(), vec![i])),
        }
    }
    out
}

const CSV_HEADER: &str = "scenario,entry,model,planner,budget,episodes,errors,successes,success_rate,ci_low,ci_high,plan_ms_p50,plan_ms_p99,pareto";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `bench.csv` contents.
pub fn to_csv(rows: &[BenchRow]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{:.4},{:.4},{:.4},{:.3},{:.3},{}",
            csv_field(&r.scenario),
            csv_field(&r.entry),
            csv_field(&r.model),
            csv_field(&r.planner),
            csv_field(&r.budget),
            r.episodes,
            r.errors,
            r.successes,
            r.success_rate,
            r.ci_low,
            r.ci_high,
            r.plan_ms_p50,
            r.plan_ms_p99,
            r.pareto
        );
    }
    s
}

/// `bench.md` contents (also printed): one table per scenario, `*` marking the Pareto front.
pub fn to_markdown(rows: &[BenchRow]) -> String {
    let mut s = String::new();
    for (scenario, idx) in by_scenario(rows) {
        let _ = writeln!(s, "### {scenario}\n");
        s.push_str("| entry | planner | budget | success | 95% CI | plan ms p50 | plan ms p99 | Pareto |\n|---|---|---|---|---|---|---|---|\n");
        for &i in &idx {
            let r = &rows[i];
            let _ = writeln!(
                s,
                "| {} | {} | {} | {}/{} ({:.0}%){} | [{:.0}%, {:.0}%] | {:.2} | {:.2} | {} |",
                r.entry,
                r.planner,
                r.budget,
                r.successes,
                r.episodes,
                100.0 * r.success_rate,
                if r.errors > 0 {
                    format!(", {} errors", r.errors)
                } else {
                    String::new()
                },
                100.0 * r.ci_low,
                100.0 * r.ci_high,
                r.plan_ms_p50,
                r.plan_ms_p99,
                if r.pareto { "*" } else { "" }
            );
        }
        s.push('\n');
    }
    s
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Tick values 1, 2, 5 × 10^k inside `[lo, hi]` (plotters labels only powers of ten).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let t = decade * m;
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

const FRONT: RGBColor = RGBColor(214, 39, 40);
const DOMINATED: RGBColor = RGBColor(110, 110, 110);
const STAIRS: RGBColor = RGBColor(255, 127, 14);

/// Success (with its Wilson interval) against median plan time (a thin bar to p99), log time
/// axis; the Pareto front joined by a staircase and drawn filled, dominated entries hollow.
fn pareto_chart<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    scenario: &str,
    rows: &[&BenchRow],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let times: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.plan_ms_p50, r.plan_ms_p99])
        .filter(|t| t.is_finite() && *t > 0.0)
        .collect();
    let lo = times.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = times.iter().copied().fold(0.0f64, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > 0.0 {
        (lo / 1.6, (hi * 1.6).max(lo * 3.0))
    } else {
        (0.1, 10.0)
    };
    let mut chart = ChartBuilder::on(&area)
        .caption(
            format!("{scenario}: success vs plan time"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(
            (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            -0.02f64..1.05,
        )?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x}"))
        .x_desc("plan time, ms (median, thin bar to p99; log scale)")
        .y_desc("success rate (95% Wilson interval)")
        .draw()?;
    let ok = |r: &&BenchRow| r.plan_ms_p50.is_finite() && r.plan_ms_p50 > 0.0;
    let mut front: Vec<&BenchRow> = rows.iter().copied().filter(|r| r.pareto && ok(r)).collect();
    front.sort_by(|a, b| a.plan_ms_p50.total_cmp(&b.plan_ms_p50));
    let mut stairs = Vec::new();
    for (k, r) in front.iter().enumerate() {
        if k > 0 {
            stairs.push((r.plan_ms_p50, front[k - 1].success_rate));
        }
        stairs.push((r.plan_ms_p50, r.success_rate));
    }
    chart
        .draw_series(LineSeries::new(stairs, STAIRS.mix(0.8).stroke_width(3)))?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], STAIRS.stroke_width(3)));
    let log_mid = 0.5 * (lo.log10() + hi.log10());
    // Labels: front points alternately above and below in time order, dominated ones below.
    let mut above = std::collections::HashSet::new();
    for (k, r) in front.iter().enumerate() {
        if k % 2 == 0 {
            above.insert(r.entry.as_str());
        }
    }
    for r in rows.iter().filter(|r| ok(r)) {
        let color = if r.pareto { FRONT } else { DOMINATED };
        let (x, y) = (r.plan_ms_p50, r.success_rate);
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x, r.ci_low), (x, r.ci_high)],
            color.mix(0.7).stroke_width(2),
        )))?;
        if r.plan_ms_p99.is_finite() && r.plan_ms_p99 > x {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, y), (r.plan_ms_p99, y)],
                DOMINATED.mix(0.6).stroke_width(1),
            )))?;
            chart.draw_series(std::iter::once(
                EmptyElement::at((r.plan_ms_p99, y))
                    + PathElement::new(vec![(0, -4), (0, 4)], DOMINATED.stroke_width(1)),
            ))?;
        }
        let style = if r.pareto {
            color.filled()
        } else {
            color.stroke_width(2)
        };
        chart.draw_series(std::iter::once(Circle::new((x, y), 6, style)))?;
        // Labels sit on the side of the point with more room.
        let dy = if above.contains(r.entry.as_str()) {
            -14
        } else {
            14
        };
        let right_half = x.log10() > log_mid;
        let (dx, h) = if right_half {
            (-10, HPos::Right)
        } else {
            (10, HPos::Left)
        };
        let font = ("sans-serif", 13)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(h, VPos::Center));
        chart.draw_series(std::iter::once(
            EmptyElement::at((x, y))
                + Text::new(format!("{} ({})", r.entry, r.budget), (dx, dy), font),
        ))?;
    }
    // Legend entries for the point styles.
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("on the front")
        .legend(|(x, y)| Circle::new((x + 9, y), 5, FRONT.filled()));
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("dominated")
        .legend(|(x, y)| Circle::new((x + 9, y), 5, DOMINATED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .label_font(("sans-serif", 13))
        .draw()?;
    area.present()?;
    Ok(())
}

/// Writes `bench.md`, `bench.csv` and `pareto_<scenario>.png|svg` for each scenario into
/// `dir`; returns the plot file names (PNG).
///
/// # Errors
/// I/O and drawing failures.
pub fn write_bench_report(dir: &Path, rows: &[BenchRow]) -> anyhow::Result<Vec<String>> {
    crate::plots::ensure_font();
    std::fs::write(dir.join("bench.csv"), to_csv(rows))?;
    std::fs::write(
        dir.join("bench.md"),
        format!(
            "# zplan bench\n\nSuccess rate with its 95 % Wilson interval and plan latency per entry; \
             `*` marks each scenario's Pareto front (no other entry is both at least as \
             successful and at least as fast).\n\n{}",
            to_markdown(rows)
        ),
    )?;
    let mut written = Vec::new();
    let size = (960u32, 600u32);
    for (scenario, idx) in by_scenario(rows) {
        let group: Vec<&BenchRow> = idx.iter().map(|&i| &rows[i]).collect();
        let (scenario, group) = (&scenario, &group);
        let stem = format!("pareto_{}", crate::runner::sanitize(scenario));
        let err =
            |what: &str, e: Box<dyn std::error::Error>| anyhow::anyhow!("drawing {what}: {e}");
        let png = dir.join(format!("{stem}.png"));
        pareto_chart(
            BitMapBackend::new(&png, size).into_drawing_area(),
            scenario,
            group,
        )
        .map_err(|e| err(&format!("{stem}.png"), e))?;
        let svg = dir.join(format!("{stem}.svg"));
        pareto_chart(
            SVGBackend::new(&svg, size).into_drawing_area(),
            scenario,
            group,
        )
        .map_err(|e| err(&format!("{stem}.svg"), e))?;
        written.push(format!("{stem}.png"));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_keeps_only_undominated_points() {
        // (time, success)
        let pts = [
            (10.0, 0.5),
            (5.0, 0.5),
            (20.0, 0.9),
            (30.0, 0.8),
            (1.0, 0.0),
            (f64::NAN, 1.0),
        ];
        assert_eq!(pareto_front(&pts), vec![4, 1, 2]);
        // Equal points do not dominate each other.
        assert_eq!(pareto_front(&[(1.0, 0.5), (1.0, 0.5)]), vec![0, 1]);
        assert!(pareto_front(&[]).is_empty());
    }

    fn row(scenario: &str, entry: &str, t: f64, s: f64) -> BenchRow {
        BenchRow {
            scenario: scenario.into(),
            entry: entry.into(),
            model: "sim".into(),
            planner: "cem".into(),
            budget: "b".into(),
            episodes: 4,
            errors: 0,
            successes: (s * 4.0) as usize,
            success_rate: s,
            ci_low: (s - 0.2).max(0.0),
            ci_high: (s + 0.2).min(1.0),
            plan_ms_p50: t,
            plan_ms_p99: t * 1.5,
            pareto: false,
        }
    }

    #[test]
    fn tables_and_plots_are_written() {
        let mut rows = vec![
            row("reach", "a", 2.0, 0.5),
            row("reach", "b", 8.0, 1.0),
            row("two_rooms", "c", 3.0, 0.25),
        ];
        rows[0].pareto = true;
        rows[1].pareto = true;
        rows[2].pareto = true;
        let dir = tempfile::tempdir().unwrap();
        let written = write_bench_report(dir.path(), &rows).unwrap();
        assert_eq!(written, vec!["pareto_reach.png", "pareto_two_rooms.png"]);
        for f in [
            "pareto_reach.svg",
            "pareto_two_rooms.svg",
            "bench.md",
            "bench.csv",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        let csv = std::fs::read_to_string(dir.path().join("bench.csv")).unwrap();
        assert_eq!(csv.lines().count(), 4);
        let md = to_markdown(&rows);
        assert!(
            md.contains("### reach") && md.contains("### two_rooms"),
            "{md}"
        );
    }
}
