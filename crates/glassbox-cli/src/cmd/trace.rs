//! `glassbox trace` — write activations at chosen hooks to a safetensors file.
//!
//! One f32 tensor per matched hook, keyed by its TransformerLens name, batch first, plus
//! `input_ids` (i64) and `logits`. Several prompts are right-padded into one batch (pad id 0)
//! and `attention_mask` (1 = token, 0 = padding) is written too. The file is written to a
//! temporary name beside the target and renamed, so a failure never leaves half a file.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Tensor};
use glassbox_models::{Hooks, NameFilter};

#[derive(clap::Args)]
pub struct Args {
    /// A Hub snapshot directory (config.json + weights), or another checkpoint glassbox reads.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// Text to run; repeat for a batch (right-padded, with an attention mask).
    #[arg(long, num_args = 1.., required_unless_present = "tokens")]
    pub prompt: Vec<String>,
    /// Comma-separated token ids instead of --prompt; repeat for a batch.
    #[arg(long, conflicts_with = "prompt")]
    pub tokens: Vec<String>,
    /// Hook names or globs, comma-separated (e.g. `blocks.*.hook_resid_post,*hook_pattern`).
    #[arg(long, required = true)]
    pub hooks: Vec<String>,
    /// Output .safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// Weight dtype: f32 (default), f16 or bf16. Activations are written as f32.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let filter = NameFilter::new(&args.hooks).map_err(|e| crate::invalid!("--hooks: {e}"))?;
    let inputs = crate::model_cli::model_inputs(&args.model, &args.sae);
    crate::output::check(&args.out, "--out", &inputs)?;
    let model = crate::model_cli::load_model(&args.model, &args.dtype, &args.sae)?;
    let sequences: Vec<Vec<u32>> = if args.tokens.is_empty() {
        args.prompt
            .iter()
            .map(|p| crate::model_cli::input_ids(&model, Some(p), None))
            .collect::<anyhow::Result<_>>()?
    } else {
        args.tokens
            .iter()
            .map(|t| crate::model_cli::parse_token_list(t))
            .collect::<anyhow::Result<_>>()?
    };
    let batch = sequences.len();
    let len = sequences.iter().map(Vec::len).max().unwrap_or(0);
    if len == 0 {
        return Err(crate::invalid!("the prompt has no tokens"));
    }
    let mut ids = Vec::with_capacity(batch * len);
    let mut mask = Vec::with_capacity(batch * len);
    for seq in &sequences {
        for p in 0..len {
            ids.push(seq.get(p).copied().unwrap_or(0));
            mask.push((p < seq.len()) as u32);
        }
    }
    let device = model.device().clone();
    let ids = Tensor::from_vec(ids, (batch, len), &device)?;
    let mask = Tensor::from_vec(mask, (batch, len), &device)?;
    let padded = sequences.iter().any(|s| s.len() < len);

    let mut hooks = Hooks::caching(filter.clone());
    let logits = if padded {
        model.run_masked(&ids, &mask, &mut hooks)?
    } else {
        model.run_with_hooks(&ids, &mut hooks)?
    };
    let cache = hooks.take_cache();

    // A pattern that matched nothing is almost surely a typo: say which names exist.
    let names: Vec<&str> = cache.names().collect();
    for pattern in filter.patterns() {
        let single =
            NameFilter::new(&[pattern.as_str()]).map_err(|e| crate::invalid!("--hooks: {e}"))?;
        if !names.iter().any(|n| single.matches(n)) && !single.matches("logits") {
            let (_, all) = model.run_with_cache(&ids.narrow(0, 0, 1)?, &NameFilter::all())?;
            let available: Vec<&str> = all.names().collect();
            return Err(crate::invalid!(
                "--hooks: `{pattern}` matches no hook of this model; hooks are: {}",
                available.join(", ")
            ));
        }
    }

    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in cache.iter() {
        tensors.insert(name.to_string(), t.to_dtype(DType::F32)?);
    }
    tensors.insert("logits".into(), logits.to_dtype(DType::F32)?);
    tensors.insert("input_ids".into(), ids.to_dtype(DType::I64)?);
    if batch > 1 || padded {
        tensors.insert("attention_mask".into(), mask.to_dtype(DType::I64)?);
    }
    crate::output::write_safetensors(&tensors, None, &args.out)?;
    eprintln!(
        "wrote {} tensors ({} hooks) for {batch} sequence(s) of up to {len} tokens to {}",
        tensors.len(),
        cache.len(),
        args.out.display()
    );
    Ok(())
}
