//! What every command that opens a model shares: loading it (the path checked, `--dtype`,
//! the loader's warnings shown) and turning `--prompt` / `--tokens` into token ids.

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::DType;
use glassbox_models::{HookedModel, KvCacheType, LoadOptions, Numerics};

/// `--numerics`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumericsChoice {
    Llamacpp,
    F32,
}

static NUMERICS: std::sync::OnceLock<Option<NumericsChoice>> = std::sync::OnceLock::new();

/// Records the `--numerics` choice, once, at start-up.
pub fn set_numerics(choice: Option<NumericsChoice>) {
    let _ = NUMERICS.set(choice);
}

/// The `--numerics` choice, if one was given.
pub fn numerics() -> Option<Numerics> {
    NUMERICS.get().copied().flatten().map(|c| match c {
        NumericsChoice::Llamacpp => Numerics::LlamaCpp,
        NumericsChoice::F32 => Numerics::F32,
    })
}

/// `--kv-cache`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvCacheChoice {
    F16,
    F32,
}

static KV_CACHE: std::sync::OnceLock<Option<KvCacheChoice>> = std::sync::OnceLock::new();

/// Records the `--kv-cache` choice, once, at start-up.
pub fn set_kv_cache(choice: Option<KvCacheChoice>) {
    let _ = KV_CACHE.set(choice);
}

/// The `--kv-cache` choice, if one was given.
pub fn kv_cache() -> Option<KvCacheType> {
    KV_CACHE.get().copied().flatten().map(|c| match c {
        KvCacheChoice::F16 => KvCacheType::F16,
        KvCacheChoice::F32 => KvCacheType::F32,
    })
}

static ADAPTER: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Records the `--adapter` folder, once, at start-up.
pub fn set_adapter(dir: Option<PathBuf>) {
    let _ = ADAPTER.set(dir);
}

/// The `--adapter` folder, if given.
pub fn adapter_dir() -> Option<&'static Path> {
    ADAPTER.get().and_then(|d| d.as_deref())
}

/// What a command that loads `model` with the SAEs `saes` (and the `--adapter`, if given)
/// reads: its outputs must not be written over them ([`crate::output::check`]).
pub fn model_inputs<'a>(model: &'a Path, saes: &'a SaeArgs) -> Vec<&'a Path> {
    let mut inputs = vec![model];
    inputs.extend(saes.saes.iter().map(PathBuf::as_path));
    inputs.extend(adapter_dir());
    inputs
}

/// Reads the `--adapter` folder (PEFT's format).
pub fn load_adapter(dir: &Path) -> anyhow::Result<glassbox_formats::peft::LoraAdapter> {
    if !dir.is_dir() {
        return Err(crate::invalid!(
            "--adapter {}: no such folder",
            dir.display()
        ));
    }
    glassbox_formats::peft::LoraAdapter::open(dir)
        .with_context(|| format!("reading the adapter {}", dir.display()))
}

/// Parses `--dtype`.
pub fn parse_dtype(s: &str) -> anyhow::Result<DType> {
    match s {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(crate::invalid!(
            "unknown --dtype `{other}` (expected f32, f16 or bf16)"
        )),
    }
}

/// Sparse autoencoders to splice into the forward pass (every command that runs a model).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SaeArgs {
    /// Splice in a sparse autoencoder at its hook: a folder as SAELens saves one (cfg.json +
    /// sae_weights.safetensors) or one hook point's folder of EleutherAI sparsify. Repeat for
    /// several. Its points are `{hook}.hook_sae_input`, `.hook_sae_acts_pre`,
    /// `.hook_sae_acts_post`, `.hook_sae_recons`, `.hook_sae_error`, `.hook_sae_output`.
    #[arg(long = "sae", value_name = "DIR")]
    pub saes: Vec<PathBuf>,
    /// Add each SAE's reconstruction error back, so that the model's outputs are unchanged
    /// and edits inside the SAE show their own effect (SAELens's `use_error_term`).
    #[arg(long, requires = "saes")]
    pub sae_error_term: bool,
}

/// Loads the SAEs `args` names.
pub fn load_saes(args: &SaeArgs) -> anyhow::Result<Vec<glassbox_features::Sae>> {
    args.saes
        .iter()
        .map(|dir| {
            if !glassbox_formats::input::present(dir)? {
                return Err(crate::invalid!("{}: no such SAE folder", dir.display()));
            }
            let sae = glassbox_features::Sae::load(dir)
                .with_context(|| format!("loading the SAE {}", dir.display()))?;
            // Loaded as given (a broken SAE is worth looking at), but said: its every number
            // downstream is NaN.
            for (name, t) in [("W_enc", &sae.w_enc), ("b_enc", &sae.b_enc), ("W_dec", &sae.w_dec), ("b_dec", &sae.b_dec)] {
                if !glassbox_models::ops::all_finite(t)? {
                    eprintln!("warning: {}: the SAE's {name} holds values that are not finite; what it computes is not either", dir.display());
                }
            }
            Ok(sae)
        })
        .collect()
}

/// Loads one SAE folder (the `--sae` of `sae eval` and `features`).
pub fn load_sae(dir: &Path) -> anyhow::Result<glassbox_features::Sae> {
    let mut v = load_saes(&SaeArgs {
        saes: vec![dir.to_path_buf()],
        sae_error_term: false,
    })?;
    Ok(v.remove(0))
}

/// Loads a model for a forward-pass command, with the SAEs `saes` names spliced in.
pub fn load_model(path: &Path, dtype: &str, saes: &SaeArgs) -> anyhow::Result<HookedModel> {
    let model = load_plain_model(path, dtype)?;
    if saes.saes.is_empty() {
        return Ok(model);
    }
    let loaded = load_saes(saes)?;
    let opts = glassbox_features::SpliceOptions {
        error_term: saes.sae_error_term,
    };
    Ok(glassbox_features::splice(model, loaded, opts)?)
}

/// Loads a model with nothing spliced in (the `--adapter` applied, if given).
pub fn load_plain_model(path: &Path, dtype: &str) -> anyhow::Result<HookedModel> {
    load_model_with_adapter(path, dtype, adapter_dir())
}

/// Loads a model with `adapter` (a PEFT folder) applied, unmerged.
pub fn load_model_with_adapter(
    path: &Path,
    dtype: &str,
    adapter: Option<&Path>,
) -> anyhow::Result<HookedModel> {
    glassbox_formats::input::existing(path)?;
    let lora = match adapter {
        Some(dir) => Some(glassbox_models::lora::LoraSource::Apply(
            std::sync::Arc::new(load_adapter(dir)?),
        )),
        None => None,
    };
    let opts = LoadOptions {
        dtype: parse_dtype(dtype)?,
        numerics: numerics(),
        kv_cache: kv_cache(),
        lora,
        ..LoadOptions::default()
    };
    let model =
        HookedModel::load(path, &opts).with_context(|| format!("loading {}", path.display()))?;
    for warning in &model.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(model)
}

/// Rows of `asked` tokens (given as `flag`), at most the model's positions; a cut is said.
pub fn context_within(model: &HookedModel, asked: usize, flag: &str) -> usize {
    let n_ctx = model.info().n_ctx;
    if asked > n_ctx {
        eprintln!("note: {flag} {asked}: the model has {n_ctx} positions; rows of {n_ctx} tokens");
    }
    asked.min(n_ctx)
}

/// Parses `--tokens 1,2,3`.
pub fn parse_token_list(s: &str) -> anyhow::Result<Vec<u32>> {
    // A trailing comma is tolerated; an empty item between two ids is a typo, not skipped.
    let s = s.trim().trim_end_matches(',');
    let ids: Vec<u32> = s
        .split(',')
        .map(str::trim)
        .filter(|t| !(t.is_empty() && s.is_empty()))
        .map(|t| match t {
            "" => Err(crate::invalid!(
                "--tokens: an empty item (two commas in a row)"
            )),
            t => t
                .parse::<u32>()
                .map_err(|_| crate::invalid!("--tokens: `{t}` is not a token id")),
        })
        .collect::<anyhow::Result<_>>()?;
    if ids.is_empty() {
        return Err(crate::invalid!("--tokens is empty"));
    }
    Ok(ids)
}

/// Says on stderr when a text holds tokens the tokenizer could not represent: the model then
/// reads one placeholder (`<unk>`) where the text had words, which no figure shows; and when
/// the text gives no tokens beyond the tokenizer's BOS.
pub fn note_unknown(model: &HookedModel, text: &str, ids: &[u32]) {
    // a text the tokenizer makes nothing of (spaces, for a vocabulary that drops them)
    if !ids.is_empty() && model.text_prefix().is_ok_and(|p| p.as_slice() == ids) {
        eprintln!(
            "note: {text:?} has no tokens of its own: the model reads only the tokenizer's {}",
            model
                .ids_to_str_tokens(ids)
                .map(|t| t.concat())
                .unwrap_or_else(|_| "start token".into())
        );
    }
    if let Some((at, unk)) = model.unknown_tokens(ids).filter(|(at, _)| !at.is_empty()) {
        let shown: String = text.chars().take(60).collect();
        let cut = if shown.len() < text.len() { "…" } else { "" };
        eprintln!(
            "note: {} token{} of {shown:?}{cut} {} the tokenizer's unknown token {unk:?} (position{} {}): the model reads that placeholder where the text has something its vocabulary lacks",
            at.len(),
            if at.len() == 1 { "" } else { "s" },
            if at.len() == 1 { "is" } else { "are" },
            if at.len() == 1 { "" } else { "s" },
            at.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
        );
    }
}

/// Token ids from `--prompt` or `--tokens`.
pub fn input_ids(
    model: &HookedModel,
    prompt: Option<&str>,
    tokens: Option<&str>,
) -> anyhow::Result<Vec<u32>> {
    let ids = match (prompt, tokens) {
        (_, Some(t)) => parse_token_list(t)?,
        (Some(p), None) => {
            let ids = model.to_tokens(p)?;
            note_unknown(model, p, &ids);
            ids
        }
        (None, None) => return Err(crate::invalid!("give --prompt or --tokens")),
    };
    if ids.is_empty() {
        return Err(crate::invalid!("the prompt has no tokens"));
    }
    // Learned positions end at the context (refused by the model); rotary ones extrapolate,
    // as transformers lets them, with a warning.
    let info = model.info();
    if ids.len() > info.n_ctx && !info.learned_positions {
        eprintln!(
            "warning: {} tokens is more than the {} positions {} was trained on; what it computes past them is extrapolation",
            ids.len(),
            info.n_ctx,
            info.architecture
        );
    }
    Ok(ids)
}

/// A token for display: its decoded text if there is a tokenizer, else `#id`.
pub fn token_text(model: &HookedModel, id: u32) -> String {
    glassbox_analysis::predictions::token_text(model, id)
}

/// Refuses a model whose outputs are not token logits (an encoder without a language-model
/// head returns hidden states, which `what` would misread as logits).
pub fn require_logits(model: &HookedModel, path: &Path, what: &str) -> anyhow::Result<()> {
    if model.model.has_unembedding() {
        return Ok(());
    }
    Err(crate::invalid!(
        "{}: {} has no unembedding (no language-model head), so `{what}` has no logits to show; `glassbox trace` records its hidden states",
        path.display(),
        model.info().architecture
    ))
}
