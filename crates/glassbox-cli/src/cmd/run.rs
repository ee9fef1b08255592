//! `glassbox run` — the top next tokens at each position.
//!
//! Also home of the helpers the forward-pass commands share: loading a model with a
//! `--dtype`, and turning `--prompt` / `--tokens` into token ids.

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{DType, IndexOp};
use glassbox_models::{HookedModel, LoadOptions};

#[derive(clap::Args)]
pub struct Args {
    /// A Hub snapshot directory (config.json + weights), or another checkpoint glassbox reads.
    pub model: PathBuf,
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

/// Parses `--dtype`.
pub(crate) fn parse_dtype(s: &str) -> anyhow::Result<DType> {
    match s {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(crate::invalid!(
            "unknown --dtype `{other}` (expected f32, f16 or bf16)"
        )),
    }
}

/// Loads a model for a forward-pass command.
pub(crate) fn load_model(path: &Path, dtype: &str) -> anyhow::Result<HookedModel> {
    if !path.exists() {
        return Err(crate::invalid!(
            "{}: no such file or directory",
            path.display()
        ));
    }
    let opts = LoadOptions {
        dtype: parse_dtype(dtype)?,
        ..LoadOptions::default()
    };
    HookedModel::load(path, &opts).with_context(|| format!("loading {}", path.display()))
}

/// Parses `--tokens 1,2,3`.
pub(crate) fn parse_token_list(s: &str) -> anyhow::Result<Vec<u32>> {
    let ids: Vec<u32> = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| crate::invalid!("--tokens: `{t}` is not a token id"))
        })
        .collect::<anyhow::Result<_>>()?;
    if ids.is_empty() {
        return Err(crate::invalid!("--tokens is empty"));
    }
    Ok(ids)
}

/// Token ids from `--prompt` or `--tokens`.
pub(crate) fn input_ids(
    model: &HookedModel,
    prompt: Option<&str>,
    tokens: Option<&str>,
) -> anyhow::Result<Vec<u32>> {
    let ids = match (prompt, tokens) {
        (_, Some(t)) => parse_token_list(t)?,
        (Some(p), None) => model.to_tokens(p)?,
        (None, None) => return Err(crate::invalid!("give --prompt or --tokens")),
    };
    if ids.is_empty() {
        return Err(crate::invalid!("the prompt has no tokens"));
    }
    Ok(ids)
}

/// A token for display: its decoded text if there is a tokenizer, else `#id`.
pub(crate) fn token_text(model: &HookedModel, id: u32) -> String {
    match model.ids_to_str_tokens(&[id]) {
        Ok(mut v) if !v.is_empty() => v.remove(0),
        _ => format!("#{id}"),
    }
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
    let model = load_model(&args.model, &args.dtype)?;
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
            "input_ids": ids,
            "positions": out,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{} ({}), {} tokens",
        args.model.display(),
        model.info().architecture,
        ids.len()
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
