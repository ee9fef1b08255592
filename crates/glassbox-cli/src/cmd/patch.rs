//! `glassbox patch` — activation patching (and attribution patching) between a clean and a
//! corrupted prompt of the same token length, as a grid of the normalised logit difference.

use std::path::PathBuf;

use glassbox_analysis::patching::{self, patch_document, PatchReport, PatchResult, PatchTarget};

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
    args.output
        .check(&crate::model_cli::model_inputs(&args.model, &args.sae))?;
    let what = PatchTarget::parse(&args.what).ok_or_else(|| {
        crate::invalid!(
            "--what {}: expected resid_pre, attn_out, mlp_out or heads",
            args.what
        )
    })?;
    let methods = patching::Methods::parse(&args.method).ok_or_else(|| {
        crate::invalid!(
            "--method {}: expected activation, attribution or both",
            args.method
        )
    })?;
    let model = analysis_cli::load_model(&args.model, &args.sae)?;
    crate::model_cli::require_logits(&model, &args.model, "patch")?;
    let info = model.info();
    let sites = if methods == patching::Methods::Attribution {
        0
    } else {
        let tokens = model.to_tokens(&args.clean)?.len();
        PatchReport::sites(&model, what, tokens)
    };
    let bar = crate::progress::bar(sites as u64, "patching");
    let report = patching::patch_prompts(
        &model,
        &args.clean,
        &args.corrupt,
        &args.answer,
        &args.wrong,
        what,
        methods,
        || {
            bar.inc(1);
            std::ops::ControlFlow::Continue(())
        },
    )?;
    bar.finish_and_clear();
    let results = &report.results;
    let (clean, corrupt) = (&report.clean_ids, &report.corrupt_ids);

    // The setup is the same for every method: the two runs and their gap.
    let setup = &results[0].setup;
    let metric = format!(
        "logit[{}] − logit[{}] at the last position",
        report.answer_token, report.wrong_token
    );
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

    let clean_tokens = model.ids_to_str_tokens(clean)?;
    let corrupt_tokens = model.ids_to_str_tokens(corrupt)?;
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
        analysis_cli::print_json(&patch_document(
            &args.model.display().to_string(),
            &args.clean,
            &args.corrupt,
            &report,
        )?)?;
    } else {
        let color = terminal::use_color();
        for r in results {
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
