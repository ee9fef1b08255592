//! `glassbox attribute` — direct logit attribution at one position.
//!
//! Terminal: the per-head contributions as a layer × head heatmap, then every other part
//! (embeddings, attention biases, MLPs, the final norm's shift, the unembedding bias), and the
//! check that the parts add up to the logit (difference). `--plot` draws the same: a layer ×
//! (heads, attention bias where there is one, MLP) heatmap, and every term as a bar on one
//! zero-based axis — embeddings, each layer's attention and MLP, the final norm's shift, the
//! unembedding bias — with their sum and the model's value.

use std::path::PathBuf;

use glassbox_analysis::attribution::{self, Attribution, Component};

use crate::analysis_cli::{self, OutputArgs};
use crate::render::{self, svg, terminal, Bar, BarChart, Grid, Panel};

#[derive(clap::Args)]
pub struct Args {
    /// Model: a Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// The token whose logit is attributed (text such as " Mary", or #ID).
    #[arg(long)]
    pub target: String,
    /// Attribute the logit difference target − versus instead.
    #[arg(long)]
    pub versus: Option<String>,
    /// Position to attribute (default: the last).
    #[arg(long)]
    pub position: Option<usize>,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.output
        .check(&crate::model_cli::model_inputs(&args.model, &args.sae))?;
    let model = analysis_cli::load_model(&args.model, &args.sae)?;
    crate::model_cli::require_logits(&model, &args.model, "attribute")?;
    let ids = analysis_cli::tokens(&model, &args.prompt)?;
    let target = analysis_cli::single_token(&model, &args.target, "--target")?;
    let versus = match &args.versus {
        Some(v) => Some(analysis_cli::single_token(&model, v, "--versus")?),
        None => None,
    };
    let result = attribution::run(&model, &ids, args.position, target, versus)?;
    let info = model.info();
    let what = match versus {
        Some(v) => format!(
            "logit[{}] − logit[{}]",
            analysis_cli::describe_token(&model, target),
            analysis_cli::describe_token(&model, v)
        ),
        None => format!("logit[{}]", analysis_cli::describe_token(&model, target)),
    };
    let tokens = model.ids_to_str_tokens(&ids)?;
    let pos_label = format!(
        "{}:{}",
        result.position,
        render::token_label(
            tokens
                .get(result.position)
                .map(String::as_str)
                .unwrap_or("")
        )
    );

    if args.output.json {
        analysis_cli::print_json(&attribution::document(
            &model,
            &args.model.display().to_string(),
            &args.prompt,
            &ids,
            &result,
            target,
            versus,
        ))?;
    } else {
        let color = terminal::use_color();
        let heads = args
            .output
            .signed_range(head_grid(&result, info.n_layers, info.n_heads))
            .value_label(what.clone());
        println!("Direct logit attribution of {what} at position {pos_label}\n");
        print!("{}", terminal::grid(&heads, color));
        println!();
        let others: Vec<&(Component, f32)> = result
            .parts
            .iter()
            .filter(|(c, _)| !matches!(c, Component::Head { .. }))
            .collect();
        let width = others
            .iter()
            .map(|(c, _)| c.label().len())
            .max()
            .unwrap_or(8)
            .max(16);
        for (c, v) in others {
            println!("  {:<width$} {:>10}", c.label(), terminal::format_value(*v));
        }
        println!(
            "  {:<width$} {:>10}",
            "sum of parts",
            terminal::format_value(result.sum())
        );
        println!(
            "  {:<width$} {:>10}",
            "model's value",
            terminal::format_value(result.total)
        );
        if let Some(cap) = result.softcap {
            println!(
                "(the model soft-caps its logits, cap · tanh(logit / cap) with cap {cap}: attributed is the logit before it)"
            );
        }
        println!("({})", footnote(&result));
    }
    if let Some(path) = &args.output.plot {
        let mut g = args
            .output
            .signed_range(plot_grid(&result, info.n_layers, info.n_heads));
        g.title = format!("Direct logit attribution of {what} at {pos_label}");
        g.value_label = what.clone();
        g.notes = vec![footnote(&result)];
        let bars = BarChart {
            title: "Every term, its sum and the model's value".into(),
            notes: vec![],
            value_axis: format!("contribution to {what}"),
            bars: terms(&result, info.n_layers),
        };
        render::save_svg(path, &svg::figure(&[Panel::Grid(g), Panel::Bars(bars)]))?;
    }
    Ok(())
}

/// How the parts were made, in words (LayerNorm centres, RMSNorm does not).
fn footnote(a: &Attribution) -> String {
    format!(
        "each part is {}divided by the final norm's scale from this run ({:.4}), then projected on the unembedding",
        if a.norm_centres { "centred, " } else { "" },
        a.norm_scale
    )
}

/// Every term of the attribution: embeddings, each layer's attention (its heads and bias
/// together) and MLP (its experts together), the final norm's shift and the unembedding
/// bias; then their sum and the model's value.
fn terms(a: &Attribution, n_layers: usize) -> Vec<Bar> {
    let mut attn = vec![None::<f32>; n_layers];
    let mut mlp = vec![None::<f32>; n_layers];
    let mut bars = Vec::new();
    let add = |slot: &mut Option<f32>, v: f32| *slot = Some(slot.unwrap_or(0.0) + v);
    for (c, v) in &a.parts {
        match *c {
            Component::Head { layer, .. }
            | Component::AttnBias { layer }
            | Component::AttnRounding { layer }
            | Component::Attn { layer }
                if layer < n_layers =>
            {
                add(&mut attn[layer], *v)
            }
            Component::Mlp { layer }
            | Component::Expert { layer, .. }
            | Component::SharedExperts { layer }
                if layer < n_layers =>
            {
                add(&mut mlp[layer], *v)
            }
            Component::Embed | Component::PosEmbed => bars.push(Bar::term(c.label(), *v)),
            _ => {}
        }
    }
    for l in 0..n_layers {
        if let Some(v) = attn[l] {
            bars.push(Bar::term(format!("L{l} attention"), v));
        }
        if let Some(v) = mlp[l] {
            bars.push(Bar::term(format!("L{l} MLP"), v));
        }
    }
    for (c, v) in &a.parts {
        if matches!(
            c,
            Component::NormBias | Component::UnembedBias | Component::UnembedRounding
        ) {
            bars.push(Bar::term(c.label(), *v));
        }
    }
    bars.push(Bar::total("sum of the terms", a.sum()));
    bars.push(Bar::total(
        match a.softcap {
            Some(_) => "model's value before its soft-cap",
            None => "model's value",
        },
        a.total,
    ));
    bars
}

fn head_grid(a: &Attribution, n_layers: usize, n_heads: usize) -> Grid {
    Grid::new(
        "per head",
        "layer",
        "head",
        (0..n_layers).map(|l| format!("L{l}")).collect(),
        (0..n_heads).map(|h| format!("H{h}")).collect(),
        a.head_grid(n_layers, n_heads),
    )
}

/// Heads, then the attention bias where any layer has a nonzero one (or the whole attention
/// block where it does not split into heads), and the MLP (its experts summed), per layer.
fn plot_grid(a: &Attribution, n_layers: usize, n_heads: usize) -> Grid {
    let mut values = a.head_grid(n_layers, n_heads);
    let mut bias = vec![f32::NAN; n_layers];
    let mut whole = vec![f32::NAN; n_layers];
    let mut mlp = vec![f32::NAN; n_layers];
    for (c, v) in &a.parts {
        match *c {
            Component::AttnBias { layer } if layer < n_layers => bias[layer] = *v,
            Component::Attn { layer } if layer < n_layers => whole[layer] = *v,
            Component::Mlp { layer }
            | Component::Expert { layer, .. }
            | Component::SharedExperts { layer }
                if layer < n_layers =>
            {
                mlp[layer] = if mlp[layer].is_nan() {
                    *v
                } else {
                    mlp[layer] + *v
                }
            }
            _ => {}
        }
    }
    let mut cols: Vec<String> = (0..n_heads).map(|h| format!("H{h}")).collect();
    let mut extra = |name: &str, column: &[f32], values: &mut Vec<Vec<f32>>| {
        cols.push(name.into());
        for (row, v) in values.iter_mut().zip(column) {
            row.push(*v);
        }
    };
    // an all-zero bias column (a bias-free model) says nothing
    if bias.iter().any(|v| v.is_finite() && *v != 0.0) {
        extra("attn bias", &bias, &mut values);
    }
    if whole.iter().any(|v| v.is_finite()) {
        extra("attention", &whole, &mut values);
    }
    extra("MLP", &mlp, &mut values);
    Grid::new(
        "",
        "layer",
        "component",
        (0..n_layers).map(|l| format!("L{l}")).collect(),
        cols,
        values,
    )
}
