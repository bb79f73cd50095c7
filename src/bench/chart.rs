//! `wgpu-quant bench --chart FILE.svg`: speedup over FP32 per case and dtype, one panel
//! per adapter, as a self-contained SVG (plain text, no dependency). Bars are on a log2
//! axis so that 0.5x and 2x are equally far from the FP32 line at 1x.

use std::fmt::Write as _;

use super::Record;

const COLORS: [(&str, &str); 5] = [
    ("fp16", "#4c78a8"),
    ("w8a8", "#f58518"),
    ("w8a8+q", "#e45756"),
    ("w8a16", "#72b7b2"),
    ("w4a16", "#54a24b"),
];
const BAR: f64 = 9.0;
const GAP: f64 = 14.0;
const PLOT_H: f64 = 220.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 40.0;
const LABELS: f64 = 150.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart of every record with a `speedup_vs_fp32` (linear and convolution cases that
/// have a timed FP32 twin). Returns an SVG document; an adapter without such records gets
/// a panel that says so.
pub fn chart_svg(records: &[Record]) -> String {
    let mut adapters: Vec<(String, String)> = Vec::new();
    for r in records {
        let key = (r.adapter.clone(), r.backend.clone());
        if !adapters.contains(&key) {
            adapters.push(key);
        }
    }
    let dtypes = compared_dtypes(records);
    // Per adapter: the cases (suite/case) in first-seen order, and the speedups.
    let mut panels = Vec::new();
    let mut width: f64 = 560.0;
    let (mut lo, mut hi) = (0.5f64, 2.0f64);
    for (name, backend) in &adapters {
        let mine: Vec<&Record> = records
            .iter()
            .filter(|r| &r.adapter == name && &r.backend == backend)
            .filter(|r| r.speedup_vs_fp32.is_some() && r.dtype != "fp32")
            .collect();
        let mut cases: Vec<String> = Vec::new();
        for r in &mine {
            if !cases.contains(&r.case) {
                cases.push(r.case.clone());
            }
        }
        for r in &mine {
            let s = r.speedup_vs_fp32.unwrap_or(1.0);
            lo = lo.min(s);
            hi = hi.max(s);
        }
        let w = LEFT + cases.len() as f64 * (dtypes.len() as f64 * BAR + GAP) + 80.0;
        width = width.max(w);
        panels.push((name, backend, cases, mine));
    }
    let (lmin, lmax) = (lo.log2().floor(), hi.log2().ceil());
    let y_of = |s: f64| TOP + PLOT_H * (lmax - s.log2()) / (lmax - lmin);
    let panel_h = TOP + PLOT_H + LABELS;
    let height = 30.0 + panels.len() as f64 * panel_h + 30.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">wgpu-quant bench: speedup over FP32 (same case, adapter and run; log scale)</text>"#
    );
    // Legend.
    let mut lx = 10.0;
    for d in &dtypes {
        let color = COLORS.iter().find(|c| c.0 == *d).map_or("#888", |c| c.1);
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{d}</text>"#,
            height - 20.0,
            lx + 14.0,
            height - 11.0
        );
        lx += 70.0;
    }
    for (pi, (name, backend, cases, mine)) in panels.iter().enumerate() {
        let oy = 30.0 + pi as f64 * panel_h;
        let _ = writeln!(svg, r#"<g transform="translate(0,{oy})">"#);
        let _ = writeln!(
            svg,
            r#"<text x="10" y="16" font-size="12" font-weight="bold">{} ({})</text>"#,
            esc(name),
            esc(backend)
        );
        if cases.is_empty() {
            let _ = writeln!(
                svg,
                r#"<text x="{LEFT}" y="{}">no case with a timed FP32 twin</text></g>"#,
                TOP + 20.0
            );
            continue;
        }
        // Axis: a gridline per power of two, the FP32 line at 1x.
        let right = LEFT + cases.len() as f64 * (dtypes.len() as f64 * BAR + GAP);
        let mut e = lmin;
        while e <= lmax {
            let y = y_of(2f64.powf(e));
            let (stroke, dash) = if e == 0.0 {
                ("#000", "")
            } else {
                ("#ccc", r#" stroke-dasharray="3,3""#)
            };
            let _ = writeln!(
                svg,
                r#"<line x1="{LEFT}" x2="{right}" y1="{y:.1}" y2="{y:.1}" stroke="{stroke}"{dash}/><text x="{}" y="{:.1}" text-anchor="end">{}x</text>"#,
                LEFT - 4.0,
                y + 4.0,
                2f64.powf(e)
            );
            e += 1.0;
        }
        for (ci, case) in cases.iter().enumerate() {
            let x0 = LEFT + GAP / 2.0 + ci as f64 * (dtypes.len() as f64 * BAR + GAP);
            for (di, d) in dtypes.iter().enumerate() {
                let Some(r) = mine.iter().find(|r| &r.case == case && r.dtype == *d) else {
                    continue;
                };
                let s = r.speedup_vs_fp32.unwrap_or(1.0);
                let (y1, y0) = (y_of(s), y_of(1.0));
                let (top, h) = (y1.min(y0), (y1 - y0).abs().max(0.5));
                let color = COLORS.iter().find(|c| c.0 == *d).map_or("#888", |c| c.1);
                let _ = writeln!(
                    svg,
                    r#"<rect x="{:.1}" y="{top:.1}" width="{}" height="{h:.1}" fill="{color}"><title>{} {} {}: {s:.2}x FP32</title></rect>"#,
                    x0 + di as f64 * BAR,
                    BAR - 1.0,
                    esc(case),
                    esc(&r.shape.to_string()),
                    d
                );
            }
            let cx = x0 + dtypes.len() as f64 * BAR / 2.0;
            let ly = TOP + PLOT_H + 8.0;
            let _ = writeln!(
                svg,
                r#"<text x="{cx:.1}" y="{ly}" transform="rotate(60 {cx:.1} {ly})">{}</text>"#,
                esc(case)
            );
        }
        let _ = writeln!(svg, "</g>");
    }
    svg.push_str("</svg>\n");
    svg
}

/// The dtypes (in chart order) with at least one speedup over FP32 in `records`.
fn compared_dtypes(records: &[Record]) -> Vec<&'static str> {
    COLORS
        .iter()
        .map(|c| c.0)
        .filter(|d| {
            records
                .iter()
                .any(|r| r.dtype == *d && r.speedup_vs_fp32.is_some())
        })
        .collect()
}

/// A Markdown table of the speedups over FP32 in `records` (one adapter's, or several:
/// rows are per adapter and backend): one row per linear or convolution case, the FP32
/// median in ms, then each other dtype's speedup (`-` where it did not run or failed).
pub fn speedup_table(records: &[Record]) -> String {
    let dtypes = compared_dtypes(records);
    let many = records
        .iter()
        .any(|r| (&r.adapter, &r.backend) != (&records[0].adapter, &records[0].backend));
    let mut out = String::new();
    let _ = write!(
        out,
        "|{} case | shape | fp32 ms |",
        if many { " adapter |" } else { "" }
    );
    for d in &dtypes {
        let _ = write!(out, " {d} |");
    }
    let _ = write!(out, "\n|{}---|---|---:|", if many { "---|" } else { "" });
    out.push_str(&"---:|".repeat(dtypes.len()));
    out.push('\n');
    for f in records
        .iter()
        .filter(|r| r.dtype == "fp32" && (r.op == "linear" || r.op == "conv"))
    {
        if many {
            let _ = write!(out, "| {} ({}) ", f.adapter, f.backend);
        }
        let ms = f
            .median_ms
            .map_or_else(|| "FAILED".to_string(), |m| format!("{m:.3}"));
        let _ = write!(out, "| {} | {} | {ms} |", f.case, f.shape);
        for d in &dtypes {
            let s = records
                .iter()
                .find(|r| {
                    r.dtype == *d
                        && r.adapter == f.adapter
                        && r.backend == f.backend
                        && r.suite == f.suite
                        && r.op == f.op
                        && r.case == f.case
                })
                .and_then(|r| r.speedup_vs_fp32);
            let _ = write!(
                out,
                " {} |",
                s.map_or_else(|| "-".into(), |s| format!("{s:.2}x"))
            );
        }
        out.push('\n');
    }
    out
}
