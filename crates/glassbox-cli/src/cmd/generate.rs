//! `glassbox generate` — sample a continuation with a KV cache, streaming tokens to stdout.

use std::io::Write;
use std::path::PathBuf;

use glassbox_models::{GenerateOptions, Hooks};

#[derive(clap::Args)]
pub struct Args {
    /// A Hub snapshot directory (config.json + weights), or another checkpoint glassbox reads.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// The text to continue.
    #[arg(long)]
    pub prompt: String,
    /// Most new tokens to generate.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 picks the most likely token (greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Sample only among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Sample only among the most likely tokens covering this probability.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Random seed, for reproducible sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep going after an end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Weight dtype: f32 (default), f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// A llama.cpp control vector added while generating, FILE or FILE:SCALE (repeatable).
    #[arg(long = "control-vector", value_name = "FILE[:SCALE]")]
    pub control_vector: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Written so that NaN is rejected too.
    let temperature_ok = args.temperature >= 0.0;
    let top_p_ok = args.top_p > 0.0 && args.top_p <= 1.0;
    if !temperature_ok || !top_p_ok {
        return Err(crate::invalid!(
            "--temperature must be ≥ 0 and --top-p in (0, 1]"
        ));
    }
    let model = crate::model_cli::load_model(&args.model, &args.dtype, &args.sae)?;
    let prompt = model.to_tokens(&args.prompt)?;
    if prompt.is_empty() {
        return Err(crate::invalid!("the prompt has no tokens"));
    }
    crate::model_cli::note_unknown(&model, &args.prompt, &prompt);
    let opts = GenerateOptions {
        max_new_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        stop_at_eos: !args.ignore_eos,
    };
    // Interventions applied at every decoding step (e.g. a control vector added to the
    // residual stream) go into these hooks.
    let mut hooks = Hooks::none();
    for spec in &args.control_vector {
        crate::analysis_cli::apply_control_vector(&mut hooks, &model, spec)?;
    }

    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{}", args.prompt)?;
    stdout.flush()?;
    // Decode prompt and continuation together each time and print what is new: the
    // continuation's first word keeps the space that joins it to the prompt (decoding it alone
    // drops it: "thefish"), and a token that splits a multi-byte character prints once the
    // character is complete.
    let base = model.decode(&prompt).unwrap_or_default();
    let continuation = |generated: &[u32]| -> Option<String> {
        let all: Vec<u32> = prompt.iter().chain(generated).copied().collect();
        let text = model.decode(&all).ok()?;
        text.strip_prefix(base.as_str())
            .map(str::to_string)
            .or_else(|| model.decode(generated).ok())
    };
    let mut generated: Vec<u32> = Vec::new();
    let mut printed = String::new();
    let mut write_err = None;
    model.generate(&prompt, &opts, &mut hooks, |token| {
        generated.push(token);
        if let Some(text) = continuation(&generated) {
            if text.len() > printed.len()
                && text.starts_with(printed.as_str())
                && !text.ends_with('\u{FFFD}')
            {
                let new = &text[printed.len()..];
                if let Err(e) = write!(stdout, "{new}").and_then(|_| stdout.flush()) {
                    write_err.get_or_insert(e);
                }
                printed = text;
            }
        }
    })?;
    if let Some(text) = continuation(&generated) {
        if text.len() > printed.len() && text.starts_with(printed.as_str()) {
            write!(stdout, "{}", &text[printed.len()..])?;
        }
    }
    writeln!(stdout)?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    let shown = continuation(&generated).unwrap_or_default();
    if let Some(note) = why_so_little(&model, &args, prompt.len(), &generated, &shown) {
        eprintln!("note: {note}");
    }
    Ok(())
}

/// Why generation printed nothing, or stopped short of `--max-tokens`, where the output alone
/// cannot tell: a steered model whose first pick is the end-of-sequence token, or whose picks
/// are special tokens (which decoding skips), prints the prompt alone and looks broken.
fn why_so_little(
    model: &glassbox_models::HookedModel,
    args: &Args,
    prompt_len: usize,
    generated: &[u32],
    shown: &str,
) -> Option<String> {
    let names = |ids: &[u32]| -> String {
        let names = model.ids_to_str_tokens(ids).unwrap_or_default();
        let mut list: Vec<String> = names.iter().take(8).map(|n| format!("`{n}`")).collect();
        if names.len() > 8 {
            list.push("…".into());
        }
        list.join(" ")
    };
    let eos = |id: &u32| !args.ignore_eos && model.eos_token_ids.contains(id);
    if let [only] = generated {
        if eos(only) {
            return Some(format!(
                "the first new token is the end-of-sequence token {} (id {only}): generation stopped there (--ignore-eos goes on past it)",
                names(generated)
            ));
        }
    }
    if !generated.is_empty() && shown.trim().is_empty() {
        return Some(format!(
            "the {} new tokens print as nothing: {} (special or blank tokens; decoding skips special ones)",
            generated.len(),
            names(generated)
        ));
    }
    let n_ctx = model.info().n_ctx;
    let stopped_short = generated.len() < args.max_tokens && !generated.last().is_some_and(eos);
    (stopped_short && prompt_len + generated.len() >= n_ctx).then(|| {
        format!(
            "stopped after {} new tokens: the model's context of {n_ctx} positions is full",
            generated.len()
        )
    })
}
