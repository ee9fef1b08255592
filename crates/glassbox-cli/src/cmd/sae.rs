//! `glassbox sae` — sparse autoencoders in SAELens's format.
//!
//! `glassbox sae eval MODEL --sae DIR (--text FILE | --tokens F.safetensors)`: SAELens's
//! evaluation metrics, under its names (`--json`: the fields of
//! `glassbox_features::eval::SaeMetrics`, `feature_density` included).

use std::path::PathBuf;

use anyhow::Context;
use glassbox_features::eval::{self, EvalOptions, SaeMetrics};
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// SAELens's metrics of an SAE on a model: sparsity, reconstruction, and what splicing it
    /// in does to the model's predictions.
    Eval(EvalArgs),
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
    /// The SAE: a SAELens folder (cfg.json + sae_weights.safetensors) or a sparsify hook folder.
    #[arg(long, value_name = "DIR")]
    pub sae: PathBuf,
    /// Text to evaluate on, cut into rows of --context tokens.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "tokens",
        required_unless_present = "tokens"
    )]
    pub text: Option<PathBuf>,
    /// Token rows [sequences, positions] in a safetensors file (tensor `tokens` or the only one).
    #[arg(long, value_name = "F.safetensors")]
    pub tokens: Option<PathBuf>,
    /// Tokens per row from --text (default: the SAE's training context, else 128).
    #[arg(long)]
    pub context: Option<usize>,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Keep positions holding special tokens (BOS, EOS, padding), which SAELens leaves out
    /// by default.
    #[arg(long)]
    pub keep_special_tokens: bool,
    /// Print the metrics as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Eval(a) => run_eval(a),
    }
}

fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        return Err(crate::invalid!("--batch-size must be at least 1"));
    }
    let model = crate::model_cli::load_plain_model(&args.model, "f32")?;
    crate::model_cli::require_logits(&model, &args.model, "sae eval")?;
    let sae = crate::model_cli::load_saes(&crate::model_cli::SaeArgs {
        saes: vec![args.sae.clone()],
        sae_error_term: false,
    })?
    .remove(0);
    let tokens = match (&args.text, &args.tokens) {
        (_, Some(path)) => glassbox_features::corpus::token_file_rows(path, model.info().d_vocab)?,
        (Some(path), None) => {
            let trained = sae.cfg.metadata.get("context_size").and_then(Value::as_u64);
            let context = args
                .context
                .or(trained.map(|c| c as usize))
                .unwrap_or(128)
                .min(model.info().n_ctx);
            let prepend_bos = sae
                .cfg
                .metadata
                .get("prepend_bos")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            glassbox_features::corpus::text_rows(&model, path, context, prepend_bos)?
        }
        (None, None) => return Err(crate::invalid!("give --text or --tokens")),
    };
    let opts = EvalOptions {
        batch_size: args.batch_size,
        ignore_tokens: if args.keep_special_tokens {
            Vec::new()
        } else {
            eval::special_tokens(&model)
        },
    };
    let metrics = eval::evaluate(&model, &sae, &tokens, &opts)
        .with_context(|| format!("evaluating {}", args.sae.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        print_metrics(&metrics, &sae);
    }
    Ok(())
}

fn print_metrics(m: &SaeMetrics, sae: &glassbox_features::Sae) {
    println!(
        "SAE {} at {} ({}, d_sae {}), {} tokens in {} sequences",
        sae.source.display(),
        m.hook_name,
        sae.cfg.architecture(),
        sae.cfg.d_sae,
        m.tokens,
        m.sequences
    );
    let groups: [(&str, &[(&str, f64)]); 5] = [
        ("sparsity", &[("l0", m.l0), ("l1", m.l1)]),
        (
            "reconstruction_quality",
            &[
                ("explained_variance", m.explained_variance),
                ("explained_variance_legacy", m.explained_variance_legacy),
                ("mse", m.mse),
                ("cossim", m.cossim),
            ],
        ),
        (
            "shrinkage",
            &[
                ("l2_norm_in", m.l2_norm_in),
                ("l2_norm_out", m.l2_norm_out),
                ("l2_ratio", m.l2_ratio),
                (
                    "relative_reconstruction_bias",
                    m.relative_reconstruction_bias,
                ),
            ],
        ),
        (
            "model_performance_preservation",
            &[
                ("ce_loss_without_sae", m.ce_loss_without_sae),
                ("ce_loss_with_sae", m.ce_loss_with_sae),
                ("ce_loss_with_ablation", m.ce_loss_with_ablation),
                ("ce_loss_score", m.ce_loss_score),
            ],
        ),
        (
            "model_behavior_preservation",
            &[
                ("kl_div_with_sae", m.kl_div_with_sae),
                ("kl_div_with_ablation", m.kl_div_with_ablation),
                ("kl_div_score", m.kl_div_score),
            ],
        ),
    ];
    for (group, rows) in groups {
        println!("\n{group}");
        for (name, v) in rows {
            println!("  {name:<30} {v:>12.5}");
        }
    }
    println!("\nfeatures");
    println!("  {:<30} {:>12}", "dead (never fired)", m.dead_features);
    println!(
        "  {:<30} {:>12}",
        format!("dense (> {:.0}% of tokens)", m.dense_density * 100.0),
        m.dense_features
    );
}
