//! `--report FILE.html`: one self-contained page (no script, no external file): the
//! summary, errors, nodes and cross-check as tables, and two inline SVG charts per second
//! of the run, committed and failed commands, and p50/p99 latency of the commands
//! committed in that second.

use std::fmt::Write as _;

use super::Report;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 260.0;
/// Room for the axes' labels.
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step for about `ticks` ticks up to `max`: 1, 2 or 5 times a power of ten.
fn nice_step(max: f64, ticks: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let raw = max / ticks;
    let power = 10f64.powf(raw.log10().floor());
    let unit = raw / power;
    let nice = if unit <= 1.0 {
        1.0
    } else if unit <= 2.0 {
        2.0
    } else if unit <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// A line per series over the seconds of the run.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    values: Vec<f64>,
}

fn chart(title: &str, unit: &str, series: &[Series<'_>]) -> String {
    let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0, f64::max);
    let step = nice_step(max, 5.0);
    let top = (max / step).ceil().max(1.0) * step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| {
        LEFT + if n > 1 {
            plot_w * i as f64 / (n - 1) as f64
        } else {
            plot_w / 2.0
        }
    };
    let y = |v: f64| TOP + plot_h * (1.0 - v / top);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
        esc(title)
    );
    // Horizontal grid lines with their values.
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            trim(v),
            y = y(v)
        );
        v += step;
    }
    // Seconds along the bottom, about ten labels.
    let every = (n / 10).max(1);
    for i in (0..n).step_by(every) {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"#,
            x(i),
            HEIGHT - BOTTOM + 16.0,
            i + 1
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">second of the run</text><text x="14" y="{}" font-size="12" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        esc(unit)
    );
    for (k, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.color,
            points.join(" ")
        );
        let lx = LEFT + 10.0 + 140.0 * k as f64;
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="4" width="12" height="12" fill="{}"/><text x="{}" y="14" font-size="12">{}</text>"#,
            s.color,
            lx + 16.0,
            esc(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A number without a needless fraction.
fn trim(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn row(out: &mut String, cells: &[String]) {
    out.push_str("<tr>");
    for c in cells {
        let _ = write!(out, "<td>{}</td>", esc(c));
    }
    out.push_str("</tr>\n");
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let seconds = |f: &dyn Fn(&crate::stats::SecondFigures) -> f64| -> Vec<f64> {
        r.timeline.iter().map(f).collect()
    };
    let throughput = chart(
        "commands per second",
        "commands/s",
        &[
            Series {
                name: "committed",
                color: "#2a7ab0",
                values: seconds(&|s| s.committed as f64),
            },
            Series {
                name: "rejected or timed out",
                color: "#c0392b",
                values: seconds(&|s| s.failed as f64),
            },
        ],
    );
    let latency = chart(
        "latency of committed commands",
        "ms",
        &[
            Series {
                name: "p50",
                color: "#27ae60",
                values: seconds(&|s| s.p50_ms),
            },
            Series {
                name: "p99",
                color: "#e67e22",
                values: seconds(&|s| s.p99_ms),
            },
        ],
    );
    let mut summary = String::new();
    for (k, v) in [
        ("scenario", r.scenario.to_string()),
        ("via", r.via.to_string()),
        ("loop", r.pacing.to_owned()),
        ("clients", r.clients.to_string()),
        ("rate", r.rate.map_or("-".into(), |x| format!("{x}/s"))),
        ("seconds", format!("{:.2}", r.seconds)),
        ("submitted", r.submitted.to_string()),
        ("committed", r.committed.to_string()),
        ("rejected", r.rejected.to_string()),
        ("timed out", r.timed_out.to_string()),
        ("committed/s", format!("{:.1}", r.committed_per_sec)),
        (
            "p50 / p90 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} ms",
                r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms
            ),
        ),
        ("cross-check", r.cross_check_line()),
    ] {
        row(&mut summary, &[k.to_owned(), v]);
    }
    let mut errors = String::new();
    for (kind, n) in &r.errors {
        let example = r.error_examples.get(kind).cloned().unwrap_or_default();
        row(&mut errors, &[kind.clone(), n.to_string(), example]);
    }
    if errors.is_empty() {
        errors.push_str("<tr><td colspan=\"3\">none</td></tr>");
    }
    let mut nodes = String::new();
    for n in &r.nodes {
        row(
            &mut nodes,
            &[
                n.name.clone(),
                n.pid.to_string(),
                format!("{:.1}", n.cpu_percent),
                format!("{:.1}", n.rss_mb),
            ],
        );
    }
    if nodes.is_empty() {
        nodes.push_str(
            "<tr><td colspan=\"4\">no node of the network runs on this machine</td></tr>",
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
th {{ background: #f3f3f3; }}
h2 {{ margin-top: 1.5em; }}
</style></head>
<body>
<h1>{title}</h1>
<h2>Summary</h2>
<table>{summary}</table>
<h2>Throughput per second</h2>
{throughput}
<h2>Latency per second</h2>
<p>Of the commands committed in each second: from sending (closed loop) or from being due (open loop) to the answer.</p>
{latency}
<h2>Errors by kind</h2>
<table><tr><th>kind</th><th>count</th><th>example</th></tr>{errors}</table>
<h2>Nodes (CPU over the run, memory at its end)</h2>
<table><tr><th>node</th><th>pid</th><th>cpu %</th><th>rss MiB</th></tr>{nodes}</table>
</body></html>
"#,
        title = esc(&r.title()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(97.0, 5.0), 20.0);
        assert_eq!(nice_step(4.2, 5.0), 1.0);
        assert_eq!(nice_step(0.0, 5.0), 1.0);
        assert_eq!(nice_step(1234.0, 5.0), 500.0);
    }

    #[test]
    fn a_chart_is_an_svg_with_one_line_per_series() {
        let svg = chart(
            "t <x>",
            "ms",
            &[Series {
                name: "p50",
                color: "#000",
                values: vec![1.0, 3.0, 2.0],
            }],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("t &lt;x&gt;"));
        // An empty run still draws its axes.
        assert!(chart("e", "ms", &[]).contains("<line"));
    }
}
