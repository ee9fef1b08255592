//! `glassbox steer` — a steering (control) vector from contrasting prompts, written in
//! llama.cpp's control-vector GGUF format (apply it with `glassbox generate --control-vector
//! FILE[:SCALE]` or llama.cpp's `--control-vector`).
//!
//! `direction.N` is made as llama.cpp's `cvector-generator --method mean` makes it: the i-th
//! positive prompt paired with the i-th negative one, the residual stream entering block N
//! (block N−1's output) subtracted position by position, the positions both share from the
//! start left out, the mean of the rest; unit length unless `--no-normalize`. It is added to
//! block N's output — llama.cpp's convention; see `glassbox_analysis::steering`.

use std::path::PathBuf;

use glassbox_analysis::steering::{self, ControlVector};

use crate::analysis_cli::{self, OutputArgs};
use crate::render::{self, svg, Bar, BarChart};

#[derive(clap::Args)]
pub struct Args {
    /// Model: a Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// Prompts showing the behaviour to steer towards (repeatable; the i-th is paired with the
    /// i-th --negative, as llama.cpp's cvector-generator pairs them).
    #[arg(long = "positive", num_args = 1.., required_unless_present = "direction")]
    pub positive: Vec<String>,
    /// Prompts showing its opposite, as many as --positive (repeatable).
    #[arg(long = "negative", num_args = 1.., required_unless_present = "direction")]
    pub negative: Vec<String>,
    /// Blocks whose output is steered, L1-L2 (llama.cpp numbering: 1 … n_layers−1).
    #[arg(long, required_unless_present = "direction")]
    pub layers: Option<String>,
    /// Instead of contrasting prompts: the directions `glassbox probe --out` wrote (those at
    /// `blocks.N.hook_resid_post`, N ≥ 1, become the control vector's `direction.N`).
    #[arg(long, value_name = "FILE.safetensors", conflicts_with_all = ["positive", "negative"])]
    pub direction: Option<PathBuf>,
    /// Output control-vector file (.gguf).
    #[arg(long)]
    pub out: PathBuf,
    /// Keep the mean difference's length instead of normalising each direction to 1.
    #[arg(long)]
    pub no_normalize: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut inputs = crate::model_cli::model_inputs(&args.model, &args.sae);
    inputs.extend(args.direction.as_deref());
    args.output.check(&inputs)?;
    crate::output::check(&args.out, "--out", &inputs)?;
    let model = analysis_cli::load_model(&args.model, &args.sae)?;
    // the raw difference's length is worth reporting even when the file holds unit vectors
    let (raw, contrast) = match &args.direction {
        Some(path) => (from_probe(&model, path, args.layers.as_deref())?, None),
        None => {
            let layers = steering::parse_layers(args.layers.as_deref().unwrap_or_default())?;
            let tokenize = |texts: &[String]| -> anyhow::Result<Vec<Vec<u32>>> {
                texts
                    .iter()
                    .map(|t| analysis_cli::tokens(&model, t))
                    .collect()
            };
            let positive = tokenize(&args.positive)?;
            let negative = tokenize(&args.negative)?;
            let c = steering::contrast(&model, &positive, &negative, layers)?;
            (c.vector.clone(), Some(c))
        }
    };
    let vector = steering::write_checked(&raw, !args.no_normalize, &args.out)?;
    let norms = raw.norms();

    if args.output.json {
        analysis_cli::print_json(&steering::document(
            &args.model.display().to_string(),
            Some(&args.out),
            &raw,
            !args.no_normalize,
            contrast.as_ref(),
        ))?;
    } else {
        println!(
            "wrote {} ({} direction{}, d_model {}, model hint {:?}){}",
            args.out.display(),
            vector.directions.len(),
            if vector.directions.len() == 1 {
                ""
            } else {
                "s"
            },
            vector.d_model,
            vector.model_hint,
            if args.no_normalize {
                ""
            } else {
                ", unit length"
            }
        );
        // A probe's direction is no mean difference: its length is named as what it is.
        let what = if args.direction.is_some() {
            "|probe direction|"
        } else {
            "|mean difference|"
        };
        for (l, n) in &norms {
            let control = contrast
                .as_ref()
                .and_then(|c| c.control.get(l))
                .map(|c| {
                    let p = if c.p_value < 1e-3 {
                        "< 0.001".to_string()
                    } else {
                        format!("= {:.3}", c.p_value)
                    };
                    format!(
                        " (pairs' sides swapped at random: {:.4}, p {p})",
                        c.swapped_norm
                    )
                })
                .unwrap_or_default();
            println!(
                "  direction.{l}: added to blocks.{l}.hook_resid_post; {what} = {n:.4}{control}"
            );
        }
        if let Some(c) = &contrast {
            let least = 2.0 / 2f64.powi(c.pairs.min(60) as i32);
            println!(
                "  p: the share of side swaps giving a difference as long (small when the pairs share a direction){}",
                if least > 0.05 {
                    format!("; with {} pair{} it cannot go below {least:.3}: give more pairs to tell", c.pairs, if c.pairs == 1 { "" } else { "s" })
                } else {
                    String::new()
                }
            );
        }
    }
    if let Some(path) = &args.output.plot {
        let (title, axis) = if args.direction.is_some() {
            (
                "Length of the probe's direction, per steered block",
                "L2 norm of the probe direction",
            )
        } else {
            (
                "Size of the positive − negative mean difference, per steered block",
                "L2 norm of the mean of the pairs' differences (positive − negative)",
            )
        };
        let mut notes = vec![format!(
            "the direction added to blocks.N.hook_resid_post{}",
            if args.no_normalize {
                ""
            } else {
                " is this difference scaled to unit length"
            }
        )];
        if let Some(c) = &contrast {
            notes.push(format!(
                "with each pair's sides swapped at random (no shared direction): {}",
                c.control
                    .iter()
                    .map(|(l, v)| format!(
                        "direction.{l} {:.3} (p {:.3})",
                        v.swapped_norm, v.p_value
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let chart = BarChart {
            title: title.into(),
            notes,
            value_axis: axis.into(),
            bars: norms
                .iter()
                .map(|(l, n)| Bar::term(format!("direction.{l}"), *n))
                .collect(),
        };
        render::save_svg(path, &svg::bar_chart(&chart))?;
    }
    Ok(())
}

/// A control vector from probe directions (`glassbox probe --out`), optionally only `layers`.
fn from_probe(
    model: &glassbox_models::HookedModel,
    path: &std::path::Path,
    layers: Option<&str>,
) -> anyhow::Result<ControlVector> {
    let d_model = model.info().d_model;
    let (mut directions, note) = analysis_cli::read_probe_directions(path, model)?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    if let Some(spec) = layers {
        let keep = steering::parse_layers(spec)?;
        directions.retain(|l, _| keep.contains(l));
    }
    // llama.cpp's files have no direction.0: block 0's output cannot be steered.
    let n_layers = model.info().n_layers;
    let (kept, dropped): (Vec<usize>, Vec<usize>) =
        directions.keys().partition(|&&l| l >= 1 && l < n_layers);
    if !dropped.is_empty() && !kept.is_empty() {
        eprintln!(
            "note: {}: directions at blocks {dropped:?} left out (a control vector steers the outputs of blocks 1 … {})",
            path.display(),
            n_layers.saturating_sub(1)
        );
    }
    directions.retain(|l, _| kept.contains(l));
    if directions.is_empty() {
        return Err(crate::invalid!(
            "{}: no probe direction at blocks 1 … {} (block 0's output cannot be steered)",
            path.display(),
            model.info().n_layers.saturating_sub(1)
        ));
    }
    if let Some((l, v)) = directions.iter().find(|(_, v)| v.len() != d_model) {
        return Err(crate::invalid!(
            "{}: the direction at block {l} has {} values; this model's residual stream has {d_model}",
            path.display(),
            v.len()
        ));
    }
    Ok(ControlVector {
        model_hint: model.info().architecture.clone(),
        d_model,
        directions,
    })
}
