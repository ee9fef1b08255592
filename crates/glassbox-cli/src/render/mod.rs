//! Shared output for the analysis commands: terminal heatmaps and SVG figures.
//!
//! Design: a command builds a plain data description — a [`Grid`] (a labelled matrix of
//! numbers) or a [`LinePlot`] (labelled series over categorical x positions) — and hands it to
//! [`terminal`] for the console or [`svg`] for a figure. Neither side knows about models, so
//! every analysis shares one look. Figures are hand-written SVG (no plotting crate) and are
//! written atomically through [`write_atomic`], so a failed run never leaves half a file.

pub mod svg;
pub mod terminal;

use std::path::Path;

/// How values map to colours. Every scale says what its colours mean: signed values are
/// symmetric about a white zero, probabilities always span the same fixed range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Signed values: blue below zero, white at zero, red above, symmetric about zero.
    Diverging,
    /// Magnitudes from the minimum to the maximum (or the given range).
    Sequential,
    /// Probabilities on a log scale from [`PROB_FLOOR`] (and below) to 1, so that small
    /// probabilities stay apart (on a linear 0–1 scale everything under 0.05 is one colour).
    Probability,
}

/// The lowest probability [`Scale::Probability`] tells apart.
pub const PROB_FLOOR: f32 = 1e-4;

/// Values in one figure printed alike: a number of decimals, or scientific notation, chosen
/// from the largest magnitude the figure shows (never 0.004 next to 7.1e-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberFormat {
    Fixed(usize),
    Scientific,
}

impl NumberFormat {
    /// The format for values up to `largest` in magnitude: three significant digits for the
    /// largest (at least one decimal), the same decimals for the rest.
    pub fn for_largest(largest: f32) -> Self {
        let a = largest.abs();
        if !a.is_finite() || a == 0.0 {
            NumberFormat::Fixed(2)
        } else if !(1e-3..1e5).contains(&a) {
            NumberFormat::Scientific
        } else {
            NumberFormat::Fixed((2 - a.log10().floor() as i32).clamp(1, 4) as usize)
        }
    }

    pub fn format(self, v: f32) -> String {
        if v.is_nan() {
            return "·".into();
        }
        match self {
            NumberFormat::Fixed(d) => {
                let s = format!("{v:.d$}");
                // "-0.000" is zero
                if s.trim_start_matches('-')
                    .chars()
                    .all(|c| c == '0' || c == '.')
                {
                    s.trim_start_matches('-').to_string()
                } else {
                    s
                }
            }
            NumberFormat::Scientific => format!("{v:.1e}"),
        }
    }
}

/// A labelled matrix: rows are usually layers, columns positions (tokens) or heads.
#[derive(Clone, Debug)]
pub struct Grid {
    pub title: String,
    /// Name of the row axis ("layer") and column axis ("position").
    pub row_axis: String,
    pub col_axis: String,
    pub row_labels: Vec<String>,
    pub col_labels: Vec<String>,
    /// `values[row][col]`; NaN cells are drawn empty.
    pub values: Vec<Vec<f32>>,
    /// Optional text to print in each cell instead of the number (e.g. a top token).
    pub cell_text: Option<Vec<Vec<String>>>,
    pub scale: Scale,
    /// Fixed colour range; `None` takes it from the data.
    pub range: Option<(f32, f32)>,
    /// What the colour means ("logit difference"), shown by the colour bar.
    pub value_label: String,
    /// Lines under the title: what the figure measures, and warnings about its setup
    /// (a line starting with `⚠`).
    pub notes: Vec<String>,
    /// A reference value marked on the colour bar, with its name (e.g. chance level).
    pub baseline: Option<(f32, String)>,
}

impl Grid {
    pub fn new(
        title: impl Into<String>,
        row_axis: impl Into<String>,
        col_axis: impl Into<String>,
        row_labels: Vec<String>,
        col_labels: Vec<String>,
        values: Vec<Vec<f32>>,
    ) -> Self {
        Grid {
            title: title.into(),
            row_axis: row_axis.into(),
            col_axis: col_axis.into(),
            row_labels,
            col_labels,
            values,
            cell_text: None,
            scale: Scale::Diverging,
            range: None,
            value_label: String::new(),
            notes: Vec::new(),
            baseline: None,
        }
    }

    pub fn baseline(mut self, value: f32, label: impl Into<String>) -> Self {
        self.baseline = Some((value, label.into()));
        self
    }

    /// How this grid's numbers are printed: alike, from its largest magnitude.
    pub fn number_format(&self) -> NumberFormat {
        let largest = self
            .values
            .iter()
            .flatten()
            .filter(|v| v.is_finite())
            .fold(0f32, |m, v| m.max(v.abs()));
        NumberFormat::for_largest(largest)
    }

    /// Where `v` falls on the colour scale, 0 to 1.
    pub fn position(&self, v: f32) -> f32 {
        if self.scale == Scale::Probability {
            let l = v.clamp(PROB_FLOOR, 1.0).log10();
            return (l - PROB_FLOOR.log10()) / -PROB_FLOOR.log10();
        }
        let (lo, hi) = self.color_range();
        if hi > lo {
            (v - lo) / (hi - lo)
        } else {
            0.5
        }
    }

    /// Values to label on the colour scale.
    pub fn ticks(&self) -> Vec<f32> {
        match self.scale {
            Scale::Probability => vec![1e-4, 1e-3, 1e-2, 0.1, 1.0],
            _ => {
                let (lo, hi) = self.color_range();
                svg::nice_ticks(lo as f64, hi as f64, 5)
                    .into_iter()
                    .map(|t| t as f32)
                    .collect()
            }
        }
    }

    /// Columns `cols` of this grid as a grid of their own, on this grid's colour scale.
    pub fn columns(&self, cols: std::ops::Range<usize>) -> Grid {
        let pick = |row: &Vec<f32>| row.get(cols.clone()).unwrap_or(&[]).to_vec();
        let mut g = self.clone();
        g.range = Some(self.color_range());
        g.col_labels = self.col_labels.get(cols.clone()).unwrap_or(&[]).to_vec();
        g.values = self.values.iter().map(pick).collect();
        g.cell_text = self.cell_text.as_ref().map(|t| {
            t.iter()
                .map(|row| row.get(cols.clone()).unwrap_or(&[]).to_vec())
                .collect()
        });
        g
    }

    pub fn notes(mut self, notes: Vec<String>) -> Self {
        self.notes = notes;
        self
    }

    pub fn scale(mut self, scale: Scale) -> Self {
        self.scale = scale;
        self
    }

    pub fn range(mut self, lo: f32, hi: f32) -> Self {
        self.range = Some((lo, hi));
        self
    }

    pub fn value_label(mut self, label: impl Into<String>) -> Self {
        self.value_label = label.into();
        self
    }

    pub fn cell_text(mut self, text: Vec<Vec<String>>) -> Self {
        self.cell_text = Some(text);
        self
    }

    /// The colour range: the fixed one, or symmetric |max| for diverging, min..max otherwise.
    pub fn color_range(&self) -> (f32, f32) {
        if self.scale == Scale::Probability {
            return (PROB_FLOOR, 1.0);
        }
        if let Some(r) = self.range {
            return r;
        }
        let finite = self
            .values
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite());
        match self.scale {
            Scale::Diverging => {
                let m = finite.fold(0f32, |m, v| m.max(v.abs()));
                if m > 0.0 {
                    (-m, m)
                } else {
                    (-1.0, 1.0)
                }
            }
            Scale::Sequential | Scale::Probability => {
                let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                });
                if lo.is_finite() && hi > lo {
                    (lo, hi)
                } else if lo.is_finite() {
                    (lo - 0.5, lo + 0.5)
                } else {
                    (0.0, 1.0)
                }
            }
        }
    }

    /// The colour of a value as 8-bit RGB.
    pub fn color(&self, v: f32) -> (u8, u8, u8) {
        let t = self.position(v);
        match self.scale {
            Scale::Diverging => colormap(DIVERGING, t),
            Scale::Sequential | Scale::Probability => colormap(SEQUENTIAL, t),
        }
    }
}

/// Signed values as horizontal bars from a zero line, one per labelled term (e.g. every term
/// of a logit attribution, its sum and the model's value).
#[derive(Clone, Debug)]
pub struct BarChart {
    pub title: String,
    pub notes: Vec<String>,
    /// What the bar length measures ("contribution to the logit difference").
    pub value_axis: String,
    pub bars: Vec<Bar>,
}

#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub value: f32,
    /// Drawn apart from the terms (a total).
    pub total: bool,
}

impl Bar {
    pub fn term(label: impl Into<String>, value: f32) -> Self {
        Bar {
            label: label.into(),
            value,
            total: false,
        }
    }

    pub fn total(label: impl Into<String>, value: f32) -> Self {
        Bar {
            label: label.into(),
            value,
            total: true,
        }
    }
}

/// One panel of a figure; a figure stacks panels vertically.
#[derive(Clone, Debug)]
pub enum Panel {
    Grid(Grid),
    Bars(BarChart),
    Lines(LinePlot),
}

/// Series over shared categorical x positions (e.g. the target's probability per layer).
#[derive(Clone, Debug)]
pub struct LinePlot {
    pub title: String,
    pub x_axis: String,
    pub y_axis: String,
    pub x_labels: Vec<String>,
    pub series: Vec<(String, Vec<f32>)>,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f32, f32)>,
    /// Plot y on a log10 axis (probabilities, ranks).
    pub log_y: bool,
    /// The fitted y range includes zero: for magnitudes compared by height.
    pub zero_based: bool,
    /// Lines under the title.
    pub notes: Vec<String>,
}

// Anchor colours, evenly spaced on [0, 1]. Diverging: ColorBrewer RdBu (reversed so that
// positive is red); sequential: viridis. Both are perceptually ordered and print in greyscale.
const DIVERGING: &[(u8, u8, u8)] = &[
    (5, 48, 97),
    (33, 102, 172),
    (67, 147, 195),
    (146, 197, 222),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (244, 165, 130),
    (214, 96, 77),
    (178, 24, 43),
    (103, 0, 31),
];
const SEQUENTIAL: &[(u8, u8, u8)] = &[
    (68, 1, 84),
    (72, 40, 120),
    (62, 74, 137),
    (49, 104, 142),
    (38, 130, 142),
    (31, 158, 137),
    (53, 183, 121),
    (110, 206, 88),
    (181, 222, 43),
    (253, 231, 37),
];

fn colormap(anchors: &[(u8, u8, u8)], t: f32) -> (u8, u8, u8) {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let x = t * (anchors.len() - 1) as f32;
    let i = (x.floor() as usize).min(anchors.len() - 2);
    let f = x - i as f32;
    let (a, b) = (anchors[i], anchors[i + 1]);
    let mix = |p: u8, q: u8| (p as f32 + (q as f32 - p as f32) * f).round() as u8;
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The colour map's anchors with their offsets in [0, 1], for an SVG gradient.
pub fn colormap_stops(scale: Scale) -> Vec<(f32, (u8, u8, u8))> {
    let anchors = match scale {
        Scale::Diverging => DIVERGING,
        Scale::Sequential | Scale::Probability => SEQUENTIAL,
    };
    let n = (anchors.len() - 1) as f32;
    anchors
        .iter()
        .enumerate()
        .map(|(i, &c)| (i as f32 / n, c))
        .collect()
}

/// Relative luminance, to choose black or white text over a colour.
pub fn is_dark((r, g, b): (u8, u8, u8)) -> bool {
    0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32 <= 140.0
}

/// A token as a label: whitespace made visible, control characters escaped.
pub fn token_label(token: &str) -> String {
    let mut out = String::new();
    for c in token.chars() {
        match c {
            ' ' => out.push('␣'),
            '\n' => out.push('↵'),
            '\t' => out.push('⇥'),
            'Ġ' => out.push('␣'), // byte-level BPE's space, if the tokenizer did not decode it
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Position labels "i:token", unique even when a token repeats.
pub fn position_labels(tokens: &[String]) -> Vec<String> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{i}:{}", token_label(t)))
        .collect()
}

/// Writes `contents` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    // Its callers checked `path` against their inputs before any work.
    crate::output::check(path, "output", &[])?;
    Ok(glassbox_formats::output::write_bytes(path, contents)?)
}

/// Writes an SVG figure and says where it went (on stderr, so stdout stays machine-readable).
pub fn save_svg(path: &Path, svg: &str) -> anyhow::Result<()> {
    write_atomic(path, svg.as_bytes())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_is_white_at_zero_and_red_above() {
        let g = Grid::new("t", "r", "c", vec![], vec![], vec![vec![-2.0, 0.0, 2.0]]);
        assert_eq!(g.color(0.0), (247, 247, 247));
        let (r, _, b) = g.color(2.0);
        assert!(r > b);
        let (r, _, b) = g.color(-2.0);
        assert!(b > r);
    }

    #[test]
    fn one_figure_one_number_format() {
        let f = NumberFormat::for_largest(0.132);
        assert_eq!(
            (f.format(0.132), f.format(-0.004), f.format(7.1e-4)),
            ("0.132".into(), "-0.004".into(), "0.001".into())
        );
        assert_eq!(NumberFormat::for_largest(7.1e-4).format(3e-5), "3.0e-5");
        let f = NumberFormat::for_largest(123.0);
        assert_eq!(
            (f.format(123.0), f.format(0.5), f.format(-0.01)),
            ("123.0".into(), "0.5".into(), "0.0".into())
        );
    }

    #[test]
    fn token_labels_show_whitespace() {
        assert_eq!(token_label(" Paris\n"), "␣Paris↵");
        assert_eq!(position_labels(&["a".into(), " a".into()]), ["0:a", "1:␣a"]);
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("gb-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.svg");
        write_atomic(&p, b"<svg/>").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"<svg/>");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
