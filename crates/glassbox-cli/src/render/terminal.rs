//! Grids for the console: ANSI true-colour heatmaps on a terminal, aligned plain text otherwise.

use std::io::IsTerminal;

use super::{is_dark, Grid};

/// True when stdout is a terminal (colour is then worth sending).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// A number in at most 7 characters, keeping 3 significant digits where it can.
pub fn format_value(v: f32) -> String {
    if v.is_nan() {
        return "·".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        let pad = width - n;
        // centre, leaning left
        format!("{}{}{}", " ".repeat(pad / 2), s, " ".repeat(pad - pad / 2))
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn fit_left(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        format!("{s}{}", " ".repeat(width - n))
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Renders a grid; with `color`, cells get their heatmap colour as background.
pub fn grid(g: &Grid, color: bool) -> String {
    let texts: Vec<Vec<String>> = match &g.cell_text {
        Some(t) => t.clone(),
        None => g
            .values
            .iter()
            .map(|row| row.iter().map(|&v| format_value(v)).collect())
            .collect(),
    };
    let widest_cell = texts
        .iter()
        .flatten()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(1);
    let widest_col_label = g
        .col_labels
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(1);
    let cell_w = widest_cell.max(widest_col_label.min(10)).clamp(5, 12);
    let row_w = g
        .row_labels
        .iter()
        .map(|s| s.chars().count())
        .chain([g.row_axis.chars().count()])
        .max()
        .unwrap_or(1)
        .min(24);

    let mut out = String::new();
    if !g.title.is_empty() {
        out.push_str(&g.title);
        out.push('\n');
    }
    for note in &g.notes {
        out.push_str(note);
        out.push('\n');
    }
    // header: row-axis name, then the column labels
    out.push_str(&fit_left(&g.row_axis, row_w));
    out.push_str(" │");
    for label in &g.col_labels {
        out.push(' ');
        out.push_str(&fit(label, cell_w));
    }
    out.push('\n');
    out.push_str(&"─".repeat(row_w + 1));
    out.push('┼');
    out.push_str(&"─".repeat((cell_w + 1) * g.col_labels.len()));
    out.push('\n');
    for (r, row) in g.values.iter().enumerate() {
        let label = g.row_labels.get(r).map(String::as_str).unwrap_or("");
        out.push_str(&fit_left(label, row_w));
        out.push_str(" │");
        for (c, &v) in row.iter().enumerate() {
            let text = texts
                .get(r)
                .and_then(|t| t.get(c))
                .map(String::as_str)
                .unwrap_or("");
            out.push(' ');
            if color && v.is_finite() {
                let rgb = g.color(v);
                let fg = if is_dark(rgb) { "97" } else { "30" };
                out.push_str(&format!(
                    "\x1b[{fg};48;2;{};{};{}m{}\x1b[0m",
                    rgb.0,
                    rgb.1,
                    rgb.2,
                    fit(text, cell_w)
                ));
            } else {
                out.push_str(&fit(text, cell_w));
            }
        }
        out.push('\n');
    }
    if !g.value_label.is_empty() {
        let (lo, hi) = g.color_range();
        out.push_str(&format!(
            "colour: {} from {} to {}\n",
            g.value_label,
            format_value(lo),
            format_value(hi)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_grid_aligns_labels_and_values() {
        let g = Grid::new(
            "t",
            "layer",
            "position",
            vec!["0".into(), "1".into()],
            vec!["0:a".into(), "1:bb".into()],
            vec![vec![0.5, -1.0], vec![f32::NAN, 123.0]],
        );
        let s = grid(&g, false);
        let lines: Vec<_> = s.lines().collect();
        assert_eq!(lines[0], "t");
        assert!(lines[1].contains("0:a") && lines[1].contains("1:bb"));
        assert!(lines[3].contains("0.500") && lines[3].contains("-1.000"));
        assert!(lines[4].contains('·') && lines[4].contains("123"));
        assert!(!s.contains('\x1b'));
        assert!(grid(&g, true).contains("\x1b["));
    }

    #[test]
    fn values_fit_seven_characters() {
        for v in [0.0, 1e-7, -123456.0, 3.25, -99.99, 1e30] {
            assert!(format_value(v).chars().count() <= 8, "{v}");
        }
    }
}
