//! `glassbox heads` — previous-token, duplicate-token, induction and first-token scores for
//! every head, from attention on repeated random token sequences.

use std::path::PathBuf;

use glassbox_analysis::heads::{self, HeadScores, ROLES};

use crate::analysis_cli::{self, OutputArgs};
use crate::render::{self, svg, terminal, Grid, Scale};

#[derive(clap::Args)]
pub struct Args {
    /// Model: a Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// Length of the random sequence (it is followed by its copy).
    #[arg(long, default_value_t = 20)]
    pub seq_len: usize,
    /// Number of random sequences averaged over.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Seed of the random tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// List the N strongest heads of each role.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn title(role: &str) -> &'static str {
    match role {
        "previous_token" => "Previous-token score (attention to q−1)",
        "duplicate_token" => "Duplicate-token score (attention to the earlier copy of the token)",
        "induction" => "Induction score (attention to the token after the earlier copy)",
        _ => "First-token score (attention to position 0: the BOS, where there is one)",
    }
}

fn grid(scores: &HeadScores, role: &str) -> Grid {
    Grid::new(
        title(role),
        "layer",
        "head",
        scores.layers.iter().map(|l| format!("L{l}")).collect(),
        (0..scores.n_heads).map(|h| format!("H{h}")).collect(),
        scores.role(role).cloned().unwrap_or_default(),
    )
    .scale(Scale::Sequential)
    .range(0.0, 1.0)
    .value_label("mean attention weight")
    .baseline(scores.chance(role), "chance")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.output
        .check(&crate::model_cli::model_inputs(&args.model, &args.sae))?;
    let model = analysis_cli::load_model(&args.model, &args.sae)?;
    let scores = heads::run(&model, args.seq_len, args.batch, args.seed)?;
    let top_n = args.top.unwrap_or(0);

    if args.output.json {
        analysis_cli::print_json(&heads::document(
            &args.model.display().to_string(),
            &scores,
            top_n,
        ))?;
    } else {
        let color = terminal::use_color();
        let after = if scores.prefix > 0 {
            format!(" after the tokenizer's {} leading token(s)", scores.prefix)
        } else {
            String::new()
        };
        println!(
            "Head scores on {} sequences of {} random tokens, each repeated once{after} (seed {})\n",
            scores.batch, scores.seq_len, args.seed
        );
        for role in ROLES {
            print!("{}", terminal::grid(&grid(&scores, role), color));
            println!();
        }
        if top_n > 0 {
            for role in ROLES {
                let ranked = scores.top(role, top_n);
                let list: Vec<String> = ranked
                    .iter()
                    .map(|r| {
                        let mark = if r.beats_chance {
                            ""
                        } else {
                            " (not clearly above chance)"
                        };
                        format!(
                            "L{}H{} {:.3} ± {:.3}{mark}",
                            r.layer, r.head, r.score, r.standard_error
                        )
                    })
                    .collect();
                let none = if ranked.iter().any(|r| r.beats_chance) {
                    ""
                } else {
                    " — no head clearly above it"
                };
                println!(
                    "strongest {:<16} {}   [chance {:.3}{none}]",
                    role,
                    list.join("  "),
                    scores.chance(role)
                );
            }
        }
    }
    for w in &scores.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(path) = &args.output.plot {
        let grids: Vec<Grid> = ROLES.iter().map(|r| grid(&scores, r)).collect();
        render::save_svg(path, &svg::heatmap_panels(&grids))?;
    }
    Ok(())
}
