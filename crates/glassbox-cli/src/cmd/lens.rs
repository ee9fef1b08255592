//! `glassbox lens` — the logit lens: what each layer's residual stream predicts.
//!
//! A layer × position grid of each cell's top token, coloured by its probability (on a log
//! scale from 1e-4 to 1, or by log-probability with `--logprob`), and with `--target` a second
//! grid of the target's probability and rank: in the terminal, and drawn the same way by
//! `--plot`.

use std::path::PathBuf;

use glassbox_analysis::lens;

use crate::analysis_cli::{self, OutputArgs};
use crate::render::{self, svg, terminal, Grid, Scale};

#[derive(clap::Args)]
pub struct Args {
    /// Model: a Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// A token to follow through the layers (text such as " Paris", or #ID).
    #[arg(long)]
    pub target: Option<String>,
    /// How many top tokens to report per cell (JSON).
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Colour cells by natural log-probability (−10 to 0) instead of probability.
    #[arg(long)]
    pub logprob: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.output
        .check(&crate::model_cli::model_inputs(&args.model, &args.sae))?;
    let model = analysis_cli::load_model(&args.model, &args.sae)?;
    crate::model_cli::require_logits(&model, &args.model, "lens")?;
    let ids = analysis_cli::tokens(&model, &args.prompt)?;
    let target = match &args.target {
        Some(t) => Some(analysis_cli::single_token(&model, t, "--target")?),
        None => None,
    };
    // Without a target, the report follows the model's own final prediction back in depth.
    let followed = match target {
        Some(t) => t,
        None => glassbox_analysis::predictions::predicted_next(&model, &ids)?,
    };
    let report = lens::run(&model, &ids, args.top.max(1), Some(followed))?;

    if args.output.json {
        analysis_cli::print_json(&lens::document(
            &args.model.display().to_string(),
            &args.prompt,
            &ids,
            &report,
        ))?;
    } else {
        let color = terminal::use_color();
        let grids = grids(&report, target.is_some(), args.logprob, false);
        for (i, g) in grids.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", terminal::grid(g, color));
        }
    }
    if let Some(path) = &args.output.plot {
        let grids = grids(&report, target.is_some(), args.logprob, true);
        render::save_svg(path, &svg::heatmap_panels(&grids))?;
    }
    Ok(())
}

/// The lowest log-probability `--logprob` tells apart.
const LOGPROB_FLOOR: f32 = -10.0;

/// A runner-up at least this share of the top token's probability makes the cell a near tie,
/// marked `≈`: without colour a cell read as a clear prediction at 0.52 against 0.48.
const NEAR_TIE: f32 = 0.8;

fn columns(report: &lens::LensReport) -> Vec<String> {
    render::position_labels(&report.prompt_tokens)
}

/// The views, for the terminal and the figure alike: the top token per layer and position,
/// and the target's probability and rank when one was asked for.
fn grids(
    report: &lens::LensReport,
    show_target: bool,
    logprob: bool,
    for_figure: bool,
) -> Vec<Grid> {
    let colour_of = |p: f32| {
        if logprob {
            p.max(f32::MIN_POSITIVE).ln().max(LOGPROB_FLOOR)
        } else {
            p
        }
    };
    let scaled = |g: Grid, what: &str| {
        if logprob {
            g.scale(Scale::Sequential)
                .range(LOGPROB_FLOOR, 0.0)
                .value_label(format!("{what} log-probability (nats, ≤ −10 shown as −10)"))
        } else {
            g.scale(Scale::Probability)
                .value_label(format!("{what} probability"))
        }
    };
    let values: Vec<Vec<f32>> = report
        .top
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| c.first().map(|t| colour_of(t.prob)).unwrap_or(f32::NAN))
                .collect()
        })
        .collect();
    let text = report
        .top
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| match cell.as_slice() {
                    [first, second, ..] if second.prob >= NEAR_TIE * first.prob => {
                        format!("{}≈", render::token_label(&first.token))
                    }
                    [first, ..] => render::token_label(&first.token),
                    [] => String::new(),
                })
                .collect()
        })
        .collect();
    let top = Grid::new(
        "Logit lens: the top token at each layer (rows) and position (columns)",
        "residual stream",
        "position",
        report.layers.clone(),
        columns(report),
        values,
    )
    .cell_text(text)
    .notes(vec![format!(
        "≈: the runner-up has at least {:.0} % of the top token's probability (a near tie)",
        NEAR_TIE * 100.0
    )]);
    let mut out = vec![scaled(top, "top-token")];
    if let Some(target) = report.target.as_ref().filter(|_| show_target) {
        let values = target
            .scores
            .iter()
            .map(|row| row.iter().map(|s| colour_of(s.prob)).collect())
            .collect();
        let text = target
            .scores
            .iter()
            .map(|row| {
                row.iter()
                    .map(|s| match for_figure {
                        // the probability is the cell's colour (and its tooltip)
                        true => format!("#{}", s.rank),
                        false => format!("{} #{}", terminal::format_value(s.prob), s.rank),
                    })
                    .collect()
            })
            .collect();
        let g = Grid::new(
            format!(
                "Target {}: probability and rank (#0 = top) per layer and position",
                render::token_label(&target.token)
            ),
            "residual stream",
            "position",
            report.layers.clone(),
            columns(report),
            values,
        )
        .cell_text(text);
        out.push(scaled(g, "target"));
    }
    out
}
