//! `glassbox probe` — linear probes at chosen hooks on labelled examples
//! (`glassbox_analysis::probe`): per hook, held-out accuracy (and ROC AUC for two classes) or
//! R², beside a control fitted on shuffled labels and the majority-class baseline, with each
//! score's 95 % interval; warnings (stderr, and `warnings` in `--json`) when too few examples
//! are held out or texts repeat (copies stay on one side of the split), and a best hook named
//! only when one beats chance beyond its interval for all the hooks probed together.
//!
//! `--data` is JSON Lines: `{"text": "…", "label": …}` per line; words or booleans are
//! classes, numbers are values to regress (`--task classification` makes numbers classes).
//! `--out FILE.safetensors` writes each hook's unit direction (two classes or regression),
//! named by the hook, with the model's path and a fingerprint of what it computes at those
//! hooks in the header; `glassbox steer --direction FILE` turns those at
//! `blocks.N.hook_resid_post` into a control vector, saying when it steers another model.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use glassbox_analysis::probe::{self, Labels, Position, ProbeOptions};
use glassbox_formats::input::{self, limit};
use glassbox_models::NameFilter;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// A Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// Hook names or globs, comma-separated (e.g. `blocks.*.hook_resid_post`).
    #[arg(long, required = true)]
    pub hooks: Vec<String>,
    /// Labelled examples, JSON Lines: {"text": ..., "label": ...}.
    #[arg(long, value_name = "FILE.jsonl")]
    pub data: PathBuf,
    /// Treat labels as classes or as values (default: numbers are values, others classes).
    #[arg(long, value_enum)]
    pub task: Option<Task>,
    /// Which token represents an example.
    #[arg(long, value_enum, default_value = "last")]
    pub position: PositionArg,
    /// Share of examples held out.
    #[arg(long, default_value_t = 0.25)]
    pub test_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// L2 penalty on standardised features.
    #[arg(long, default_value_t = 1e-3)]
    pub l2: f64,
    /// Write each hook's probe direction (unit length) to this safetensors file.
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Task {
    Classification,
    Regression,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PositionArg {
    Last,
    Mean,
}

fn read_examples(
    path: &std::path::Path,
    task: Option<Task>,
) -> anyhow::Result<(Vec<String>, Labels)> {
    let text = input::read_text(path, "labelled examples", limit::CORPUS)?;
    let mut texts = Vec::new();
    let mut raw = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| crate::invalid!("{}: line {}: {e}", path.display(), i + 1))?;
        let t = v.get("text").and_then(Value::as_str).ok_or_else(|| {
            crate::invalid!("{}: line {}: no string field `text`", path.display(), i + 1)
        })?;
        let label = match v.get("label") {
            None => {
                return Err(crate::invalid!(
                    "{}: line {}: no field `label`",
                    path.display(),
                    i + 1
                ))
            }
            Some(Value::Null) => {
                return Err(crate::invalid!(
                    "{}: line {}: the label is null: give a word, a boolean or a number",
                    path.display(),
                    i + 1
                ))
            }
            Some(l) => l.clone(),
        };
        if !(label.is_string() || label.is_boolean() || label.is_number()) {
            return Err(crate::invalid!(
                "{}: line {}: a label is a word, a boolean or a number, not {label}",
                path.display(),
                i + 1
            ));
        }
        // a regression squares its labels: past 1e150 their variance is no finite number
        if label.as_f64().is_some_and(|v| v.abs() > 1e150) {
            return Err(crate::invalid!(
                "{}: line {}: the label {label} is too large to regress on (at most 1e150 in magnitude)",
                path.display(),
                i + 1
            ));
        }
        texts.push(t.to_string());
        raw.push(label);
    }
    let numeric = raw.iter().all(Value::is_number);
    let regression = match task {
        Some(Task::Regression) => {
            if !numeric {
                return Err(crate::invalid!(
                    "{}: --task regression needs numeric labels",
                    path.display()
                ));
            }
            true
        }
        Some(Task::Classification) => false,
        None => numeric,
    };
    let labels = if regression {
        Labels::Values(raw.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect())
    } else {
        let name = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let names: Vec<String> = raw
            .iter()
            .map(name)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let y = raw.iter().map(|v| index[name(v).as_str()]).collect();
        Labels::Classes { names, y }
    };
    Ok((texts, labels))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(args.test_fraction > 0.0 && args.test_fraction < 1.0) {
        return Err(crate::invalid!("--test-fraction must be between 0 and 1"));
    }
    // before the model loads; NaN or ∞ would make NaN directions, a negative one no minimum
    if !(args.l2.is_finite() && args.l2 >= 0.0) {
        return Err(crate::invalid!(
            "--l2 {}: give a finite penalty ≥ 0",
            args.l2
        ));
    }
    if let Some(out) = &args.out {
        let mut inputs = crate::model_cli::model_inputs(&args.model, &args.sae);
        inputs.push(&args.data);
        crate::output::check(out, "--out", &inputs)?;
    }
    let filter = NameFilter::new(&args.hooks).map_err(|e| crate::invalid!("--hooks: {e}"))?;
    let (texts, labels) = read_examples(&args.data, args.task)?;
    let model = crate::model_cli::load_model(&args.model, "f32", &args.sae)?;
    let examples: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| model.to_tokens(t).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<_>>()?;
    let position = match args.position {
        PositionArg::Last => Position::Last,
        PositionArg::Mean => Position::Mean,
    };
    let features = probe::collect(&model, &examples, &filter, position)?;
    let opts = ProbeOptions {
        test_fraction: args.test_fraction,
        seed: args.seed,
        l2: args.l2,
        ..ProbeOptions::default()
    };
    let report = probe::fit_all(&features, &labels, &probe::groups_of(&examples), &opts)?;
    let results = &report.probes;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(out) = &args.out {
        // a NaN direction would steer a model into NaN: refuse the file whole
        let broken: Vec<&str> = results
            .iter()
            .filter(|r| {
                r.direction
                    .as_ref()
                    .is_some_and(|d| d.iter().any(|v| !v.is_finite()))
            })
            .map(|r| r.hook.as_str())
            .collect();
        if !broken.is_empty() {
            return Err(crate::invalid!(
                "--out: the probe direction at {} is not finite (the activations there are not); nothing written",
                broken.join(", ")
            ));
        }
        let mut tensors: HashMap<String, candle_core::Tensor> = HashMap::new();
        for r in results {
            if let Some(d) = &r.direction {
                tensors.insert(r.hook.clone(), probe::direction_tensor(d)?);
            }
        }
        if tensors.is_empty() {
            return Err(crate::invalid!(
                "--out: probes over more than two classes have no single direction; nothing written"
            ));
        }
        let hooks: Vec<String> = tensors.keys().cloned().collect();
        let provenance = crate::analysis_cli::probe_provenance(&model, &args.model, &hooks)?;
        crate::output::write_safetensors(&tensors, Some(provenance), out)?;
    }
    let classes = match &labels {
        Labels::Classes { names, .. } => Some(names.clone()),
        Labels::Values(_) => None,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": args.model,
                "examples": labels.len(),
                "classes": classes,
                "position": position,
                "held_out_per_class": report.held_out_per_class,
                "probes": results,
                "best": report.best,
                "warnings": report.warnings,
            }))?
        );
        return Ok(());
    }
    let score = if classes.is_some() { "accuracy" } else { "R²" };
    let per_class = match (&classes, &report.held_out_per_class) {
        (Some(names), Some(counts)) => format!(
            " ({})",
            names
                .iter()
                .zip(counts)
                .map(|(n, c)| format!("{n} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => String::new(),
    };
    println!(
        "{} examples ({}), {} held out{per_class}; control = the same probe on shuffled labels",
        labels.len(),
        match &classes {
            Some(c) => format!("classes {}", c.join(", ")),
            None => "regression".into(),
        },
        results.first().map(|r| r.test_examples).unwrap_or(0)
    );
    println!(
        "{:<36} {:>10} {:>10} {:>11} {:>8} {:>10} {:>9}",
        "hook",
        format!("train {score}"),
        format!("test {score}"),
        "test 95 %",
        "AUC",
        "control",
        "majority"
    );
    let dash = || "-".to_string();
    // an R² of labels that do not vary is undefined (NaN), as are scores of non-finite rows
    let shown = |v: f64| {
        if v.is_nan() {
            "undefined".to_string()
        } else {
            format!("{v:.3}")
        }
    };
    for r in results {
        println!(
            "{:<36} {:>10} {:>10} {:>11} {:>8} {:>10} {:>9}",
            r.hook,
            shown(r.train_score),
            shown(r.test_score),
            r.test_interval
                .map(|[lo, hi]| format!("{lo:.2}–{hi:.2}"))
                .unwrap_or_else(dash),
            r.test_auc.map(|a| format!("{a:.3}")).unwrap_or_else(dash),
            shown(r.control_test_score),
            r.majority_baseline
                .map(|m| format!("{m:.3}"))
                .unwrap_or_else(dash)
        );
    }
    match &report.best {
        Some(hook) => println!("best held-out: {hook}"),
        None => println!(
            "best held-out: none (no hook beats both its majority baseline and its shuffled-label control by more than chance allows)"
        ),
    }
    if let Some(out) = &args.out {
        println!("directions written to {}", out.display());
    }
    Ok(())
}
