//! `glassbox lens` — the logit lens: what each layer's residual stream predicts.
//!
//! Terminal: a layer × position grid of each cell's top token, coloured by its probability,
//! and with `--target` a second grid of the target's probability and rank. `--plot` draws the
//! target's probability (the model's final prediction when no target is given) and the top
//! token's probability at the last position, layer by layer.

use std::path::PathBuf;

use glassbox_analysis::lens;
use serde_json::json;

use crate::analysis_cli::{self, OutputArgs};
use crate::render::{self, svg, terminal, Grid, LinePlot, Scale};

#[derive(clap::Args)]
pub struct Args {
    /// Model: a Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// A token to follow through the layers (text such as " Paris", or #ID).
    #[arg(long)]
    pub target: Option<String>,
    /// How many top tokens to report per cell (JSON).
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.output.check()?;
    let model = analysis_cli::load_model(&args.model)?;
    crate::model_cli::require_logits(&model, &args.model, "lens")?;
    let ids = analysis_cli::tokens(&model, &args.prompt)?;
    let target = match &args.target {
        Some(t) => Some(analysis_cli::single_token(&model, t, "--target")?),
        None => None,
    };
    // Without a target, the plot follows the model's own final prediction back in depth.
    let followed = match target {
        Some(t) => t,
        None => {
            let logits = model.run(&model.ids_tensor(&ids)?)?;
            let last = logits.get(0)?.get(ids.len() - 1)?;
            last.argmax(0)?.to_scalar::<u32>()?
        }
    };
    let report = lens::run(&model, &ids, args.top.max(1), Some(followed))?;

    if args.output.json {
        analysis_cli::print_json(&json!({
            "model": args.model,
            "prompt": args.prompt,
            "input_ids": ids,
            "report": report,
        }))?;
    } else {
        print!("{}", terminal_view(&report, target.is_some()));
    }
    if let Some(path) = &args.output.plot {
        render::save_svg(path, &svg::line_plot(&line_plot(&report, target.is_some())))?;
    }
    Ok(())
}

fn columns(report: &lens::LensReport) -> Vec<String> {
    render::position_labels(&report.prompt_tokens)
}

fn terminal_view(report: &lens::LensReport, show_target: bool) -> String {
    let color = terminal::use_color();
    let top1 = |f: &dyn Fn(&lens::TokenScore) -> String| -> Vec<Vec<String>> {
        report
            .top
            .iter()
            .map(|row| {
                row.iter()
                    .map(|cell| cell.first().map(f).unwrap_or_default())
                    .collect()
            })
            .collect()
    };
    let probs: Vec<Vec<f32>> = report
        .top
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| c.first().map(|t| t.prob).unwrap_or(f32::NAN))
                .collect()
        })
        .collect();
    let grid = Grid::new(
        "Logit lens: top token per layer (rows) and position (columns), coloured by probability",
        "layer",
        "position",
        report.layers.clone(),
        columns(report),
        probs,
    )
    .scale(Scale::Sequential)
    .range(0.0, 1.0)
    .value_label("top-token probability")
    .cell_text(top1(&|t| render::token_label(&t.token)));
    let mut out = terminal::grid(&grid, color);
    if let Some(target) = report.target.as_ref().filter(|_| show_target) {
        let values = target
            .scores
            .iter()
            .map(|row| row.iter().map(|s| s.prob).collect())
            .collect();
        let text = target
            .scores
            .iter()
            .map(|row| {
                row.iter()
                    .map(|s| format!("{} #{}", terminal::format_value(s.prob), s.rank))
                    .collect()
            })
            .collect();
        let g = Grid::new(
            format!(
                "Target {:?}: probability and rank (0 = top) per layer and position",
                target.token
            ),
            "layer",
            "position",
            report.layers.clone(),
            columns(report),
            values,
        )
        .scale(Scale::Sequential)
        .range(0.0, 1.0)
        .value_label("target probability")
        .cell_text(text);
        out.push('\n');
        out.push_str(&terminal::grid(&g, color));
    }
    out
}

fn line_plot(report: &lens::LensReport, target_given: bool) -> LinePlot {
    let last = report.prompt_tokens.len().saturating_sub(1);
    let at_last = |row: &Vec<Vec<lens::TokenScore>>| row.get(last).and_then(|c| c.first()).cloned();
    let mut series: Vec<(String, Vec<f32>)> = Vec::new();
    if let Some(t) = &report.target {
        let what = if target_given {
            ""
        } else {
            " (final prediction)"
        };
        series.push((
            format!("p({}){what}", render::token_label(&t.token)),
            t.scores
                .iter()
                .map(|row| row.get(last).map(|s| s.prob).unwrap_or(f32::NAN))
                .collect(),
        ));
    }
    series.push((
        "top-1 probability".to_string(),
        report
            .top
            .iter()
            .map(|row| at_last(row).map(|t| t.prob).unwrap_or(f32::NAN))
            .collect(),
    ));
    let token = report
        .prompt_tokens
        .get(last)
        .map(|t| render::token_label(t))
        .unwrap_or_default();
    // small probabilities are unreadable on a 0–1 axis: switch to a log axis
    let highest = series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .filter(|p| p.is_finite())
        .fold(0f32, |m, &p| m.max(p));
    let log_y = highest < 0.2;
    LinePlot {
        title: format!("Logit lens at the last position ({last}:{token})"),
        x_axis: "residual stream read before block (final = after the last block)".into(),
        y_axis: if log_y {
            "probability (log scale)"
        } else {
            "probability"
        }
        .into(),
        x_labels: report.layers.clone(),
        series,
        y_range: if log_y { None } else { Some((0.0, 1.0)) },
        log_y,
    }
}
