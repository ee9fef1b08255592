//! Hand-written SVG figures: heatmaps with token labels on the axes, and line plots.
//!
//! Sizes are in CSS pixels; text uses a generic sans-serif stack and is measured with a fixed
//! average advance (good enough to lay out margins without a font engine).

use std::fmt::Write;

use super::terminal::format_value;
use super::{colormap_stops, is_dark, Grid, LinePlot};

const FONT: &str = "font-family=\"Helvetica, Arial, DejaVu Sans, sans-serif\"";
/// Approximate advance of one character at 12 px.
const CHAR_W: f64 = 6.8;
/// Series colours (Tableau 10): distinguishable, colour-blind friendly enough for 4–5 lines.
const SERIES: &[&str] = &[
    "#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#76b7b2", "#b07aa1", "#edc948", "#ff9da7",
    "#9c755f", "#bab0ac",
];

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

fn text_w(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * CHAR_W * size / 12.0
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    // round to the step's decimals so 3 × 0.2 prints as 0.6
    let decimals = 10f64.powi((-step.log10().floor()).max(0.0) as i32);
    (first..=last)
        .map(|k| ((k as f64 * step) * decimals).round() / decimals + 0.0)
        .collect()
}

fn tick_text(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn header(out: &mut String, w: f64, h: f64) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" \
         viewBox=\"0 0 {w:.0} {h:.0}\" {FONT}>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
}

/// A heatmap with row labels on the left, column (token) labels slanted underneath, a colour
/// bar on the right and, when cells are large enough, the values written in the cells.
pub fn heatmap(g: &Grid) -> String {
    let (body, width, height) = heatmap_body(g, "cbar", 0.0);
    let mut s = String::new();
    header(&mut s, width, height);
    s.push_str(&body);
    s.push_str("</svg>\n");
    s
}

/// Several heatmaps stacked vertically in one figure (e.g. one per head role).
pub fn heatmap_panels(grids: &[Grid]) -> String {
    // laid out twice: the second pass gives every panel the widest one's width, so titles
    // centre on the same axis
    let widest = grids
        .iter()
        .map(|g| heatmap_body(g, "", 0.0).1)
        .fold(0.0, f64::max);
    let bodies: Vec<(String, f64, f64)> = grids
        .iter()
        .enumerate()
        .map(|(i, g)| heatmap_body(g, &format!("cbar{i}"), widest))
        .collect();
    let width = bodies.iter().map(|b| b.1).fold(0.0, f64::max);
    let height: f64 = bodies.iter().map(|b| b.2).sum();
    let mut s = String::new();
    header(&mut s, width, height);
    let mut y = 0.0;
    for (body, w, h) in bodies {
        let _ = writeln!(
            s,
            "<svg x=\"0\" y=\"{y:.2}\" width=\"{w:.2}\" height=\"{h:.2}\">"
        );
        s.push_str(&body);
        s.push_str("</svg>\n");
        y += h;
    }
    s.push_str("</svg>\n");
    s
}

/// The elements of one heatmap, its width (at least `min_width`) and height; `id` names its
/// colour-bar gradient.
fn heatmap_body(g: &Grid, id: &str, min_width: f64) -> (String, f64, f64) {
    let rows = g.values.len().max(1);
    let cols = g.values.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let cell_w = (640.0 / cols as f64).clamp(16.0, 56.0);
    let cell_h = (420.0 / rows as f64).clamp(14.0, 40.0);
    let col_labels: Vec<String> = g.col_labels.iter().map(|s| truncate(s, 18)).collect();
    let row_labels: Vec<String> = g.row_labels.iter().map(|s| truncate(s, 24)).collect();
    let max_col = col_labels
        .iter()
        .map(|s| text_w(s, 11.0))
        .fold(0.0, f64::max);
    let max_row = row_labels
        .iter()
        .map(|s| text_w(s, 11.0))
        .fold(0.0, f64::max);
    // slanted labels at 50°: their vertical extent is length·sin(50°)
    let slant = 50f64.to_radians();
    let plot_w = cell_w * cols as f64;
    let plot_h = cell_h * rows as f64;
    let bar_h = plot_h.clamp(90.0, 320.0);
    // the colour label runs beside the colour bar if it fits its height, else under the title
    let label_beside = text_w(&g.value_label, 11.0) <= bar_h;
    let notes_h = 16.0 * g.notes.len() as f64;
    let top = if g.title.is_empty() { 16.0 } else { 44.0 }
        + notes_h
        + if label_beside || g.value_label.is_empty() {
            0.0
        } else {
            20.0
        };
    // the first slanted label reaches left of the plot by length·cos(50°)
    let left = (30.0 + max_row + 10.0).max(max_col * slant.cos() + 10.0);
    let bottom = max_col * slant.sin() + 40.0;
    let right = if label_beside { 110.0 } else { 80.0 };
    // titles are centred on the figure, which is widened to hold them
    let title_w = (text_w(&g.title, 15.0) * 1.1)
        .max(text_w(&g.value_label, 11.0) + 50.0)
        .max(g.notes.iter().map(|n| text_w(n, 11.0)).fold(0.0, f64::max));
    let width = (left + plot_w + right).max(title_w + 40.0).max(min_width);
    let height = top + plot_h.max(bar_h) + bottom;

    let mut s = String::new();
    if !g.title.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"26\" font-size=\"15\" font-weight=\"bold\" text-anchor=\"middle\">{}</text>",
            width / 2.0,
            esc(&g.title)
        );
    }
    for (i, note) in g.notes.iter().enumerate() {
        let warn = note.starts_with('⚠');
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{}\" text-anchor=\"middle\"{}>{}</text>",
            width / 2.0,
            44.0 + 16.0 * i as f64,
            if warn { "#b00000" } else { "#444" },
            if warn { " class=\"warning\"" } else { "" },
            esc(note)
        );
    }
    if !label_beside && !g.value_label.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#444\" text-anchor=\"middle\">colour: {}</text>",
            width / 2.0,
            top - 14.0,
            esc(&g.value_label)
        );
    }
    let annotate = cell_w >= 34.0 && cell_h >= 16.0;
    for (r, row) in g.values.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let x = left + c as f64 * cell_w;
            let y = top + r as f64 * cell_h;
            if !v.is_finite() {
                let _ = writeln!(
                    s,
                    "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{cell_w:.2}\" height=\"{cell_h:.2}\" fill=\"#e8e8e8\"/>"
                );
                continue;
            }
            let rgb = g.color(v);
            let _ = writeln!(
                s,
                "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{cell_w:.2}\" height=\"{cell_h:.2}\" \
                 fill=\"rgb({},{},{})\"><title>{} / {}: {}</title></rect>",
                rgb.0,
                rgb.1,
                rgb.2,
                esc(g.row_labels.get(r).map(String::as_str).unwrap_or("")),
                esc(g.col_labels.get(c).map(String::as_str).unwrap_or("")),
                v
            );
            if annotate {
                let text = match &g.cell_text {
                    Some(t) => t
                        .get(r)
                        .and_then(|row| row.get(c))
                        .map(|s| truncate(s, (cell_w / 6.0) as usize))
                        .unwrap_or_default(),
                    None => format_value(v),
                };
                let fill = if is_dark(rgb) { "white" } else { "#222" };
                let _ = writeln!(
                    s,
                    "<text x=\"{:.2}\" y=\"{:.2}\" font-size=\"9\" text-anchor=\"middle\" \
                     dominant-baseline=\"central\" fill=\"{fill}\">{}</text>",
                    x + cell_w / 2.0,
                    y + cell_h / 2.0,
                    esc(&text)
                );
            }
        }
    }
    // frame
    let _ = writeln!(
        s,
        "<rect x=\"{left:.2}\" y=\"{top:.2}\" width=\"{plot_w:.2}\" height=\"{plot_h:.2}\" fill=\"none\" stroke=\"#444\" stroke-width=\"0.8\"/>"
    );
    // row labels
    for (r, label) in row_labels.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"{:.2}\" y=\"{:.2}\" font-size=\"11\" text-anchor=\"end\" dominant-baseline=\"central\">{}</text>",
            left - 6.0,
            top + (r as f64 + 0.5) * cell_h,
            esc(label)
        );
    }
    // column labels, slanted
    for (c, label) in col_labels.iter().enumerate() {
        let x = left + (c as f64 + 0.5) * cell_w;
        let y = top + plot_h + 8.0;
        let _ = writeln!(
            s,
            "<text x=\"{x:.2}\" y=\"{y:.2}\" font-size=\"11\" text-anchor=\"end\" \
             dominant-baseline=\"central\" transform=\"rotate(-50 {x:.2} {y:.2})\">{}</text>",
            esc(label)
        );
    }
    // axis names
    let _ = writeln!(
        s,
        "<text x=\"{:.2}\" y=\"{:.2}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
        left + plot_w / 2.0,
        top + plot_h + bottom - 10.0,
        esc(&g.col_axis)
    );
    let cx = 16.0;
    let cy = top + plot_h / 2.0;
    let _ = writeln!(
        s,
        "<text x=\"{cx}\" y=\"{cy:.2}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 {cx} {cy:.2})\">{}</text>",
        esc(&g.row_axis)
    );
    colorbar(
        &mut s,
        g,
        id,
        left + plot_w + 18.0,
        top,
        bar_h,
        label_beside,
    );
    (s, width, height)
}

fn colorbar(s: &mut String, g: &Grid, id: &str, x: f64, y: f64, h: f64, with_label: bool) {
    let (lo, hi) = g.color_range();
    let w = 14.0;
    let _ = writeln!(
        s,
        "<defs><linearGradient id=\"{id}\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
    );
    for (offset, rgb) in colormap_stops(g.scale) {
        let _ = writeln!(
            s,
            "<stop offset=\"{offset:.3}\" stop-color=\"rgb({},{},{})\"/>",
            rgb.0, rgb.1, rgb.2
        );
    }
    s.push_str("</linearGradient></defs>\n");
    let _ = writeln!(
        s,
        "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{w}\" height=\"{h:.2}\" fill=\"url(#{id})\" stroke=\"#444\" stroke-width=\"0.6\"/>"
    );
    for t in nice_ticks(lo as f64, hi as f64, 5) {
        let ty = y + h - (t - lo as f64) / (hi as f64 - lo as f64) * h;
        let _ = writeln!(
            s,
            "<line x1=\"{:.2}\" y1=\"{ty:.2}\" x2=\"{:.2}\" y2=\"{ty:.2}\" stroke=\"#444\" stroke-width=\"0.6\"/>\
             <text x=\"{:.2}\" y=\"{ty:.2}\" font-size=\"10\" dominant-baseline=\"central\">{}</text>",
            x + w,
            x + w + 4.0,
            x + w + 6.0,
            tick_text(t)
        );
    }
    if with_label && !g.value_label.is_empty() {
        let lx = x + w + 48.0;
        let ly = y + h / 2.0;
        let _ = writeln!(
            s,
            "<text x=\"{lx:.2}\" y=\"{ly:.2}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 {lx:.2} {ly:.2})\">{}</text>",
            esc(&g.value_label)
        );
    }
}

/// A line plot over categorical x positions, one line per series, with a legend.
pub fn line_plot(p: &LinePlot) -> String {
    let n = p.x_labels.len().max(1);
    let plot_w = (n as f64 * 48.0).clamp(360.0, 760.0);
    let plot_h = 300.0;
    let max_x = p
        .x_labels
        .iter()
        .map(|s| text_w(&truncate(s, 18), 11.0))
        .fold(0.0, f64::max);
    let slanted = max_x > plot_w / n as f64 - 4.0;
    let legend_w = p
        .series
        .iter()
        .map(|(name, _)| text_w(&truncate(name, 28), 11.0))
        .fold(0.0, f64::max)
        + 40.0;
    let left = 72.0;
    let top = if p.title.is_empty() { 20.0 } else { 46.0 };
    let bottom = if slanted { max_x * 0.77 + 44.0 } else { 50.0 };
    let right = legend_w + 24.0;
    let title_half = text_w(&p.title, 15.0) * 1.1 / 2.0;
    let width = (left + plot_w + right).max(left + plot_w / 2.0 + title_half + 10.0);
    let height = top + plot_h + bottom;

    let values = p.series.iter().flat_map(|(_, v)| v.iter()).copied();
    let transform = |v: f32| -> f64 {
        if p.log_y {
            (v as f64).max(1e-12).log10()
        } else {
            v as f64
        }
    };
    let (mut lo, mut hi) = match p.y_range {
        Some((a, b)) => (transform(a), transform(b)),
        None => values
            .filter(|v| v.is_finite())
            .map(transform)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            }),
    };
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        lo -= 0.5;
        hi += 0.5;
    }
    if p.y_range.is_none() {
        let pad = (hi - lo) * 0.05;
        lo -= pad;
        hi += pad;
    }
    let x_at = |i: usize| left + (i as f64 + 0.5) * plot_w / n as f64;
    let y_at = |v: f64| top + plot_h - (v - lo) / (hi - lo) * plot_h;

    let mut s = String::new();
    header(&mut s, width, height);
    if !p.title.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"26\" font-size=\"15\" font-weight=\"bold\" text-anchor=\"middle\">{}</text>",
            left + plot_w / 2.0,
            esc(&p.title)
        );
    }
    // horizontal grid and y ticks
    let ticks: Vec<f64> = if p.log_y {
        // powers of ten, with 2× and 5× between them when the axis spans few decades
        let mantissas: &[f64] = if hi - lo < 3.0 {
            &[1.0, 2.0, 5.0]
        } else {
            &[1.0]
        };
        (lo.floor() as i64..=hi.ceil() as i64)
            .flat_map(|e| {
                mantissas
                    .iter()
                    .map(move |m| (m * 10f64.powi(e as i32)).log10())
            })
            .filter(|t| (lo..=hi).contains(t))
            .collect()
    } else {
        nice_ticks(lo, hi, 6)
    };
    for t in ticks {
        let y = y_at(t);
        let label = if p.log_y {
            tick_text(10f64.powf(t))
        } else {
            tick_text(t)
        };
        let _ = writeln!(
            s,
            "<line x1=\"{left:.2}\" y1=\"{y:.2}\" x2=\"{:.2}\" y2=\"{y:.2}\" stroke=\"#ddd\" stroke-width=\"0.8\"/>\
             <text x=\"{:.2}\" y=\"{y:.2}\" font-size=\"11\" text-anchor=\"end\" dominant-baseline=\"central\">{}</text>",
            left + plot_w,
            left - 6.0,
            label
        );
    }
    // x ticks and labels
    for (i, label) in p.x_labels.iter().enumerate() {
        let x = x_at(i);
        let y = top + plot_h;
        let label = esc(&truncate(label, 18));
        let _ = writeln!(
            s,
            "<line x1=\"{x:.2}\" y1=\"{y:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"#444\" stroke-width=\"0.8\"/>",
            y + 4.0
        );
        if slanted {
            let ty = y + 10.0;
            let _ = writeln!(
                s,
                "<text x=\"{x:.2}\" y=\"{ty:.2}\" font-size=\"11\" text-anchor=\"end\" dominant-baseline=\"central\" transform=\"rotate(-50 {x:.2} {ty:.2})\">{label}</text>"
            );
        } else {
            let _ = writeln!(
                s,
                "<text x=\"{x:.2}\" y=\"{:.2}\" font-size=\"11\" text-anchor=\"middle\">{label}</text>",
                y + 18.0
            );
        }
    }
    let _ = writeln!(
        s,
        "<rect x=\"{left:.2}\" y=\"{top:.2}\" width=\"{plot_w:.2}\" height=\"{plot_h:.2}\" fill=\"none\" stroke=\"#444\" stroke-width=\"0.8\"/>"
    );
    // series
    for (k, (_, values)) in p.series.iter().enumerate() {
        let color = SERIES[k % SERIES.len()];
        let mut path = String::new();
        let mut pen_down = false;
        for (i, &v) in values.iter().enumerate() {
            if !v.is_finite() {
                pen_down = false;
                continue;
            }
            let (x, y) = (x_at(i), y_at(transform(v)));
            let _ = write!(path, "{}{x:.2},{y:.2} ", if pen_down { "L" } else { "M" });
            pen_down = true;
        }
        let _ = writeln!(
            s,
            "<path d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-linejoin=\"round\"/>",
            path.trim_end()
        );
        for (i, &v) in values.iter().enumerate() {
            if v.is_finite() {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{:.2}\" cy=\"{:.2}\" r=\"3\" fill=\"{color}\"><title>{}: {v}</title></circle>",
                    x_at(i),
                    y_at(transform(v)),
                    esc(p.x_labels.get(i).map(String::as_str).unwrap_or(""))
                );
            }
        }
    }
    // legend
    let lx = left + plot_w + 16.0;
    for (k, (name, _)) in p.series.iter().enumerate() {
        let ly = top + 10.0 + k as f64 * 18.0;
        let color = SERIES[k % SERIES.len()];
        let _ = writeln!(
            s,
            "<line x1=\"{lx:.2}\" y1=\"{ly:.2}\" x2=\"{:.2}\" y2=\"{ly:.2}\" stroke=\"{color}\" stroke-width=\"2\"/>\
             <circle cx=\"{:.2}\" cy=\"{ly:.2}\" r=\"3\" fill=\"{color}\"/>\
             <text x=\"{:.2}\" y=\"{ly:.2}\" font-size=\"11\" dominant-baseline=\"central\">{}</text>",
            lx + 22.0,
            lx + 11.0,
            lx + 28.0,
            esc(&truncate(name, 28))
        );
    }
    // axis names
    let _ = writeln!(
        s,
        "<text x=\"{:.2}\" y=\"{:.2}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
        left + plot_w / 2.0,
        height - 10.0,
        esc(&p.x_axis)
    );
    let cy = top + plot_h / 2.0;
    let _ = writeln!(
        s,
        "<text x=\"18\" y=\"{cy:.2}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 18 {cy:.2})\">{}</text>",
        esc(&p.y_axis)
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 1.0, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(
            nice_ticks(-3.0, 3.0, 6),
            [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
        );
        let t = nice_ticks(0.013, 0.87, 5);
        assert!(t.iter().all(|v| (0.013..=0.87).contains(v)) && t.len() >= 3);
    }

    #[test]
    fn heatmap_escapes_tokens_and_draws_every_cell() {
        let g = Grid::new(
            "a <b>",
            "layer",
            "position",
            vec!["0".into(), "1".into()],
            vec!["0:<&>".into(), "1:x".into(), "2:y".into()],
            vec![vec![1.0, -1.0, 0.0], vec![f32::NAN, 0.5, 2.0]],
        );
        let svg = heatmap(&g);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("0:&lt;&amp;&gt;") && svg.contains("a &lt;b&gt;"));
        assert_eq!(svg.matches("<rect x=").count(), 6 + 1 + 1); // cells, frame, colour bar
    }

    #[test]
    fn line_plot_has_one_path_per_series() {
        let p = LinePlot {
            title: "lens".into(),
            x_axis: "layer".into(),
            y_axis: "p".into(),
            x_labels: vec!["0".into(), "1".into(), "2".into()],
            series: vec![
                ("a".into(), vec![0.1, 0.2, 0.9]),
                ("b".into(), vec![0.5, f32::NAN, 0.01]),
            ],
            y_range: None,
            log_y: true,
        };
        let svg = line_plot(&p);
        assert_eq!(svg.matches("<path").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 5 + 2);
    }
}
