//! `glassbox run` — the top next tokens at each position.

use std::path::PathBuf;

use candle_core::{DType, IndexOp};

use crate::model_cli::{input_ids, load_model, token_text};

#[derive(clap::Args)]
pub struct Args {
    /// A Hub snapshot directory (config.json + weights), or another checkpoint glassbox reads.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// Text to run (tokenized with the model's tokenizer).
    #[arg(long, conflicts_with = "tokens", required_unless_present = "tokens")]
    pub prompt: Option<String>,
    /// Comma-separated token ids, instead of --prompt.
    #[arg(long)]
    pub tokens: Option<String>,
    /// How many candidates to show per position.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Show every position, not just the last.
    #[arg(long)]
    pub all_positions: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Weight dtype: f32 (default, exact), f16 or bf16 (half the memory).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

#[derive(serde::Serialize)]
struct Candidate {
    id: u32,
    token: String,
    logit: f32,
    prob: f32,
}

#[derive(serde::Serialize)]
struct Position {
    position: usize,
    token_id: u32,
    token: String,
    top: Vec<Candidate>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.top_k == 0 {
        return Err(crate::invalid!("--top-k must be at least 1"));
    }
    let model = load_model(&args.model, &args.dtype, &args.sae)?;
    crate::model_cli::require_logits(&model, &args.model, "run")?;
    let ids = input_ids(&model, args.prompt.as_deref(), args.tokens.as_deref())?;
    let input = model.ids_tensor(&ids)?;
    // Logits [positions shown, vocab]: only the last position's unless all are asked for.
    let (positions, logits): (Vec<usize>, _) = if args.all_positions {
        ((0..ids.len()).collect(), model.run(&input)?.i(0)?)
    } else {
        (vec![ids.len() - 1], model.run_last(&input)?)
    };
    let logits = logits.to_dtype(DType::F32)?;
    let mut out = Vec::new();
    for (row_index, &p) in positions.iter().enumerate() {
        let row = logits.i(row_index)?.to_vec1::<f32>()?;
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let norm: f64 = row.iter().map(|&l| ((l - max) as f64).exp()).sum();
        // The k largest, then only those sorted (a full sort of the vocabulary per position
        // cost more than the forward pass with --all-positions).
        let by_logit = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
        let mut order: Vec<usize> = (0..row.len()).collect();
        let k = args.top_k.min(order.len());
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, by_logit);
            order.truncate(k);
        }
        order.sort_by(by_logit);
        let top = order
            .iter()
            .map(|&i| Candidate {
                id: i as u32,
                token: token_text(&model, i as u32),
                logit: row[i],
                prob: (((row[i] - max) as f64).exp() / norm) as f32,
            })
            .collect();
        out.push(Position {
            position: p,
            token_id: ids[p],
            token: token_text(&model, ids[p]),
            top,
        });
    }
    if args.json {
        let doc = serde_json::json!({
            "model": args.model.display().to_string(),
            "architecture": model.info().architecture,
            "numerics": crate::model_cli::numerics_name(model.numerics),
            "input_ids": ids,
            "positions": out,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{} ({}), {} tokens{}",
        args.model.display(),
        model.info().architecture,
        ids.len(),
        match model.numerics {
            glassbox_models::Numerics::LlamaCpp => ", llama.cpp's numerics",
            glassbox_models::Numerics::F32 => "",
        }
    );
    for pos in &out {
        println!(
            "position {} {:?} (id {}) → next:",
            pos.position, pos.token, pos.token_id
        );
        for c in &pos.top {
            println!(
                "  {:>8.3}  {:>6.2}%  {:?} (id {})",
                c.logit,
                100.0 * c.prob,
                c.token,
                c.id
            );
        }
    }
    Ok(())
}
