//! Report plots (PNG and SVG) drawn with plotters, plus filmstrips from the top-down renderer.

use crate::report::SummaryRow;
use crate::results::EpisodeRecord;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

/// Registers the bundled DejaVu Sans font (plotters' ab_glyph backend has no system fonts).
pub fn ensure_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
        // The bundled font is known-good; failure here would be a packaging bug.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn palette(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

fn success_chart<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    rows: &[SummaryRow],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let n = rows.len().max(1) as i32;
    let mut chart = ChartBuilder::on(&area)
        .caption(
            "success rate per entry (95% Wilson interval)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(50)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..1.0)?;
    let names: Vec<String> = rows.iter().map(|r| r.entry.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n as usize)
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc("success rate")
        .draw()?;
    for (i, r) in rows.iter().enumerate() {
        let i = i as i32;
        chart.draw_series(std::iter::once(Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), r.success_rate),
            ],
            palette(i as usize).filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![
                (SegmentValue::CenterOf(i), r.success_ci_low),
                (SegmentValue::CenterOf(i), r.success_ci_high),
            ],
            BLACK.stroke_width(2),
        )))?;
    }
    area.present()?;
    Ok(())
}

fn latency_hist<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    recs: &[EpisodeRecord],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let mut per_entry: BTreeMap<usize, (String, Vec<f64>)> = BTreeMap::new();
    for r in recs {
        let e = per_entry
            .entry(r.entry_index)
            .or_insert_with(|| (r.entry.clone(), Vec::new()));
        e.1.extend(r.plan_ms.iter().copied().filter(|x| x.is_finite()));
    }
    let max = per_entry
        .values()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let bins = 40usize;
    let width = max * 1.05 / bins as f64;
    let mut counts: Vec<(String, Vec<u32>)> = Vec::new();
    let mut top = 1u32;
    for (name, v) in per_entry.values() {
        let mut c = vec![0u32; bins];
        for x in v {
            let b = ((x / width) as usize).min(bins - 1);
            c[b] += 1;
        }
        top = top.max(*c.iter().max().unwrap_or(&1));
        counts.push((name.clone(), c));
    }
    let mut chart = ChartBuilder::on(&area)
        .caption("plan latency", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..max * 1.05, 0u32..top + top / 10 + 1)?;
    chart
        .configure_mesh()
        .x_desc("plan time (ms)")
        .y_desc("plans")
        .draw()?;
    for (i, (name, c)) in counts.iter().enumerate() {
        let color = palette(i);
        chart
            .draw_series(c.iter().enumerate().map(|(b, &k)| {
                let x0 = b as f64 * width;
                Rectangle::new([(x0, 0), (x0 + width, k)], color.mix(0.5).filled())
            }))?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    area.present()?;
    Ok(())
}

fn distance_chart<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    recs: &[EpisodeRecord],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    // Mean distance-to-goal per step over episodes of each entry (an episode that ended keeps
    // its last distance, so the curve reflects where episodes are, not which ones remain).
    let mut per_entry: BTreeMap<usize, (String, Vec<&Vec<f64>>)> = BTreeMap::new();
    for r in recs.iter().filter(|r| !r.distance_trace.is_empty()) {
        per_entry
            .entry(r.entry_index)
            .or_insert_with(|| (r.entry.clone(), Vec::new()))
            .1
            .push(&r.distance_trace);
    }
    let len = per_entry
        .values()
        .flat_map(|(_, v)| v.iter().map(|t| t.len()))
        .max()
        .unwrap_or(1);
    let mut curves = Vec::new();
    let mut ymax = 1e-3f64;
    for (name, traces) in per_entry.values() {
        let mut c = Vec::with_capacity(len);
        for t in 0..len {
            let s: f64 = traces.iter().map(|tr| tr[t.min(tr.len() - 1)]).sum();
            let m = s / traces.len() as f64;
            if m.is_finite() {
                ymax = ymax.max(m);
            }
            c.push((t as f64, m));
        }
        curves.push((name.clone(), c));
    }
    let mut chart = ChartBuilder::on(&area)
        .caption("mean distance to goal over time", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..(len.max(2) - 1) as f64, 0f64..ymax * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("control step")
        .y_desc("distance to goal")
        .draw()?;
    for (i, (name, c)) in curves.into_iter().enumerate() {
        let color = palette(i);
        chart
            .draw_series(LineSeries::new(c, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    area.present()?;
    Ok(())
}

/// Writes `success.{png,svg}`, `latency.{png,svg}` and `distance.{png,svg}` into `dir`.
pub fn write_all(dir: &Path, recs: &[EpisodeRecord], rows: &[SummaryRow]) -> anyhow::Result<()> {
    ensure_font();
    let err = |what: &str, e: Box<dyn std::error::Error>| anyhow::anyhow!("drawing {what}: {e}");
    let size = (900u32, 540u32);
    {
        let p = dir.join("success.png");
        success_chart(BitMapBackend::new(&p, size).into_drawing_area(), rows)
            .map_err(|e| err("success.png", e))?;
        let p = dir.join("success.svg");
        success_chart(SVGBackend::new(&p, size).into_drawing_area(), rows)
            .map_err(|e| err("success.svg", e))?;
    }
    {
        let p = dir.join("latency.png");
        latency_hist(BitMapBackend::new(&p, size).into_drawing_area(), recs)
            .map_err(|e| err("latency.png", e))?;
        let p = dir.join("latency.svg");
        latency_hist(SVGBackend::new(&p, size).into_drawing_area(), recs)
            .map_err(|e| err("latency.svg", e))?;
    }
    {
        let p = dir.join("distance.png");
        distance_chart(BitMapBackend::new(&p, size).into_drawing_area(), recs)
            .map_err(|e| err("distance.png", e))?;
        let p = dir.join("distance.svg");
        distance_chart(SVGBackend::new(&p, size).into_drawing_area(), recs)
            .map_err(|e| err("distance.svg", e))?;
    }
    Ok(())
}
