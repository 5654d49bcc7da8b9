//! SVG charts of small multiples, written by hand (no plotting dependency to compile):
//! `cocolm plot` (the losses of a run from `metrics.jsonl`, one panel per series) and
//! the time series of `cocolm bench data-vs-compute` ([`chart`]: several lines a panel).

use anyhow::{Context, Result};
use cocolm_trainer::step::StepMetrics;
use std::fmt::Write;
use std::path::Path;

/// A value of a step's metrics, when the step has it.
type Value = fn(&StepMetrics) -> Option<f64>;

/// The panels of `cocolm plot`, in order: a title and its lines (label, value). A panel
/// is drawn when one of its lines has points; a line when it has points.
const PANELS: [(&str, &[(&str, Value)]); 7] = [
    ("total loss", &[("", |m| Some(m.loss))]),
    ("generator MLM loss", &[("", |m| Some(m.mlm_loss))]),
    ("copy loss", &[("", |m| Some(m.copy_loss))]),
    ("CLM loss", &[("", |m| Some(m.clm_loss))]),
    ("SCL loss", &[("", |m| m.scl_loss)]),
    (
        "generator accuracy at masked tokens",
        &[
            ("train", |m| Some(m.mlm_accuracy)),
            ("held-out", |m| m.eval.map(|e| e.mlm_accuracy)),
        ],
    ),
    (
        "copy accuracy",
        &[
            ("train", |m| Some(m.copy_accuracy)),
            ("held-out", |m| m.eval.map(|e| e.copy_accuracy)),
        ],
    ),
];
/// Line colours, in series order.
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
const PANEL_W: f64 = 360.0;
const PANEL_H: f64 = 220.0;
const MARGIN: f64 = 48.0;

/// Read `metrics.jsonl` (a [`StepMetrics`] a line) and write the SVG to `out`. Returns
/// the titles of the panels drawn.
pub fn plot_run(metrics: &Path, out: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(metrics)
        .with_context(|| format!("reading {}", metrics.display()))?;
    let mut records = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record: StepMetrics = serde_json::from_str(line).with_context(|| {
            format!(
                "{}: line {}: not the metrics of a step",
                metrics.display(),
                n + 1
            )
        })?;
        records.push(record);
    }
    let panels = panels(&records);
    anyhow::ensure!(
        !panels.is_empty(),
        "{}: no steps to plot",
        metrics.display()
    );
    chart(&panels, out)?;
    Ok(panels.into_iter().map(|p| p.title).collect())
}

/// The panels of [`PANELS`] that have points in `records`.
fn panels(records: &[StepMetrics]) -> Vec<Panel> {
    PANELS
        .iter()
        .filter_map(|(title, lines)| {
            let series: Vec<Series> = lines
                .iter()
                .map(|(label, value)| Series {
                    label: label.to_string(),
                    points: records
                        .iter()
                        .filter_map(|m| {
                            value(m)
                                .filter(|v| v.is_finite())
                                .map(|v| (m.step as f64, v))
                        })
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            (!series.is_empty()).then(|| Panel {
                title: title.to_string(),
                x_label: "step".into(),
                series,
            })
        })
        .collect()
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
    use cocolm_trainer::step::{EvalMetrics, MicroStats, StepInfo};

    /// The metrics of a step as the trainer makes them, with SCL and an evaluation.
    fn step(step: u64) -> StepMetrics {
        let k = 1.0 + step as f64 / 10.0;
        let stats = MicroStats {
            n_masked: 100.0,
            n_real: 600.0,
            rows: 4.0,
            mlm_sum: 300.0 / k,
            mlm_correct: 20.0 * k,
            copy_sum: 200.0 / k,
            copy_correct: 500.0,
            clm_sum: 250.0 / k,
            clm_correct: 10.0 * k,
            replaced: 40.0,
            scl_sum: 8.0 / k,
            loss: 30.0 / k,
        };
        let mut m = StepMetrics::new(
            &stats,
            StepInfo {
                step,
                micro_batches: 1,
                scl: true,
                lr: 1e-3,
                grad_norm: 1.0,
                elapsed_s: 0.5,
                optimizer_state_bytes: 0,
                loss_scale: None,
                skipped: false,
            },
        );
        m.eval = Some(EvalMetrics::new(&stats));
        m
    }

    #[test]
    fn every_panel_has_points_and_every_line_is_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        let lines: Vec<String> = (1..=3)
            .map(|s| serde_json::to_string(&step(s)).unwrap())
            .collect();
        std::fs::write(&metrics, lines.join("\n") + "\n").unwrap();
        let out = dir.path().join("loss.svg");
        let drawn = plot_run(&metrics, &out).unwrap();
        assert_eq!(drawn.len(), PANELS.len(), "{drawn:?}");
        let lines: usize = PANELS.iter().map(|(_, l)| l.len()).sum();
        let svg = std::fs::read_to_string(out).unwrap();
        assert_eq!(svg.matches("<polyline").count(), lines);
        for panel in panels(&[step(1), step(2)]) {
            for series in panel.series {
                assert_eq!(series.points.len(), 2, "{}", panel.title);
            }
        }
    }

    #[test]
    fn panels_without_values_are_left_out() {
        let mut m = step(1);
        m.scl_loss = None;
        m.eval = None;
        let titles: Vec<String> = panels(&[m]).into_iter().map(|p| p.title).collect();
        assert!(!titles.contains(&"SCL loss".to_string()), "{titles:?}");
        assert!(titles.contains(&"generator MLM loss".to_string()));
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        let good = serde_json::to_string(&step(1)).unwrap();
        std::fs::write(&metrics, format!("{good}\nnot json\n")).unwrap();
        let err = plot_run(&metrics, &dir.path().join("x.svg"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.jsonl: line 2"), "{err}");
    }
}
