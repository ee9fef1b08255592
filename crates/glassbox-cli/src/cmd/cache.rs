//! `glassbox cache` — stream a model's activations over a corpus into an activation store
//! (sharded safetensors + manifest; see `glassbox_features::store`), resumable after a kill:
//! run the same command again and finished shards are kept (their hashes checked), the rest
//! computed.

use std::path::PathBuf;

use anyhow::Context;
use glassbox_features::store::{self, BuildOptions};

#[derive(clap::Args)]
pub struct Args {
    /// A Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// Hook names or globs, comma-separated (e.g. `blocks.*.hook_resid_post`).
    #[arg(long, required = true)]
    pub hooks: Vec<String>,
    /// Plain text, cut into rows of --context tokens.
    #[arg(long, value_name = "FILE", group = "corpus")]
    pub text: Option<PathBuf>,
    /// JSON Lines, a `text` field per line (documents joined with BOS between them).
    #[arg(long, value_name = "FILE", group = "corpus")]
    pub jsonl: Option<PathBuf>,
    /// Token rows [sequences, positions] in a safetensors file.
    #[arg(long, value_name = "F.safetensors", group = "corpus")]
    pub tokens: Option<PathBuf>,
    /// Tokens per row (from --text or --jsonl).
    #[arg(long, default_value_t = 128)]
    pub context: usize,
    /// Do not start each row with the model's BOS token.
    #[arg(long)]
    pub no_bos: bool,
    /// Rows per shard.
    #[arg(long, default_value_t = 64)]
    pub shard_rows: usize,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// The store's folder (created; an unfinished store there with the same plan is finished).
    #[arg(long)]
    pub out: PathBuf,
    /// Weight dtype: f32 (default), f16 or bf16. Activations are stored as f32.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut inputs = crate::model_cli::model_inputs(&args.model, &args.sae);
    for path in [&args.text, &args.jsonl, &args.tokens] {
        inputs.extend(path.as_deref());
    }
    crate::output::not_an_input(&args.out, "--out", &inputs)?;
    if args.out.exists() && !args.out.is_dir() {
        return Err(crate::invalid!(
            "--out {}: not a folder",
            args.out.display()
        ));
    }
    if args.shard_rows == 0 || args.batch_size == 0 {
        return Err(crate::invalid!(
            "--shard-rows and --batch-size must be at least 1"
        ));
    }
    let model = crate::model_cli::load_model(&args.model, &args.dtype, &args.sae)?;
    let context = crate::model_cli::context_within(&model, args.context, "--context");
    let rows = match (&args.text, &args.jsonl, &args.tokens) {
        (Some(p), _, _) => glassbox_features::corpus::text_rows(&model, p, context, !args.no_bos)?,
        (_, Some(p), _) => glassbox_features::corpus::jsonl_rows(&model, p, context, !args.no_bos)?,
        (_, _, Some(p)) => {
            glassbox_features::corpus::token_file_rows(p, model.info().d_vocab, model.info().n_ctx)?
        }
        _ => return Err(crate::invalid!("give --text, --jsonl or --tokens")),
    };
    let opts = BuildOptions {
        hook_patterns: args.hooks.clone(),
        batch_size: args.batch_size,
        rows_per_shard: args.shard_rows,
        model_label: args.model.display().to_string(),
    };
    let bar = crate::progress::bar(0, "shards");
    let report = store::build(&model, &rows, &args.out, &opts, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("building the activation store in {}", args.out.display()))?;
    bar.finish_and_clear();
    let plan = &report.manifest.plan;
    eprintln!(
        "{}: {} rows × {} tokens at {} hook{} in {} shard{} ({} kept from an earlier run, {} computed)",
        args.out.display(),
        plan.rows,
        plan.context,
        plan.hooks.len(),
        if plan.hooks.len() == 1 { "" } else { "s" },
        report.manifest.shards.len(),
        if report.manifest.shards.len() == 1 { "" } else { "s" },
        report.kept,
        report.computed
    );
    Ok(())
}
