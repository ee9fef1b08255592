//! `glassbox inspect PATH [--stats] [--tensor NAME [--hist BINS]] [--json]`: what a checkpoint
//! holds — architecture, parameter counts by component and dtype, GGUF metadata, the tensor
//! table, and optionally per-tensor statistics and a histogram.
//!
//! `--json` writes one object with these stable keys:
//! - `"path"` (string), `"format"` (`"hub-snapshot"`, `"safetensors"`, `"gguf"`, `"py-torch"`);
//! - `"architecture"`: `family`, `classes`, `layers`, `d_model`, `heads`, `kv_heads`, `head_dim`,
//!   `d_mlp`, `vocab`, `context_length`, `positions`, `rope` (`theta`, `fraction`, `dims`,
//!   `scaling`, `scaling_factor`), `norm`, `norm_eps`, `tied_embeddings`, `experts`,
//!   `experts_per_token`, `shared_experts`, `d_expert` — `null` where the metadata is silent;
//! - `"parameters"` (integer: the sum of every tensor's element count), `"bytes"` (integer);
//! - `"parameters_by_component"`: `embedding`, `attention`, `mlp`, `norm`, `unembedding`,
//!   `other` → integer;
//! - `"dtypes"`: list of `{dtype, tensors, parameters, bytes}`;
//! - `"metadata"` (GGUF only): key → value, arrays longer than 16 summarised as
//!   `{"array_of", "len", "head"}`;
//! - `"tensors"`: list of `{name, shape, dtype, bytes, component}` in file order (only the
//!   `--tensor` one when given);
//! - with `--stats`: `"stats"`: `{bytes, seconds, gb_per_s, tensors: {NAME: {elements, mean,
//!   std, min, max, abs_max, l2_norm, zeros, zero_fraction, nan, inf}}}` (statistics over finite
//!   values; `null` when a tensor has none);
//! - with `--hist`: `"histogram"`: `{tensor, bins, edges, counts, nan, inf}`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use glassbox_formats::report;
use glassbox_formats::stats::{self, Histogram, TensorStats};
use glassbox_formats::summary::{ArchitectureSummary, ParameterSummary};
use glassbox_formats::{Checkpoint, GgufValue, TensorInfo};
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// A Hub snapshot directory, or a .safetensors, .gguf or PyTorch checkpoint file.
    pub path: PathBuf,
    /// Per-tensor statistics: mean, std, min, max, |max|, L2 norm, zeros, NaN, Inf.
    #[arg(long)]
    pub stats: bool,
    /// Only this tensor in the table and statistics.
    #[arg(long, value_name = "NAME")]
    pub tensor: Option<String>,
    /// A histogram of the `--tensor` with this many bins.
    #[arg(long, value_name = "BINS", requires = "tensor")]
    pub hist: Option<usize>,
    /// Machine-readable output (keys documented in the command's module doc and the README).
    #[arg(long)]
    pub json: bool,
}

/// Appends formatted text to a `String` (output is written in one piece by [`emit`]).
macro_rules! put {
    ($out:expr, $($arg:tt)*) => { $out.push_str(&format!($($arg)*)) };
}
macro_rules! outln {
    ($out:expr) => { $out.push('\n') };
    ($out:expr, $($arg:tt)*) => {{ $out.push_str(&format!($($arg)*)); $out.push('\n'); }};
}
pub(crate) use outln;

/// Writes `text` to stdout; a closed pipe (`glassbox inspect … | head`) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Opens a checkpoint; a path that does not exist is the user's input error (exit 2).
pub fn open(path: &std::path::Path) -> anyhow::Result<Checkpoint> {
    glassbox_formats::input::existing(path)?;
    Ok(Checkpoint::open(path)?)
}

/// More bins than any figure or table can show; the counts are allocated up front.
const MAX_BINS: usize = 1 << 20;

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.hist == Some(0) {
        return Err(crate::invalid!("--hist needs at least one bin"));
    }
    if let Some(bins) = args.hist.filter(|&b| b > MAX_BINS) {
        return Err(crate::invalid!("--hist {bins}: at most {MAX_BINS} bins"));
    }
    let ck = open(&args.path)?;
    if args.path.is_dir() && ck.tensors().is_empty() {
        return Err(crate::invalid!(
            "{}: a folder with no weights in it (no *.safetensors, *.bin or *.pth files)",
            args.path.display()
        ));
    }
    let tensors: Vec<&TensorInfo> = match &args.tensor {
        Some(name) => vec![ck
            .info(name)
            .ok_or_else(|| crate::invalid!("{}: no tensor named `{name}`", args.path.display()))?],
        None => ck.tensors().iter().collect(),
    };

    let architecture = report::architecture_of(&ck);
    let params = ParameterSummary::of(ck.tensors());

    let stats = if args.stats {
        Some(compute_stats(&ck, &tensors)?)
    } else {
        None
    };
    let histogram = match (args.hist, &args.tensor) {
        (Some(bins), Some(name)) => Some(
            stats::histogram(&ck, name, bins).with_context(|| format!("histogram of `{name}`"))?,
        ),
        _ => None,
    };

    if args.json {
        let stats = stats.as_ref().map(|s| report::StatsRun {
            per_tensor: &s.per_tensor,
            bytes: s.bytes,
            seconds: s.seconds,
        });
        let histogram = histogram.as_ref().zip(args.tensor.as_deref());
        let out = report::inspect_document(
            &args.path.display().to_string(),
            &ck,
            &tensors,
            stats.as_ref(),
            histogram.map(|(h, name)| (name, h)),
        );
        emit(&(serde_json::to_string_pretty(&out)? + "\n"))?;
        return Ok(());
    }

    let mut out = String::new();
    print_text(
        &mut out,
        &args,
        &ck,
        &architecture,
        &params,
        &tensors,
        stats.as_ref(),
    );
    if let (Some(h), Some(name)) = (&histogram, &args.tensor) {
        print_histogram(&mut out, name, h);
    }
    emit(&out)
}

struct StatsRun {
    per_tensor: Vec<TensorStats>,
    bytes: u64,
    seconds: f64,
}

fn compute_stats(ck: &Checkpoint, tensors: &[&TensorInfo]) -> anyhow::Result<StatsRun> {
    let bytes: u64 = tensors.iter().map(|t| t.bytes).sum();
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    let bar = crate::progress::bar(bytes, "statistics");
    let start = Instant::now();
    let per_tensor = stats::checkpoint_stats(ck, &names, &|n| bar.inc(n))?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(StatsRun {
        per_tensor,
        bytes,
        seconds,
    })
}

/// A metadata value for the terminal: `[32000 strings: "<unk>", "<s>", …]` for long arrays.
fn gguf_text(value: &GgufValue) -> String {
    match report::metadata_json(value, Some(report::ARRAY_PREVIEW)) {
        Value::Object(summary) => {
            let head: Vec<String> = summary
                .get("head")
                .and_then(|h| h.as_array())
                .map(|h| h.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            let word = summary
                .get("array_of")
                .and_then(|w| w.as_str())
                .unwrap_or("value");
            let len = summary.get("len").and_then(|l| l.as_u64()).unwrap_or(0);
            format!("[{len} {word}s: {}, …]", head.join(", "))
        }
        other => other.to_string(),
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1234567` → `1.23 M`.
pub fn human_count(n: u64) -> String {
    let n = n as f64;
    for (scale, unit) in [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")] {
        if n >= scale {
            return format!("{:.2} {unit}", n / scale);
        }
    }
    format!("{n}")
}

pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    for (scale, unit) in [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")] {
        if n >= scale {
            return format!("{:.2} {unit}", n / scale);
        }
    }
    format!("{n} B")
}

/// A statistic in 10 characters.
fn num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(0.0) => "0".into(),
        Some(v) if v.abs() >= 1e4 || v.abs() < 1e-3 => format!("{v:.3e}"),
        Some(v) => format!("{v:.5}"),
    }
}

fn print_text(
    out: &mut String,
    args: &Args,
    ck: &Checkpoint,
    arch: &ArchitectureSummary,
    params: &ParameterSummary,
    tensors: &[&TensorInfo],
    stats: Option<&StatsRun>,
) {
    let kind = serde_json::to_value(ck.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    outln!(out, "{} ({kind})", args.path.display());
    print_architecture(out, arch);
    outln!(
        out,
        "parameters    {} ({}) in {} tensors, {}",
        thousands(params.parameters),
        human_count(params.parameters),
        ck.tensors().len(),
        human_bytes(params.bytes)
    );
    for (component, &n) in &params.by_component {
        if n > 0 {
            let pct = 100.0 * n as f64 / params.parameters.max(1) as f64;
            outln!(out, "  {component:<12} {:>16} {pct:6.2} %", thousands(n));
        }
    }
    outln!(out, "dtypes");
    for d in &params.by_dtype {
        outln!(
            out,
            "  {:<8} {:>6} tensors {:>16} parameters {:>11}",
            d.dtype,
            d.tensors,
            thousands(d.parameters),
            human_bytes(d.bytes)
        );
    }
    if let Some(gguf) = ck.gguf() {
        outln!(out, "metadata (GGUF v{})", gguf.version);
        for (key, value) in gguf.metadata() {
            outln!(out, "  {key} = {}", gguf_text(value));
        }
    }
    let name_width = tensors
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let shapes: Vec<String> = tensors.iter().map(|t| format!("{:?}", t.shape)).collect();
    let shape_width = shapes.iter().map(String::len).max().unwrap_or(5).max(5);
    put!(
        out,
        "{:<name_width$}  {:<shape_width$}  {:<7} {:>10}",
        "name",
        "shape",
        "dtype",
        "bytes"
    );
    if stats.is_some() {
        put!(
            out,
            "  {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7} {:>5} {:>5}",
            "mean",
            "std",
            "min",
            "max",
            "abs max",
            "L2",
            "zeros%",
            "nan",
            "inf"
        );
    }
    outln!(out);
    for (i, (t, shape)) in tensors.iter().zip(&shapes).enumerate() {
        put!(
            out,
            "{:<name_width$}  {:<shape_width$}  {:<7} {:>10}",
            t.name,
            shape,
            t.dtype.to_string(),
            human_bytes(t.bytes)
        );
        if let Some(s) = stats.and_then(|s| s.per_tensor.get(i)) {
            put!(
                out,
                "  {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7.3} {:>5} {:>5}",
                num(s.mean),
                num(s.std),
                num(s.min),
                num(s.max),
                num(s.abs_max),
                num(Some(s.l2_norm)),
                100.0 * s.zero_fraction,
                s.nan,
                s.inf
            );
        }
        outln!(out);
    }
    if let Some(s) = stats {
        outln!(
            out,
            "statistics over {} in {:.3} s ({:.2} GB/s)",
            human_bytes(s.bytes),
            s.seconds,
            report::StatsRun {
                per_tensor: &s.per_tensor,
                bytes: s.bytes,
                seconds: s.seconds
            }
            .gb_per_s()
        );
    }
}

fn print_architecture(out: &mut String, a: &ArchitectureSummary) {
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    let family = a.family.as_deref().unwrap_or("unknown");
    if a.classes.is_empty() {
        outln!(out, "architecture  {family}");
    } else {
        outln!(out, "architecture  {family} ({})", a.classes.join(", "));
    }
    outln!(
        out,
        "  layers {}, d_model {}, heads {} (kv {}), head_dim {}, d_mlp {}, vocab {}, context {}",
        opt(a.layers),
        opt(a.d_model),
        opt(a.heads),
        opt(a.kv_heads),
        opt(a.head_dim),
        opt(a.d_mlp),
        opt(a.vocab),
        opt(a.context_length)
    );
    let mut details = Vec::new();
    if let Some(p) = &a.positions {
        details.push(format!("positions {p}"));
    }
    if let Some(r) = &a.rope {
        let mut rope = format!(
            "rope theta {}",
            r.theta.map_or("?".into(), |t| t.to_string())
        );
        if let Some(f) = r.fraction.filter(|f| *f != 1.0) {
            rope += &format!(" on {:.0} % of each head", 100.0 * f);
        }
        if let Some(s) = &r.scaling {
            rope += &format!(", {s} scaling");
            if let Some(f) = r.scaling_factor {
                rope += &format!(" ×{f}");
            }
        }
        details.push(rope);
    }
    if let Some(n) = &a.norm {
        details.push(match a.norm_eps {
            Some(e) => format!("{n} (eps {e:.3e})"),
            None => n.clone(),
        });
    }
    if let Some(t) = a.tied_embeddings {
        details.push(format!("tied embeddings {}", if t { "yes" } else { "no" }));
    }
    if let Some(e) = a.experts {
        details.push(format!(
            "{e} experts, {} per token{}",
            opt(a.experts_per_token),
            a.shared_experts
                .map_or(String::new(), |s| format!(", {s} shared"))
        ));
    }
    if !details.is_empty() {
        outln!(out, "  {}", details.join("; "));
    }
}

fn print_histogram(out: &mut String, name: &str, h: &Histogram) {
    outln!(out, "histogram of {name} ({} bins)", h.counts.len());
    let peak = h.counts.iter().copied().max().unwrap_or(0).max(1);
    for (i, &count) in h.counts.iter().enumerate() {
        let bar = "#".repeat((count * 50).div_ceil(peak) as usize);
        outln!(
            out,
            "  [{:>11}, {:>11}{} {:>12}  {bar}",
            num(Some(h.edges[i])),
            num(Some(h.edges[i + 1])),
            if i + 1 == h.counts.len() { "]" } else { ")" },
            thousands(count)
        );
    }
    if h.nan + h.inf > 0 {
        outln!(out, "  (not counted: {} NaN, {} Inf)", h.nan, h.inf);
    }
}
