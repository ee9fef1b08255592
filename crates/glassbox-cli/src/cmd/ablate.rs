//! `glassbox ablate` — zero, mean or resample ablation of heads, MLP layers or neurons, and
//! the change in loss on a text.
//!
//! Targets: `L3H1` (a head), `L3MLP` (an MLP layer), `L3N42` (a neuron), or `heads` / `mlps`
//! for every head / every MLP. By default all targets are ablated together; `--each` ablates
//! them one at a time (a layer × head heatmap when they are heads).

use std::path::PathBuf;

use glassbox_analysis::ablation::{self, AblationMethod, AblationResult, AblationTarget};

use crate::analysis_cli::{self, OutputArgs};
use crate::render::{self, svg, terminal, Bar, BarChart, Grid, LinePlot, Panel};

#[derive(clap::Args)]
pub struct Args {
    /// Model: a Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// The text whose loss is measured.
    #[arg(long)]
    pub text: String,
    /// What to ablate (repeatable, comma-separated): L3H1, L3MLP, L3N42, heads, mlps.
    #[arg(long = "target", required = true, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// zero, mean (over --reference prompts) or resample (from each --reference prompt at least
    /// as long as the text, averaged).
    #[arg(long, default_value = "zero")]
    pub method: String,
    /// Reference prompts for mean and resample ablation (repeatable).
    #[arg(long = "reference")]
    pub reference: Vec<String>,
    /// Seed choosing the reference prompts resampled from, when more than 16 are long enough
    /// (each long enough prompt is one resample, the losses averaged).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ablate each target on its own instead of all together.
    #[arg(long)]
    pub each: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.output
        .check(&crate::model_cli::model_inputs(&args.model, &args.sae))?;
    let method = ablation::parse_method(&args.method, args.seed)?;
    if method != AblationMethod::Zero && args.reference.is_empty() {
        return Err(crate::invalid!(
            "--method {} needs reference prompts (--reference TEXT, repeatable)",
            args.method
        ));
    }
    let model = analysis_cli::load_model(&args.model, &args.sae)?;
    crate::model_cli::require_logits(&model, &args.model, "ablate")?;
    let info = model.info();
    // Named as the flag is (the library says `target L0X: …`).
    let targets = ablation::parse_targets(&args.targets, info.n_layers, info.n_heads, usize::MAX)
        .map_err(|e| match e.to_string() {
        m if m.starts_with("target ") => crate::invalid!("--{m}"),
        m => crate::invalid!("--target: {m}"),
    })?;
    let runs = if args.each { targets.len() } else { 1 };
    let bar = crate::progress::bar(runs as u64, "ablating");
    let report = ablation::ablate_text(
        &model,
        &args.text,
        &args.targets,
        method,
        &args.reference,
        args.each,
        || {
            bar.inc(1);
            std::ops::ControlFlow::Continue(())
        },
    )?;
    bar.finish_and_clear();
    let (text, results) = (&report.input_ids, &report.results);

    let tokens = model.ids_to_str_tokens(text)?;
    // per-token losses are for predicting token i+1 from position i
    let predicted: Vec<String> = render::position_labels(&tokens)
        .into_iter()
        .skip(1)
        .collect();

    if args.output.json {
        analysis_cli::print_json(&ablation::document(
            &args.model.display().to_string(),
            &args.text,
            args.each,
            &report,
        ))?;
    } else if args.each {
        println!(
            "{} ablation, one target at a time; baseline loss {:.4}\n",
            args.method,
            results.first().map(|r| r.baseline_loss).unwrap_or(f32::NAN)
        );
        match head_grid(results, info.n_layers, info.n_heads) {
            Some(g) => print!(
                "{}",
                terminal::grid(&args.output.signed_range(g), terminal::use_color())
            ),
            None => {
                for r in results {
                    let label: Vec<String> = r.targets.iter().map(|t| t.label()).collect();
                    println!(
                        "  {:<12} Δloss {:+.4}",
                        label.join(","),
                        r.ablated_loss - r.baseline_loss
                    );
                }
            }
        }
    } else if let Some(r) = results.first() {
        let labels: Vec<String> = r.targets.iter().map(|t| t.label()).collect();
        println!("{} ablation of {}", args.method, labels.join(", "));
        println!(
            "loss {:.4} → {:.4} (Δ {:+.4}) over {} predicted tokens",
            r.baseline_loss,
            r.ablated_loss,
            r.ablated_loss - r.baseline_loss,
            r.baseline_per_token.len()
        );
        if !r.resampled_from.is_empty() {
            let each: Vec<String> = r
                .resampled_from
                .iter()
                .zip(&r.ablated_loss_each)
                .map(|(i, l)| format!("#{i} {l:.4}"))
                .collect();
            let short = args.reference.len() - r.resampled_from.len();
            let left_out = if short > 0 {
                format!(
                    "; {short} reference(s) shorter than the text, or past the {} drawn, left out",
                    ablation::MAX_RESAMPLES
                )
            } else {
                String::new()
            };
            println!(
                "the mean of {} resamples, one per reference prompt: {}{left_out}",
                r.resampled_from.len(),
                each.join(", ")
            );
        }
        println!();
        let delta: Vec<f32> = r
            .ablated_per_token
            .iter()
            .zip(&r.baseline_per_token)
            .map(|(a, b)| a - b)
            .collect();
        let g = Grid::new(
            "change in loss predicting each token",
            "",
            "predicted token",
            vec!["Δloss".into()],
            predicted.clone(),
            vec![delta],
        )
        .value_label("ablated − baseline loss");
        print!(
            "{}",
            terminal::grid(&args.output.signed_range(g), terminal::use_color())
        );
    }

    if let Some(path) = &args.output.plot {
        let svg = if args.each {
            match head_grid(results, info.n_layers, info.n_heads) {
                Some(g) => svg::heatmap(&args.output.signed_range(g)),
                None => svg::bar_chart(&BarChart {
                    title: format!("{} ablation, one target at a time", args.method),
                    notes: vec![format!(
                        "baseline loss {:.4} over {} predicted tokens",
                        results.first().map(|r| r.baseline_loss).unwrap_or(f32::NAN),
                        predicted.len()
                    )],
                    value_axis: "change in mean loss (ablated − baseline, nats)".into(),
                    bars: results
                        .iter()
                        .map(|r| {
                            let label: Vec<String> = r.targets.iter().map(|t| t.label()).collect();
                            Bar::term(label.join(","), r.ablated_loss - r.baseline_loss)
                        })
                        .collect(),
                }),
            }
        } else {
            let r = &results[0];
            let delta: Vec<f32> = r
                .ablated_per_token
                .iter()
                .zip(&r.baseline_per_token)
                .map(|(a, b)| a - b)
                .collect();
            let what = r
                .targets
                .iter()
                .map(|t| t.label())
                .collect::<Vec<_>>()
                .join(", ");
            svg::figure(&[
                Panel::Lines(LinePlot {
                    title: format!("Loss per token, {} ablation of {what}", args.method),
                    x_axis: "predicted token".into(),
                    y_axis: "cross-entropy (nats)".into(),
                    x_labels: predicted.clone(),
                    series: vec![
                        ("baseline".into(), r.baseline_per_token.clone()),
                        ("ablated".into(), r.ablated_per_token.clone()),
                    ],
                    y_range: None,
                    log_y: false,
                    zero_based: true,
                    notes: vec![format!(
                        "mean loss {:.4} → {:.4} (Δ {:+.4})",
                        r.baseline_loss,
                        r.ablated_loss,
                        r.ablated_loss - r.baseline_loss
                    )],
                }),
                Panel::Grid(
                    args.output.signed_range(
                        Grid::new(
                            "Change in loss per token",
                            "",
                            "predicted token",
                            vec!["Δloss".into()],
                            predicted,
                            vec![delta],
                        )
                        .value_label("ablated − baseline (nats)"),
                    ),
                ),
            ])
        };
        render::save_svg(path, &svg)?;
    }
    Ok(())
}

/// Δloss per component as a layer × (heads, MLP) grid when every result ablated exactly one
/// head or one MLP layer.
fn head_grid(results: &[AblationResult], n_layers: usize, n_heads: usize) -> Option<Grid> {
    let mut values = vec![vec![f32::NAN; n_heads + 1]; n_layers];
    let mut mlps = false;
    for r in results {
        match r.targets.as_slice() {
            [AblationTarget::Head { layer, head }] if *layer < n_layers && *head < n_heads => {
                values[*layer][*head] = r.ablated_loss - r.baseline_loss
            }
            [AblationTarget::Mlp { layer }] if *layer < n_layers => {
                values[*layer][n_heads] = r.ablated_loss - r.baseline_loss;
                mlps = true;
            }
            _ => return None,
        }
    }
    let mut cols: Vec<String> = (0..n_heads).map(|h| format!("H{h}")).collect();
    if mlps {
        cols.push("MLP".into());
    } else {
        values.iter_mut().for_each(|row| {
            row.pop();
        });
    }
    Some(
        Grid::new(
            "Change in loss when each component is ablated",
            "layer",
            if mlps { "component" } else { "head" },
            (0..n_layers).map(|l| format!("L{l}")).collect(),
            cols,
            values,
        )
        .value_label("Δ loss (ablated − baseline, nats)"),
    )
}
