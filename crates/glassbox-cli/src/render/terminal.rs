//! Grids for the console: ANSI true-colour heatmaps on a terminal, aligned plain text otherwise.

use std::io::IsTerminal;

use super::{is_dark, Grid, Scale};

/// True when stdout is a terminal (colour is then worth sending).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// When terminal views use colour (`--color`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set (https://no-color.org).
    Auto,
    Always,
    Never,
}

static COLOR: std::sync::OnceLock<ColorChoice> = std::sync::OnceLock::new();

/// Records the `--color` choice, once, at start-up.
pub fn set_color_choice(choice: ColorChoice) {
    let _ = COLOR.set(choice);
}

/// Whether to colour what goes to stdout: `--color always|never`, else a terminal without
/// `NO_COLOR` (set and non-empty) in the environment.
pub fn use_color() -> bool {
    match COLOR.get().copied().unwrap_or(ColorChoice::Auto) {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            stdout_is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// The width views lay themselves out in: `COLUMNS` when set (shells export it, and tests set
/// it), else the terminal's own width, else 120 columns.
pub fn width() -> usize {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c >= 20)
    {
        return cols;
    }
    #[cfg(unix)]
    if stdout_is_terminal() {
        // SAFETY: TIOCGWINSZ fills a winsize struct we own; fd 1 is open.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col >= 20 {
            return ws.ws_col as usize;
        }
    }
    120
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
    let fmt = g.number_format();
    let texts: Vec<Vec<String>> = match &g.cell_text {
        Some(t) => t.clone(),
        None => g
            .values
            .iter()
            .map(|row| row.iter().map(|&v| fmt.format(v)).collect())
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
    for line in std::iter::once(&g.title)
        .filter(|t| !t.is_empty())
        .chain(&g.notes)
    {
        for wrapped in wrap(line, width()) {
            out.push_str(&wrapped);
            out.push('\n');
        }
    }
    // As many columns per block as the width holds; wider grids continue in further blocks.
    let per_block = ((width().saturating_sub(row_w + 2)) / (cell_w + 1)).max(1);
    let n_cols = g
        .col_labels
        .len()
        .max(g.values.iter().map(Vec::len).max().unwrap_or(0));
    let blocks: Vec<std::ops::Range<usize>> = (0..n_cols.max(1))
        .step_by(per_block)
        .map(|start| start..(start + per_block).min(n_cols))
        .collect();
    for (b, cols) in blocks.iter().enumerate() {
        if blocks.len() > 1 {
            if b > 0 {
                out.push('\n');
            }
            out.push_str(&format!(
                "{} {}–{} of {}\n",
                g.col_axis,
                cols.start,
                cols.end.saturating_sub(1),
                n_cols
            ));
        }
        grid_block(g, &texts, cols.clone(), row_w, cell_w, color, &mut out);
    }
    if !g.value_label.is_empty() {
        out.push_str(&legend(g, color));
    }
    out
}

/// The colour legend: what the colour means, and with colour a swatch of the scale between
/// its end values (`1e-4 ▕████████▏ 1`), the baseline named where there is one.
pub fn legend(g: &Grid, color: bool) -> String {
    let (lo, hi) = g.color_range();
    let ends = |v: f32| match g.scale {
        Scale::Probability => format!("{v}"),
        _ => g.number_format().format(v),
    };
    let mut line = format!("colour: {}", g.value_label);
    if g.scale == Scale::Probability {
        line.push_str(" (log scale)");
    }
    if color {
        const STEPS: usize = 16;
        line.push_str(&format!("  {} ", ends(lo)));
        for i in 0..STEPS {
            // the value at the middle of step i, on the scale's own spacing
            let t = (i as f32 + 0.5) / STEPS as f32;
            let v = match g.scale {
                Scale::Probability => 10f32.powf(lo.log10() + t * (hi.log10() - lo.log10())),
                _ => lo + t * (hi - lo),
            };
            let (r, gr, b) = g.color(v);
            line.push_str(&format!("\x1b[48;2;{r};{gr};{b}m \x1b[0m"));
        }
        line.push_str(&format!(" {}", ends(hi)));
    } else {
        line.push_str(&format!(" from {} to {}", ends(lo), ends(hi)));
    }
    if let Some((v, name)) = &g.baseline {
        line.push_str(&format!("; {name} {}", g.number_format().format(*v)));
    }
    line.push('\n');
    line
}

/// `text` broken at spaces into lines of at most `width` characters (a longer word stands alone).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if !line.is_empty() && needed > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// Columns `cols` of the grid: header, rule and one line per row.
fn grid_block(
    g: &Grid,
    texts: &[Vec<String>],
    cols: std::ops::Range<usize>,
    row_w: usize,
    cell_w: usize,
    color: bool,
    out: &mut String,
) {
    out.push_str(&fit_left(&g.row_axis, row_w));
    out.push_str(" │");
    for label in g.col_labels.get(cols.clone()).unwrap_or(&[]) {
        out.push(' ');
        out.push_str(&fit(label, cell_w));
    }
    out.push('\n');
    out.push_str(&"─".repeat(row_w + 1));
    out.push('┼');
    out.push_str(&"─".repeat((cell_w + 1) * cols.len()));
    out.push('\n');
    for (r, row) in g.values.iter().enumerate() {
        let label = g.row_labels.get(r).map(String::as_str).unwrap_or("");
        out.push_str(&fit_left(label, row_w));
        out.push_str(" │");
        for (c, &v) in row.iter().enumerate().skip(cols.start).take(cols.len()) {
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
        // one number format for the whole grid, from its largest value
        assert!(lines[3].contains("0.5") && lines[3].contains("-1.0"));
        assert!(lines[4].contains('·') && lines[4].contains("123.0"));
        assert!(!s.contains('\x1b'));
        assert!(grid(&g, true).contains("\x1b["));
    }

    #[test]
    fn legends_name_the_scale_and_show_a_swatch_in_colour() {
        let g = Grid::new("t", "r", "c", vec![], vec![], vec![vec![1e-3, 0.5]])
            .scale(Scale::Probability)
            .value_label("probability");
        let plain = legend(&g, false);
        assert_eq!(plain, "colour: probability (log scale) from 0.0001 to 1\n");
        let coloured = legend(&g, true);
        assert_eq!(coloured.matches("\x1b[48;2;").count(), 16, "{coloured:?}");
        assert!(coloured.starts_with("colour: probability (log scale)  0.0001 "));
        let chance = Grid::new("t", "r", "c", vec![], vec![], vec![vec![0.2]])
            .range(0.0, 1.0)
            .scale(Scale::Sequential)
            .value_label("mean attention")
            .baseline(0.084, "chance");
        assert!(legend(&chance, false).contains("; chance 0.084"));
    }

    #[test]
    fn values_fit_seven_characters() {
        for v in [0.0, 1e-7, -123456.0, 3.25, -99.99, 1e30] {
            assert!(format_value(v).chars().count() <= 8, "{v}");
        }
    }
}
