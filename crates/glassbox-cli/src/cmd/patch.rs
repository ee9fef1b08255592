//! `glassbox patch` — activation patching (and attribution patching) between a clean and a
//! corrupted prompt of the same token length, as a grid of the normalised logit difference.

use std::path::PathBuf;

use glassbox_analysis::patching::{self, PatchResult, PatchTarget};
use serde_json::json;

use crate::analysis_cli::{self, OutputArgs};
use crate::render::{self, svg, terminal, Grid};

#[derive(clap::Args)]
pub struct Args {
    /// Model: a Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// The clean prompt.
    #[arg(long)]
    pub clean: String,
    /// The corrupted prompt (same number of tokens).
    #[arg(long)]
    pub corrupt: String,
    /// The answer the clean prompt supports (one token).
    #[arg(long)]
    pub answer: String,
    /// The answer the corrupted prompt supports (one token).
    #[arg(long)]
    pub wrong: String,
    /// What to patch: resid_pre, attn_out, mlp_out (per layer and position) or heads (per
    /// layer and head, every position).
    #[arg(long, default_value = "resid_pre")]
    pub what: String,
    /// activation (rerun per site), attribution (one backward pass) or both.
    #[arg(long, default_value = "activation")]
    pub method: String,
    /// Refuse (exit 2) instead of warning when the setup cannot support a result: a
    /// clean−corrupted gap that is tiny next to the logits' spread, or of the wrong sign.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.output.check()?;
    let what = PatchTarget::parse(&args.what).ok_or_else(|| {
        crate::invalid!(
            "--what {}: expected resid_pre, attn_out, mlp_out or heads",
            args.what
        )
    })?;
    let (activation, attribution) = match args.method.as_str() {
        "activation" => (true, false),
        "attribution" => (false, true),
        "both" => (true, true),
        m => {
            return Err(crate::invalid!(
                "--method {m}: expected activation, attribution or both"
            ))
        }
    };
    let model = analysis_cli::load_model(&args.model, &args.sae)?;
    crate::model_cli::require_logits(&model, &args.model, "patch")?;
    let clean = analysis_cli::tokens(&model, &args.clean)?;
    let corrupt = analysis_cli::tokens(&model, &args.corrupt)?;
    if clean.len() != corrupt.len() {
        return Err(crate::invalid!(
            "--clean is {} tokens and --corrupt is {}: patching needs prompts of equal token length",
            clean.len(),
            corrupt.len()
        ));
    }
    let answer = analysis_cli::single_token(&model, &args.answer, "--answer")?;
    let wrong = analysis_cli::single_token(&model, &args.wrong, "--wrong")?;
    let info = model.info();

    let mut results = Vec::new();
    if activation {
        let per_layer = match what {
            PatchTarget::Heads => info.n_heads,
            _ => clean.len(),
        };
        let bar = crate::progress::bar((per_layer * info.n_layers) as u64, "patching");
        results.push(patching::activation_patching(
            &model,
            &clean,
            &corrupt,
            answer,
            wrong,
            what,
            || bar.inc(1),
        )?);
        bar.finish_and_clear();
    }
    if attribution {
        results.push(patching::attribution_patching(
            &model, &clean, &corrupt, answer, wrong, what,
        )?);
    }

    // The setup is the same for every method: the two runs and their gap.
    let setup = &results[0].setup;
    let answer_text = analysis_cli::describe_token(&model, answer);
    let wrong_text = analysis_cli::describe_token(&model, wrong);
    let metric = format!("logit[{answer_text}] − logit[{wrong_text}] at the last position");
    let runs = format!(
        "clean run {:.4}, corrupted run {:.4}, gap {:.4} (logits' spread {:.3})",
        results[0].clean_metric, results[0].corrupt_metric, setup.gap, setup.logit_scale
    );
    if args.strict && !setup.warnings.is_empty() {
        return Err(crate::invalid!("--strict: {}", setup.warnings.join("; ")));
    }
    for w in &setup.warnings {
        eprintln!("warning: {w}");
    }
    let mut notes = vec![format!("metric: {metric}"), runs.clone()];
    notes.extend(setup.warnings.iter().map(|w| format!("⚠ {w}")));

    let clean_tokens = model.ids_to_str_tokens(&clean)?;
    let corrupt_tokens = model.ids_to_str_tokens(&corrupt)?;
    let cols: Vec<String> = match what {
        PatchTarget::Heads => (0..info.n_heads).map(|h| format!("H{h}")).collect(),
        _ => clean_tokens
            .iter()
            .zip(&corrupt_tokens)
            .enumerate()
            .map(|(i, (c, r))| {
                if c == r {
                    format!("{i}:{}", render::token_label(c))
                } else {
                    format!("{i}:{}/{}", render::token_label(c), render::token_label(r))
                }
            })
            .collect(),
    };
    // one colour scale for every grid, so activation and attribution patching compare
    let extent = results
        .iter()
        .flat_map(|r| r.normalized.iter().flatten())
        .filter(|v| v.is_finite())
        .fold(1f32, |m, v| m.max(v.abs()));
    let extent = args.output.range.unwrap_or(extent);
    let grid_of = |r: &PatchResult| -> Grid {
        Grid::new(
            format!(
                "{} patching of {} (clean → corrupted): normalised logit difference",
                r.method,
                what.name()
            ),
            "layer",
            if what == PatchTarget::Heads {
                "head"
            } else {
                "position"
            },
            (0..info.n_layers).map(|l| format!("L{l}")).collect(),
            cols.clone(),
            r.normalized.clone(),
        )
        .range(-extent, extent)
        .value_label("0 = corrupted, 1 = clean")
        .notes(notes.clone())
    };

    if args.output.json {
        analysis_cli::print_json(&json!({
            "model": args.model,
            "clean": args.clean,
            "corrupt": args.corrupt,
            "clean_ids": clean,
            "corrupt_ids": corrupt,
            "answer": answer,
            "wrong": wrong,
            "metric": "logit[answer] - logit[wrong] at the last position",
            "answer_token": answer_text,
            "wrong_token": wrong_text,
            "gap": setup.gap,
            "warnings": setup.warnings,
            "results": results,
        }))?;
    } else {
        let color = terminal::use_color();
        for r in &results {
            print!("{}", terminal::grid(&grid_of(r), color));
            println!();
        }
    }
    if let Some(path) = &args.output.plot {
        let grids: Vec<Grid> = results.iter().map(grid_of).collect();
        let svg = if grids.len() == 1 {
            svg::heatmap(&grids[0])
        } else {
            svg::heatmap_panels(&grids)
        };
        render::save_svg(path, &svg)?;
    }
    Ok(())
}
