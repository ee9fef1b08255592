//! `glassbox attribute` — direct logit attribution at one position.
//!
//! Terminal: the per-head contributions as a layer × head heatmap, then every other part
//! (embeddings, attention biases, MLPs, the final norm's shift, the unembedding bias), and the
//! check that the parts add up to the logit (difference). `--plot` draws a layer × (heads,
//! attention bias, MLP) heatmap.

use std::path::PathBuf;

use glassbox_analysis::attribution::{self, Attribution, Component};
use serde_json::json;

use crate::analysis_cli::{self, OutputArgs};
use crate::render::{self, svg, terminal, Grid};

#[derive(clap::Args)]
pub struct Args {
    /// Model: a Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
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
    args.output.check()?;
    let model = analysis_cli::load_model(&args.model)?;
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
        let parts: Vec<_> = result
            .parts
            .iter()
            .map(|(c, v)| json!({"component": c, "label": c.label(), "value": v}))
            .collect();
        analysis_cli::print_json(&json!({
            "model": args.model,
            "prompt": args.prompt,
            "input_ids": ids,
            "position": result.position,
            "target": target,
            "versus": versus,
            "metric": what,
            "total": result.total,
            "sum_of_parts": result.sum(),
            "final_norm_scale": result.norm_scale,
            "heads": result.head_grid(info.n_layers, info.n_heads),
            "parts": parts,
        }))?;
    } else {
        let color = terminal::use_color();
        let heads = head_grid(&result, info.n_layers, info.n_heads).value_label(what.clone());
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
        println!(
            "(each part is centred and divided by the final norm's scale from this run, {:.4}, then projected)",
            result.norm_scale
        );
    }
    if let Some(path) = &args.output.plot {
        let mut g = plot_grid(&result, info.n_layers, info.n_heads);
        g.title = format!("Direct logit attribution at {pos_label}");
        g.value_label = what;
        render::save_svg(path, &svg::heatmap(&g))?;
    }
    Ok(())
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

/// Heads, then the attention bias (or whole attention block) and the MLP, per layer.
fn plot_grid(a: &Attribution, n_layers: usize, n_heads: usize) -> Grid {
    let mut values = a.head_grid(n_layers, n_heads);
    for row in values.iter_mut() {
        row.extend([f32::NAN, f32::NAN]);
    }
    for (c, v) in &a.parts {
        match *c {
            Component::AttnBias { layer } | Component::Attn { layer } if layer < n_layers => {
                values[layer][n_heads] = *v
            }
            Component::Mlp { layer } if layer < n_layers => values[layer][n_heads + 1] = *v,
            _ => {}
        }
    }
    let mut cols: Vec<String> = (0..n_heads).map(|h| format!("H{h}")).collect();
    cols.push("attn bias".into());
    cols.push("MLP".into());
    Grid::new(
        "",
        "layer",
        "component",
        (0..n_layers).map(|l| format!("L{l}")).collect(),
        cols,
        values,
    )
}
