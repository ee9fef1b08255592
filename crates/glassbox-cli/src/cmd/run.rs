//! `glassbox run` — the top next tokens at each position.

use std::path::PathBuf;

use glassbox_analysis::predictions;

use crate::model_cli::{input_ids, load_model};

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

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.top_k == 0 {
        return Err(crate::invalid!("--top-k must be at least 1"));
    }
    let model = load_model(&args.model, &args.dtype, &args.sae)?;
    crate::model_cli::require_logits(&model, &args.model, "run")?;
    let ids = input_ids(&model, args.prompt.as_deref(), args.tokens.as_deref())?;
    let out = predictions::top_next(&model, &ids, args.top_k, args.all_positions)?;
    if args.json {
        let doc = predictions::document(&model, &args.model.display().to_string(), &ids, &out);
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{} ({}), {} tokens{}",
        args.model.display(),
        model.info().architecture,
        ids.len(),
        match (model.numerics, model.kv_cache) {
            (glassbox_models::Numerics::LlamaCpp, glassbox_models::KvCacheType::F16) => {
                ", llama.cpp's numerics (F16 KV cache)"
            }
            (glassbox_models::Numerics::LlamaCpp, _) => ", llama.cpp's numerics (F32 KV cache)",
            (_, glassbox_models::KvCacheType::F16) => ", F16 KV cache",
            _ => "",
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
