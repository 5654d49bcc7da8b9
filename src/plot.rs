//! SVG charts of small multiples, written by hand (no plotting dependency to compile):
//! `cocolm plot` (the losses of a run from `metrics.jsonl`, one panel per series) and
//! the time series of `cocolm bench data-vs-compute` ([`chart`]: several lines a panel).

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Series plotted when present, in this order.
const SERIES: [&str; 6] = [
    "loss",
    "gen_mlm_loss",
    "copy_loss",
    "clm_loss",
    "scl_loss",
    "replaced_fraction",
];
/// Line colours, in series order.
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
const PANEL_W: f64 = 360.0;
const PANEL_H: f64 = 220.0;
const MARGIN: f64 = 48.0;

/// Read `metrics.jsonl` and write the SVG to `out`. Returns the series plotted.
pub fn plot_run(metrics: &Path, out: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(metrics)
        .with_context(|| format!("reading {}", metrics.display()))?;
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: line {}: not JSON", metrics.display(), n + 1))?;
        let Some(step) = record.get("step").and_then(|s| s.as_f64()) else {
            continue;
        };
        for name in SERIES {
            if let Some(v) = record
                .get(name)
                .and_then(|v| v.as_f64())
                .filter(|v| v.is_finite())
            {
                series.entry(name).or_default().push((step, v));
            }
        }
    }
    let plotted: Vec<(&str, &Vec<(f64, f64)>)> = SERIES
        .iter()
        .filter_map(|name| {
            series
                .get(name)
                .filter(|p| !p.is_empty())
                .map(|p| (*name, p))
        })
        .collect();
    anyhow::ensure!(
        !plotted.is_empty(),
        "{}: no loss values to plot",
        metrics.display()
    );
    let panels: Vec<Panel> = plotted
        .iter()
        .map(|(name, points)| Panel {
            title: name.to_string(),
            x_label: "step".into(),
            series: vec![Series {
                label: String::new(),
                points: points.to_vec(),
            }],
        })
        .collect();
    chart(&panels, out)?;
    Ok(plotted.iter().map(|(n, _)| n.to_string()).collect())
}

/// One line of a panel.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its legend (none when empty).
    pub label: String,
    /// `(x, y)` points in order.
    pub points: Vec<(f64, f64)>,
}

/// One panel: a title, the x axis's name and its lines on shared scales.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Shown above the panel.
    pub title: String,
    /// Shown below the x axis.
    pub x_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

/// Write `panels` as an SVG of small multiples, two a row.
pub fn chart(panels: &[Panel], out: &Path) -> Result<()> {
    let cols = 2.min(panels.len()).max(1);
    let rows = panels.len().div_ceil(cols);
    let (w, h) = (cols as f64 * PANEL_W, rows as f64 * PANEL_H);
    let mut svg = String::new();
    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    )?;
    writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#)?;
    for (i, p) in panels.iter().enumerate() {
        let (x0, y0) = ((i % cols) as f64 * PANEL_W, (i / cols) as f64 * PANEL_H);
        panel(&mut svg, p, x0, y0)?;
    }
    svg.push_str("</svg>\n");
    std::fs::write(out, svg).with_context(|| format!("writing {}", out.display()))
}

fn panel(svg: &mut String, p: &Panel, x0: f64, y0: f64) -> std::fmt::Result {
    let (left, top) = (x0 + MARGIN, y0 + 24.0);
    let (pw, ph) = (PANEL_W - MARGIN - 16.0, PANEL_H - 24.0 - 32.0);
    let all = || p.series.iter().flat_map(|s| s.points.iter());
    let (xmin, xmax) = bounds(all().map(|p| p.0));
    let (ymin, ymax) = bounds(all().map(|p| p.1));
    let sx = |x: f64| left + (x - xmin) / (xmax - xmin) * pw;
    let sy = |y: f64| top + ph - (y - ymin) / (ymax - ymin) * ph;
    writeln!(
        svg,
        r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
        left,
        y0 + 16.0,
        p.title
    )?;
    writeln!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
    )?;
    for k in 0..=4 {
        let y = ymin + (ymax - ymin) * k as f64 / 4.0;
        writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 4.0,
            sy(y) + 4.0,
            short(y)
        )?;
        let x = xmin + (xmax - xmin) * k as f64 / 4.0;
        writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            sx(x),
            top + ph + 14.0,
            short(x)
        )?;
    }
    writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        top + ph + 28.0,
        p.x_label
    )?;
    for (i, series) in p.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = series
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        writeln!(
            svg,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"##,
            path.join(" ")
        )?;
        if !series.label.is_empty() {
            writeln!(
                svg,
                r#"<text x="{}" y="{}" fill="{colour}" text-anchor="end">{}</text>"#,
                left + pw - 4.0,
                top + 12.0 + 12.0 * i as f64,
                series.label
            )?;
        }
    }
    Ok(())
}

/// Min and max, widened when equal so scales never divide by zero.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

fn short(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_the_losses_present() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        std::fs::write(&metrics, "{\"step\":1,\"loss\":9.0,\"copy_loss\":0.7}\n{\"step\":2,\"loss\":8.0,\"copy_loss\":0.6}\n").unwrap();
        let out = dir.path().join("loss.svg");
        let plotted = plot_run(&metrics, &out).unwrap();
        assert_eq!(plotted, ["loss", "copy_loss"]);
        let svg = std::fs::read_to_string(out).unwrap();
        assert_eq!(svg.matches("<polyline").count(), 2);
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        std::fs::write(&metrics, "{\"step\":1,\"loss\":9.0}\nnot json\n").unwrap();
        let err = plot_run(&metrics, &dir.path().join("x.svg"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.jsonl: line 2"), "{err}");
    }
}
