//! `glassbox diff A B [--top N] [--json]`: per-tensor change between two checkpoints in any
//! formats (a GGUF file is compared under Hub names, with llama.cpp's Q/K row permutation
//! undone), most-changed first.
//!
//! `--json` writes one object with these stable keys:
//! - `"a"`, `"b"` (paths);
//! - `"summary"`: `{compared, identical, shape_changed, only_in_a, only_in_b,
//!   max_relative_change}` (counts; `identical` = compared with zero difference and the same
//!   non-finite values);
//! - `"tensors"`: list, most-changed first, of `{name, stored_name_a, stored_name_b, status
//!   ("compared" | "shape-changed" | "only-in-a" | "only-in-b"), shape_a, shape_b, dtype_a,
//!   dtype_b, relative_change (‖A−B‖/‖A‖), cosine, max_abs_diff, norm_a, norm_b, norm_diff,
//!   non_finite_pairs, non_finite_changed}`; metrics are `null` unless the status is
//!   "compared" (and `relative_change` is `null` when ‖A‖ = 0 < ‖A−B‖); they leave out pairs
//!   where a value is NaN or infinite (`non_finite_pairs`), and a tensor where such a pair
//!   differs (`non_finite_changed`) comes first. `--top N` keeps the first N;
//! - `"unmapped"`: `{a, b}`, GGUF tensor names that have no Hub counterpart (or need a
//!   transpose) and so are compared under their stored names.

use std::path::PathBuf;

use glassbox_formats::diff::{self, DiffStatus, DiffSummary, HubView, TensorDiff};

use super::inspect::{emit, human_bytes, open, outln};

#[derive(clap::Args)]
pub struct Args {
    /// The reference checkpoint (directory, .safetensors, .gguf or PyTorch file).
    pub a: PathBuf,
    /// The checkpoint compared with it.
    pub b: PathBuf,
    /// Show only the N most-changed tensors.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Machine-readable output (keys documented in the command's module doc and the README).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let a = open(&args.a)?;
    let b = open(&args.b)?;
    let view_a = HubView::hub(&a)?;
    let view_b = HubView::hub(&b)?;
    let bytes: u64 = a.tensors().iter().map(|t| t.bytes).sum();
    let bar = crate::progress::bar(bytes, "comparing");
    let start = std::time::Instant::now();
    let mut diffs = diff::diff(&view_a, &view_b, &|n| bar.inc(n))?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let summary = DiffSummary::of(&diffs);
    let DiffSummary {
        compared,
        identical,
        shape_changed,
        only_in_a: only_a,
        only_in_b: only_b,
        ..
    } = summary;
    if let Some(n) = args.top {
        diffs.truncate(n);
    }

    if args.json {
        let out = diff::document(
            &args.a.display().to_string(),
            &args.b.display().to_string(),
            &view_a,
            &view_b,
            &summary,
            &diffs,
        );
        emit(&(serde_json::to_string_pretty(&out)? + "\n"))?;
        return Ok(());
    }

    let mut out = String::new();
    outln!(out, "A {}", args.a.display());
    outln!(out, "B {}", args.b.display());
    outln!(
        out,
        "{compared} tensors compared ({identical} identical), {shape_changed} changed shape, {only_a} only in A, {only_b} only in B; {} in {seconds:.3} s",
        human_bytes(bytes)
    );
    for (side, view) in [("A", &view_a), ("B", &view_b)] {
        for (name, why) in &view.unmapped {
            outln!(
                out,
                "note: {side} `{name}` kept under its stored name: {why}"
            );
        }
    }
    print_table(&mut out, &diffs);
    emit(&out)
}

fn print_table(out: &mut String, diffs: &[TensorDiff]) {
    let width = diffs.iter().map(|d| d.name.len()).max().unwrap_or(4).max(4);
    outln!(
        out,
        "{:<width$}  {:>12} {:>10} {:>12}  shape / status",
        "name",
        "rel change",
        "cosine",
        "max |A-B|"
    );
    let num = |v: Option<f64>| match v {
        None => "-".to_string(),
        Some(0.0) => "0".to_string(),
        Some(v) if v.abs() < 1e-3 || v.abs() >= 1e4 => format!("{v:.3e}"),
        Some(v) => format!("{v:.6}"),
    };
    for d in diffs {
        let shape =
            |s: &Option<Vec<usize>>| s.as_ref().map_or("-".to_string(), |s| format!("{s:?}"));
        let note = match d.status {
            DiffStatus::Compared => shape(&d.shape_a),
            DiffStatus::ShapeChanged => {
                format!("shape {} -> {}", shape(&d.shape_a), shape(&d.shape_b))
            }
            DiffStatus::OnlyInA => "only in A".to_string(),
            DiffStatus::OnlyInB => "only in B".to_string(),
        };
        let change = match (d.status, d.relative_change) {
            (DiffStatus::Compared, None) => "inf".to_string(),
            (_, v) => num(v),
        };
        let note = match d.non_finite_changed {
            0 => note,
            n => format!("{note}; {n} NaN/infinite values differ"),
        };
        outln!(
            out,
            "{:<width$}  {:>12} {:>10} {:>12}  {note}",
            d.name,
            change,
            num(d.cosine),
            num(d.max_abs_diff)
        );
    }
}
