//! Hand-written SVG figures: heatmaps with token labels on the axes, and line plots.
//!
//! Sizes are in CSS pixels; text uses a generic sans-serif stack and is measured with a fixed
//! average advance (good enough to lay out margins without a font engine).

use std::fmt::Write;

use super::{colormap_stops, is_dark, BarChart, Grid, LinePlot, NumberFormat, Panel};

const FONT: &str = "font-family=\"Helvetica, Arial, DejaVu Sans, sans-serif\"";
/// Approximate advance of one character at 12 px.
const CHAR_W: f64 = 6.8;
/// Series colours (Tableau 10): distinguishable, colour-blind friendly enough for 4–5 lines.
const SERIES: &[&str] = &[
    "#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#76b7b2", "#b07aa1", "#edc948", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// Text made safe inside XML and HTML (elements and attribute values); control characters,
/// which XML cannot carry, are dropped.
pub fn esc(s: &str) -> String {
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

/// Columns per heatmap panel: wider grids (long prompts) continue in further panels below,
/// on the same colour scale, rather than in one unreadably wide figure. Grids with a text in
/// each cell (a token) take fewer, wider columns.
pub const MAX_COLUMNS: usize = 48;
pub const MAX_TEXT_COLUMNS: usize = 16;

fn max_columns(g: &Grid) -> usize {
    if g.cell_text.is_some() {
        MAX_TEXT_COLUMNS
    } else {
        MAX_COLUMNS
    }
}

/// A figure of panels stacked vertically, all as wide as the widest.
pub fn figure(panels: &[Panel]) -> String {
    // Long grids are wrapped into several panels first.
    let panels: Vec<Panel> = panels
        .iter()
        .flat_map(|p| match p {
            Panel::Grid(g) => wrapped(g).into_iter().map(Panel::Grid).collect(),
            other => vec![other.clone()],
        })
        .collect();
    let body = |i: usize, p: &Panel, min_width: f64| match p {
        Panel::Grid(g) => heatmap_body(g, &format!("cbar{i}"), min_width),
        Panel::Bars(b) => bar_body(b, min_width),
        Panel::Lines(l) => line_body(l, min_width),
    };
    // laid out twice: the second pass gives every panel the widest one's width, so titles
    // centre on the same axis
    let widest = panels
        .iter()
        .enumerate()
        .map(|(i, p)| body(i, p, 0.0).1)
        .fold(0.0, f64::max);
    let bodies: Vec<(String, f64, f64)> = panels
        .iter()
        .enumerate()
        .map(|(i, p)| body(i, p, widest))
        .collect();
    let width = bodies.iter().map(|b| b.1).fold(0.0, f64::max);
    let height: f64 = bodies.iter().map(|b| b.2).sum();
    let mut s = String::new();
    header(&mut s, width, height);
    let mut y = 0.0;
    for (body, w, h) in bodies {
        let _ = writeln!(
            s,
            "<svg x=\"0\" y=\"{y:.2}\" width=\"{w:.2}\" height=\"{h:.2}\" class=\"panel\">"
        );
        s.push_str(&body);
        s.push_str("</svg>\n");
        y += h;
    }
    s.push_str("</svg>\n");
    s
}

/// A grid split into panels of at most [`MAX_COLUMNS`] columns.
fn wrapped(g: &Grid) -> Vec<Grid> {
    let n = g
        .col_labels
        .len()
        .max(g.values.iter().map(Vec::len).max().unwrap_or(0));
    if n <= max_columns(g) {
        return vec![g.clone()];
    }
    let blocks = n.div_ceil(max_columns(g));
    let per = n.div_ceil(blocks);
    (0..blocks)
        .map(|b| {
            let cols = b * per..((b + 1) * per).min(n);
            let mut part = g.columns(cols.clone());
            let range = format!("{} {}–{} of {}", g.col_axis, cols.start, cols.end - 1, n);
            if b == 0 {
                part.notes.push(format!("{range} (continued below)"));
            } else {
                part.title = range;
                part.notes.clear();
            }
            part
        })
        .collect()
}

/// A heatmap with row labels on the left, column (token) labels slanted underneath, a colour
/// bar on the right and, when cells are large enough, the values (or given texts) in the cells.
pub fn heatmap(g: &Grid) -> String {
    figure(&[Panel::Grid(g.clone())])
}

/// Several heatmaps stacked vertically in one figure (e.g. one per head role).
pub fn heatmap_panels(grids: &[Grid]) -> String {
    figure(&grids.iter().cloned().map(Panel::Grid).collect::<Vec<_>>())
}

/// Every `step`-th index is labelled so that labels `spacing` px apart need `min` px each.
fn label_step(spacing: f64, min: f64) -> usize {
    (min / spacing.max(1e-9)).ceil().max(1.0) as usize
}

/// The y below a title and its notes, as [`title_block`] lays them out.
fn below_title(title: &str, notes: &[String]) -> f64 {
    let top = if title.is_empty() { 10.0 } else { 44.0 };
    top + 16.0 * notes.len() as f64
}

/// Title and notes centred at `cx`, from y = 26; returns the y below them.
fn title_block(s: &mut String, title: &str, notes: &[String], cx: f64) -> f64 {
    let mut y = if title.is_empty() { 10.0 } else { 26.0 };
    if !title.is_empty() {
        let _ = writeln!(
            s,
            "<text class=\"title\" x=\"{cx:.1}\" y=\"26\" font-size=\"15\" font-weight=\"bold\" text-anchor=\"middle\">{}</text>",
            esc(title)
        );
        y += 18.0;
    }
    for note in notes {
        let warn = note.starts_with('⚠');
        let _ = writeln!(
            s,
            "<text class=\"note{}\" x=\"{cx:.1}\" y=\"{y:.1}\" font-size=\"11\" fill=\"{}\" text-anchor=\"middle\">{}</text>",
            if warn { " warning" } else { "" },
            if warn { "#b00000" } else { "#444" },
            esc(note)
        );
        y += 16.0;
    }
    debug_assert_eq!(y, below_title(title, notes));
    y
}

fn title_width(title: &str, notes: &[String]) -> f64 {
    (text_w(title, 15.0) * 1.1).max(notes.iter().map(|n| text_w(n, 11.0)).fold(0.0, f64::max))
}

/// The elements of one heatmap, its width (at least `min_width`) and height; `id` names its
/// colour-bar gradient.
fn heatmap_body(g: &Grid, id: &str, min_width: f64) -> (String, f64, f64) {
    let rows = g.values.len().max(1);
    let cols = g.values.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let fmt = g.number_format();
    let cell_w = if g.cell_text.is_some() {
        (640.0 / cols as f64).clamp(44.0, 64.0)
    } else {
        (640.0 / cols as f64).clamp(16.0, 56.0)
    };
    let cell_h = (420.0 / rows as f64).clamp(14.0, 40.0);
    let col_labels: Vec<String> = g.col_labels.iter().map(|s| truncate(s, 18)).collect();
    let row_labels: Vec<String> = g.row_labels.iter().map(|s| truncate(s, 24)).collect();
    let col_step = label_step(cell_w, 12.0);
    let row_step = label_step(cell_h, 12.0);
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
    let below_title = below_title(&g.title, &g.notes);
    let top = below_title
        + 4.0
        + if label_beside || g.value_label.is_empty() {
            0.0
        } else {
            18.0
        };
    // the first slanted label reaches left of the plot by length·cos(50°)
    let left = (30.0 + max_row + 10.0).max(max_col * slant.cos() + 10.0);
    let bottom = max_col * slant.sin() + 44.0;
    let right = if label_beside { 116.0 } else { 86.0 };
    // titles are centred on the figure, which is widened to hold them
    let title_w = title_width(&g.title, &g.notes).max(text_w(&g.value_label, 11.0) + 50.0);
    let width = (left + plot_w + right).max(title_w + 40.0).max(min_width);
    let baseline_h = if g.baseline.is_some() { 18.0 } else { 0.0 };
    let height = top + plot_h.max(bar_h + baseline_h) + bottom;

    let mut s = String::new();
    title_block(&mut s, &g.title, &g.notes, width / 2.0);
    if !label_beside && !g.value_label.is_empty() {
        let _ = writeln!(
            s,
            "<text class=\"axis-title\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#444\" text-anchor=\"middle\">colour: {}</text>",
            width / 2.0,
            top - 8.0,
            esc(&g.value_label)
        );
    }
    let annotate = cell_w >= 34.0 && cell_h >= 16.0;
    for (r, row) in g.values.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let x = left + c as f64 * cell_w;
            let y = top + r as f64 * cell_h;
            let where_ = format!(
                "{} / {}",
                g.row_labels.get(r).map(String::as_str).unwrap_or(""),
                g.col_labels.get(c).map(String::as_str).unwrap_or("")
            );
            if !v.is_finite() {
                let _ = writeln!(
                    s,
                    "<rect class=\"cell empty\" x=\"{x:.2}\" y=\"{y:.2}\" width=\"{cell_w:.2}\" height=\"{cell_h:.2}\" fill=\"#e8e8e8\"><title>{}: none</title></rect>",
                    esc(&where_)
                );
                continue;
            }
            let rgb = g.color(v);
            let text = g
                .cell_text
                .as_ref()
                .and_then(|t| t.get(r).and_then(|row| row.get(c)).cloned());
            let _ = writeln!(
                s,
                "<rect class=\"cell\" x=\"{x:.2}\" y=\"{y:.2}\" width=\"{cell_w:.2}\" height=\"{cell_h:.2}\" \
                 fill=\"rgb({},{},{})\"><title>{}: {}{}</title></rect>",
                rgb.0,
                rgb.1,
                rgb.2,
                esc(&where_),
                text.as_deref().map(|t| format!("{} ", esc(t))).unwrap_or_default(),
                fmt.format(v)
            );
            if annotate {
                let text = match text {
                    Some(t) => truncate(&t, (cell_w / 6.0) as usize),
                    None => fmt.format(v),
                };
                let fill = if is_dark(rgb) { "white" } else { "#222" };
                let _ = writeln!(
                    s,
                    "<text class=\"cell-text\" x=\"{:.2}\" y=\"{:.2}\" font-size=\"9\" text-anchor=\"middle\" \
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
        "<rect class=\"frame\" x=\"{left:.2}\" y=\"{top:.2}\" width=\"{plot_w:.2}\" height=\"{plot_h:.2}\" fill=\"none\" stroke=\"#444\" stroke-width=\"0.8\"/>"
    );
    // row labels with their ticks, every row_step-th
    for (r, label) in row_labels.iter().enumerate().step_by(row_step) {
        let y = top + (r as f64 + 0.5) * cell_h;
        let _ = writeln!(
            s,
            "<line class=\"tick-mark\" x1=\"{:.2}\" y1=\"{y:.2}\" x2=\"{left:.2}\" y2=\"{y:.2}\" stroke=\"#444\" stroke-width=\"0.8\"/>\
             <text class=\"tick\" x=\"{:.2}\" y=\"{y:.2}\" font-size=\"11\" text-anchor=\"end\" dominant-baseline=\"central\">{}</text>",
            left - 4.0,
            left - 6.0,
            esc(label)
        );
    }
    // column labels, slanted, with their ticks; a shortened label carries the whole one as
    // its tooltip
    for (c, label) in col_labels.iter().enumerate().step_by(col_step) {
        let x = left + (c as f64 + 0.5) * cell_w;
        let y = top + plot_h + 8.0;
        let whole = g.col_labels.get(c).filter(|w| *w != label);
        let _ = writeln!(
            s,
            "<line class=\"tick-mark\" x1=\"{x:.2}\" y1=\"{:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"#444\" stroke-width=\"0.8\"/>\
             <text class=\"tick\" x=\"{x:.2}\" y=\"{y:.2}\" font-size=\"11\" text-anchor=\"end\" \
             dominant-baseline=\"central\" transform=\"rotate(-50 {x:.2} {y:.2})\">{}</text>{}",
            top + plot_h,
            top + plot_h + 4.0,
            esc(label),
            whole
                .map(|w| format!("<title>{}</title>", esc(w)))
                .unwrap_or_default()
        );
    }
    // axis names
    let _ = writeln!(
        s,
        "<text class=\"axis-title\" x=\"{:.2}\" y=\"{:.2}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
        left + plot_w / 2.0,
        top + plot_h + bottom - 10.0,
        esc(&g.col_axis)
    );
    let cx = 14.0;
    let cy = top + plot_h / 2.0;
    let _ = writeln!(
        s,
        "<text class=\"axis-title\" x=\"{cx}\" y=\"{cy:.2}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 {cx} {cy:.2})\">{}</text>",
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
        "<rect class=\"colorbar\" x=\"{x:.2}\" y=\"{y:.2}\" width=\"{w}\" height=\"{h:.2}\" fill=\"url(#{id})\" stroke=\"#444\" stroke-width=\"0.6\"/>"
    );
    let at = |v: f32| y + h - g.position(v).clamp(0.0, 1.0) as f64 * h;
    for t in g.ticks() {
        let ty = at(t);
        let _ = writeln!(
            s,
            "<line class=\"tick-mark\" x1=\"{:.2}\" y1=\"{ty:.2}\" x2=\"{:.2}\" y2=\"{ty:.2}\" stroke=\"#444\" stroke-width=\"0.6\"/>\
             <text class=\"tick\" x=\"{:.2}\" y=\"{ty:.2}\" font-size=\"10\" dominant-baseline=\"central\">{}</text>",
            x + w,
            x + w + 4.0,
            x + w + 6.0,
            tick_text(t as f64)
        );
    }
    if let Some((value, label)) = &g.baseline {
        let by = at(*value);
        let _ = writeln!(
            s,
            "<g class=\"baseline\"><line x1=\"{:.2}\" y1=\"{by:.2}\" x2=\"{:.2}\" y2=\"{by:.2}\" stroke=\"black\" stroke-width=\"1.5\" stroke-dasharray=\"3 2\"/>\
             <line x1=\"{x:.2}\" y1=\"{:.2}\" x2=\"{:.2}\" y2=\"{:.2}\" stroke=\"black\" stroke-width=\"1.5\" stroke-dasharray=\"3 2\"/>\
             <text x=\"{:.2}\" y=\"{:.2}\" font-size=\"10\" dominant-baseline=\"central\">{} {}</text></g>",
            x - 3.0,
            x + w + 3.0,
            y + h + 12.0,
            x + 12.0,
            y + h + 12.0,
            x + 16.0,
            y + h + 12.0,
            esc(label),
            tick_text(*value as f64)
        );
    }
    if with_label && !g.value_label.is_empty() {
        let lx = x + w + 52.0;
        let ly = y + h / 2.0;
        let _ = writeln!(
            s,
            "<text class=\"axis-title\" x=\"{lx:.2}\" y=\"{ly:.2}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 {lx:.2} {ly:.2})\">{}</text>",
            esc(&g.value_label)
        );
    }
}

/// Horizontal bars from a zero line, totals set apart below the terms.
pub fn bar_chart(b: &BarChart) -> String {
    figure(&[Panel::Bars(b.clone())])
}

fn bar_body(b: &BarChart, min_width: f64) -> (String, f64, f64) {
    const BAR: f64 = 16.0;
    const GAP: f64 = 5.0;
    let plot_w = 440.0;
    let labels: Vec<String> = b.bars.iter().map(|x| truncate(&x.label, 36)).collect();
    let label_w = labels.iter().map(|l| text_w(l, 11.0)).fold(0.0, f64::max);
    let largest = b
        .bars
        .iter()
        .map(|x| x.value.abs())
        .filter(|v| v.is_finite())
        .fold(0f32, f32::max);
    let fmt = NumberFormat::for_largest(largest);
    let value_w = b
        .bars
        .iter()
        .map(|x| text_w(&fmt.format(x.value), 10.0))
        .fold(0.0, f64::max)
        + 8.0;
    let finite = b
        .bars
        .iter()
        .map(|x| x.value as f64)
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((0f64, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi - lo < 1e-12 {
        (-1.0, 1.0)
    } else {
        (lo, hi)
    };
    // the axis runs to the round values just beyond the data, zero always inside
    let step = nice_ticks(lo, hi, 6)
        .windows(2)
        .map(|w| w[1] - w[0])
        .next()
        .unwrap_or(hi - lo);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let ticks = nice_ticks(lo, hi, 6);
    let left = label_w * 1.1 + 24.0 + value_w;
    let top = below_title(&b.title, &b.notes) + 6.0;
    let n_totals = b.bars.iter().filter(|x| x.total).count();
    let plot_h = b.bars.len() as f64 * (BAR + GAP) + if n_totals > 0 { 10.0 } else { 0.0 };
    let width = (left + plot_w + value_w + 16.0)
        .max(title_width(&b.title, &b.notes) + 40.0)
        .max(min_width);
    let height = top + plot_h + 52.0;
    let x_at = |v: f64| left + (v - lo) / (hi - lo) * plot_w;

    let mut s = String::new();
    title_block(&mut s, &b.title, &b.notes, width / 2.0);
    for t in &ticks {
        let x = x_at(*t);
        let _ = writeln!(
            s,
            "<line class=\"grid-line\" x1=\"{x:.2}\" y1=\"{top:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"#e4e4e4\" stroke-width=\"0.8\"/>\
             <line class=\"tick-mark\" x1=\"{x:.2}\" y1=\"{:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"#444\" stroke-width=\"0.8\"/>\
             <text class=\"tick\" x=\"{x:.2}\" y=\"{:.2}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            top + plot_h,
            top + plot_h,
            top + plot_h + 4.0,
            top + plot_h + 15.0,
            tick_text(*t)
        );
    }
    let mut y = top;
    let mut totals_started = false;
    for (bar, label) in b.bars.iter().zip(&labels) {
        if bar.total && !totals_started {
            totals_started = true;
            let _ = writeln!(
                s,
                "<line class=\"separator\" x1=\"{:.2}\" y1=\"{:.2}\" x2=\"{:.2}\" y2=\"{:.2}\" stroke=\"#999\" stroke-width=\"0.8\"/>",
                8.0,
                y + 3.0,
                left + plot_w,
                y + 3.0
            );
            y += 10.0;
        }
        let v = bar.value as f64;
        let cy = y + BAR / 2.0;
        let _ = writeln!(
            s,
            "<text class=\"label\" x=\"{:.2}\" y=\"{cy:.2}\" font-size=\"11\" text-anchor=\"end\" dominant-baseline=\"central\"{}>{}</text>",
            left - value_w - 6.0,
            if bar.total { " font-weight=\"bold\"" } else { "" },
            esc(label)
        );
        if v.is_finite() {
            let (x0, x1) = (x_at(v.min(0.0)), x_at(v.max(0.0)));
            let fill = if bar.total {
                "#555"
            } else if v >= 0.0 {
                "rgb(214,96,77)"
            } else {
                "rgb(67,147,195)"
            };
            let _ = writeln!(
                s,
                "<rect class=\"bar{}\" x=\"{x0:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{BAR}\" fill=\"{fill}\"><title>{}: {}</title></rect>",
                if bar.total { " total" } else { "" },
                (x1 - x0).max(0.5),
                esc(&bar.label),
                fmt.format(bar.value)
            );
        }
        let _ = writeln!(
            s,
            "<text class=\"value\" x=\"{:.2}\" y=\"{cy:.2}\" font-size=\"10\" text-anchor=\"end\" dominant-baseline=\"central\">{}</text>",
            left - 6.0,
            fmt.format(bar.value)
        );
        y += BAR + GAP;
    }
    // zero line and axis
    let _ = writeln!(
        s,
        "<line class=\"zero\" x1=\"{:.2}\" y1=\"{top:.2}\" x2=\"{:.2}\" y2=\"{:.2}\" stroke=\"#222\" stroke-width=\"1\"/>\
         <line class=\"axis\" x1=\"{left:.2}\" y1=\"{:.2}\" x2=\"{:.2}\" y2=\"{:.2}\" stroke=\"#444\" stroke-width=\"0.8\"/>",
        x_at(0.0),
        x_at(0.0),
        top + plot_h,
        top + plot_h,
        left + plot_w,
        top + plot_h
    );
    let _ = writeln!(
        s,
        "<text class=\"axis-title\" x=\"{:.2}\" y=\"{:.2}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
        left + plot_w / 2.0,
        top + plot_h + 36.0,
        esc(&b.value_axis)
    );
    (s, width, height)
}

fn line_body(p: &LinePlot, min_width: f64) -> (String, f64, f64) {
    let n = p.x_labels.len().max(1);
    let plot_w = (n as f64 * 48.0).clamp(360.0, 760.0);
    let plot_h = 300.0;
    let x_step = label_step(plot_w / n as f64, 14.0);
    let max_x = p
        .x_labels
        .iter()
        .map(|s| text_w(&truncate(s, 18), 11.0))
        .fold(0.0, f64::max);
    let slanted = max_x > plot_w / n as f64 * x_step as f64 - 4.0;
    let legend_w = p
        .series
        .iter()
        .map(|(name, _)| text_w(&truncate(name, 40), 11.0))
        .fold(0.0, f64::max)
        + 40.0;
    let left = 72.0;
    let top = below_title(&p.title, &p.notes) + 6.0;
    let bottom = if slanted { max_x * 0.77 + 44.0 } else { 50.0 };
    let right = legend_w + 24.0;
    let width = (left + plot_w + right)
        .max(title_width(&p.title, &p.notes) + 40.0)
        .max(min_width);
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
    if p.zero_based && !p.log_y && p.y_range.is_none() {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if hi - lo < 1e-12 {
        lo -= 0.5;
        hi += 0.5;
    }
    if p.y_range.is_none() {
        let pad = (hi - lo) * 0.05;
        if !(p.zero_based && lo == 0.0) {
            lo -= pad;
        }
        hi += pad;
    }
    let x_at = |i: usize| left + (i as f64 + 0.5) * plot_w / n as f64;
    let y_at = |v: f64| top + plot_h - (v - lo) / (hi - lo) * plot_h;

    let mut s = String::new();
    title_block(&mut s, &p.title, &p.notes, width / 2.0);
    // horizontal grid and y ticks
    let ticks: Vec<f64> = if p.log_y {
        let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
        if hi - lo < 1.0 {
            // less than a decade: round values in between, placed on the log axis
            nice_ticks(a, b, 5)
                .into_iter()
                .filter(|t| *t > 0.0)
                .map(f64::log10)
                .collect()
        } else {
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
        }
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
            "<line class=\"grid-line\" x1=\"{left:.2}\" y1=\"{y:.2}\" x2=\"{:.2}\" y2=\"{y:.2}\" stroke=\"#ddd\" stroke-width=\"0.8\"/>\
             <text class=\"tick\" x=\"{:.2}\" y=\"{y:.2}\" font-size=\"11\" text-anchor=\"end\" dominant-baseline=\"central\">{}</text>",
            left + plot_w,
            left - 6.0,
            label
        );
    }
    if p.zero_based && !p.log_y && lo < 0.0 && hi > 0.0 {
        let y = y_at(0.0);
        let _ = writeln!(
            s,
            "<line class=\"zero\" x1=\"{left:.2}\" y1=\"{y:.2}\" x2=\"{:.2}\" y2=\"{y:.2}\" stroke=\"#222\" stroke-width=\"1\"/>",
            left + plot_w
        );
    }
    // x ticks and labels
    for (i, label) in p.x_labels.iter().enumerate() {
        let x = x_at(i);
        let y = top + plot_h;
        let _ = writeln!(
            s,
            "<line class=\"tick-mark\" x1=\"{x:.2}\" y1=\"{y:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"#444\" stroke-width=\"0.8\"/>",
            y + 4.0
        );
        if i % x_step != 0 {
            continue;
        }
        let label = esc(&truncate(label, 18));
        if slanted {
            let ty = y + 10.0;
            let _ = writeln!(
                s,
                "<text class=\"tick\" x=\"{x:.2}\" y=\"{ty:.2}\" font-size=\"11\" text-anchor=\"end\" dominant-baseline=\"central\" transform=\"rotate(-50 {x:.2} {ty:.2})\">{label}</text>"
            );
        } else {
            let _ = writeln!(
                s,
                "<text class=\"tick\" x=\"{x:.2}\" y=\"{:.2}\" font-size=\"11\" text-anchor=\"middle\">{label}</text>",
                y + 18.0
            );
        }
    }
    let _ = writeln!(
        s,
        "<rect class=\"frame\" x=\"{left:.2}\" y=\"{top:.2}\" width=\"{plot_w:.2}\" height=\"{plot_h:.2}\" fill=\"none\" stroke=\"#444\" stroke-width=\"0.8\"/>"
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
            "<path class=\"series\" d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-linejoin=\"round\"/>",
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
            "<g class=\"legend\"><line x1=\"{lx:.2}\" y1=\"{ly:.2}\" x2=\"{:.2}\" y2=\"{ly:.2}\" stroke=\"{color}\" stroke-width=\"2\"/>\
             <circle cx=\"{:.2}\" cy=\"{ly:.2}\" r=\"3\" fill=\"{color}\"/>\
             <text x=\"{:.2}\" y=\"{ly:.2}\" font-size=\"11\" dominant-baseline=\"central\">{}</text></g>",
            lx + 22.0,
            lx + 11.0,
            lx + 28.0,
            esc(&truncate(name, 40))
        );
    }
    // axis names
    let _ = writeln!(
        s,
        "<text class=\"axis-title\" x=\"{:.2}\" y=\"{:.2}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
        left + plot_w / 2.0,
        height - 10.0,
        esc(&p.x_axis)
    );
    let cy = top + plot_h / 2.0;
    let _ = writeln!(
        s,
        "<text class=\"axis-title\" x=\"18\" y=\"{cy:.2}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 18 {cy:.2})\">{}</text>",
        esc(&p.y_axis)
    );
    (s, width, height)
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
        let cells =
            svg.matches("class=\"cell\"").count() + svg.matches("class=\"cell empty\"").count();
        assert_eq!(cells, 6);
        assert_eq!(svg.matches("class=\"colorbar\"").count(), 1);
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
            zero_based: false,
            notes: vec![],
        };
        let svg = figure(&[Panel::Lines(p)]);
        assert_eq!(svg.matches("class=\"series\"").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 5 + 2);
    }
}
