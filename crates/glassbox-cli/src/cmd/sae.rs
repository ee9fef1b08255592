//! `glassbox sae` — sparse autoencoders in SAELens's format.
//!
//! `glassbox sae eval MODEL --sae DIR (--text FILE | --tokens F.safetensors)`: SAELens's
//! evaluation metrics, under its names (`--json`: the fields of
//! `glassbox_features::eval::SaeMetrics`, `feature_density` included).
//!
//! `glassbox sae train MODEL --hook NAME --arch standard|topk|batchtopk|jumprelu --d-sae N
//! (--cache DIR | --text FILE) --out DIR`: SAELens's training (hyperparameters under SAELens's
//! names); OUT holds what SAELens's runner writes (cfg.json, sae_weights.safetensors,
//! sparsity.safetensors), `training_log.jsonl` (one line per step: loss, mse_loss, aux_loss,
//! l0, explained_variance, dead_features, lr) and `checkpoints/step-N/` with
//! `--n-checkpoints`. With --text the activations are cached first in OUT/activations.

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
    /// Train an SAE on a hook's activations, as SAELens trains it.
    Train(Box<TrainArgs>),
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// A Hub snapshot directory or a GGUF file (the model the activations come from).
    pub model: PathBuf,
    /// The hook the SAE reads (e.g. `blocks.6.hook_resid_post`).
    #[arg(long)]
    pub hook: String,
    #[arg(long, value_enum)]
    pub arch: TrainArchName,
    /// Features.
    #[arg(long)]
    pub d_sae: usize,
    /// An activation store made by `glassbox cache` holding the hook.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "text",
        required_unless_present = "text"
    )]
    pub cache: Option<PathBuf>,
    /// Text to cache activations from first (into OUT/activations).
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// TopK / BatchTopK: features per token.
    #[arg(long, default_value_t = 100)]
    pub k: usize,
    /// Standard: the L1 penalty's coefficient, its warm-up and norm.
    #[arg(long, default_value_t = 1.0)]
    pub l1_coefficient: f64,
    #[arg(long, default_value_t = 0)]
    pub l1_warm_up_steps: usize,
    #[arg(long, default_value_t = 1.0)]
    pub lp_norm: f64,
    /// TopK / BatchTopK: the AuxK loss's coefficient.
    #[arg(long, default_value_t = 1.0)]
    pub aux_loss_coefficient: f64,
    /// TopK / BatchTopK: select on activations scaled by the decoder norms.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub rescale_acts_by_decoder_norm: bool,
    /// BatchTopK: the rate of the threshold's running average.
    #[arg(long, default_value_t = 0.01)]
    pub topk_threshold_lr: f64,
    /// JumpReLU: the threshold's start, the straight-through kernel's width, the L0 penalty's
    /// coefficient and warm-up (sparsity loss mode `step`).
    #[arg(long, default_value_t = 0.01)]
    pub jumprelu_init_threshold: f64,
    #[arg(long, default_value_t = 0.05)]
    pub jumprelu_bandwidth: f64,
    #[arg(long, default_value_t = 1.0)]
    pub l0_coefficient: f64,
    #[arg(long, default_value_t = 0)]
    pub l0_warm_up_steps: usize,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub apply_b_dec_to_input: bool,
    #[arg(long, default_value_t = 0.1)]
    pub decoder_init_norm: f64,
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    #[arg(long)]
    pub lr_end: Option<f64>,
    #[arg(long, value_enum, default_value = "constant")]
    pub lr_scheduler_name: SchedulerName,
    #[arg(long, default_value_t = 0)]
    pub lr_warm_up_steps: usize,
    #[arg(long, default_value_t = 0)]
    pub lr_decay_steps: usize,
    #[arg(long, default_value_t = 0.9)]
    pub adam_beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub adam_beta2: f64,
    #[arg(long, default_value_t = 4096)]
    pub train_batch_size_tokens: usize,
    #[arg(long, default_value_t = 2_000_000)]
    pub training_tokens: usize,
    #[arg(long, default_value_t = 1000)]
    pub dead_feature_window: usize,
    #[arg(long, default_value_t = 2000)]
    pub feature_sampling_window: usize,
    /// The mixing buffer holds this many batches of --context-size rows.
    #[arg(long, default_value_t = 64)]
    pub n_batches_in_buffer: usize,
    /// Tokens per row when caching from --text.
    #[arg(long, default_value_t = 128)]
    pub context_size: usize,
    /// Leave out activations at special tokens (BOS, EOS, padding).
    #[arg(long)]
    pub exclude_special_tokens: bool,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// `expected_average_only_in`: scale activations to norm √d_in on average while training
    /// (the scale is folded into the saved weights, whose cfg then says `none`, as SAELens's).
    #[arg(long, value_enum, default_value = "none")]
    pub normalize_activations: NormalizeName,
    #[arg(long, default_value_t = 1000)]
    pub n_batches_for_norm_estimate: usize,
    /// Save this many evenly spaced checkpoints (inference SAEs) in OUT/checkpoints.
    #[arg(long, default_value_t = 0)]
    pub n_checkpoints: usize,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum TrainArchName {
    Standard,
    Topk,
    Batchtopk,
    Jumprelu,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum NormalizeName {
    None,
    ExpectedAverageOnlyIn,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SchedulerName {
    Constant,
    Cosineannealing,
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
        Command::Train(a) => run_train(*a),
    }
}

fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        return Err(crate::invalid!("--batch-size must be at least 1"));
    }
    let model = crate::model_cli::load_plain_model(&args.model, "f32")?;
    crate::model_cli::require_logits(&model, &args.model, "sae eval")?;
    let sae = crate::model_cli::load_sae(&args.sae)?;
    let tokens = glassbox_features::corpus::rows_for_sae(
        &model,
        &sae,
        args.text.as_deref(),
        args.tokens.as_deref(),
        args.context
            .map(|c| crate::model_cli::context_within(&model, c, "--context")),
    )?;
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
    for w in &m.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "  {:<30} {:>12}",
        format!("dense (> {:.0}% of tokens)", m.dense_density * 100.0),
        m.dense_features
    );
}

fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    use glassbox_features::store::{self, ActivationStore, BuildOptions};
    use glassbox_features::train::{self, LrScheduler, TrainArch, TrainOptions};
    // Everything below writes into --out; a failure takes it back out.
    // Checked before any work (a count past the steps was a list as long as the count).
    let steps = args.training_tokens / args.train_batch_size_tokens.max(1);
    if args.n_checkpoints >= steps.max(1) {
        return Err(crate::invalid!(
            "--n-checkpoints {}: training runs {steps} steps (--training-tokens / --train-batch-size-tokens); give fewer checkpoints than steps",
            args.n_checkpoints
        ));
    }
    let mut inputs = vec![args.model.as_path()];
    inputs.extend(args.cache.as_deref());
    inputs.extend(args.text.as_deref());
    // An SAE already there is not replaced in silence (training writes the same file names).
    if let Some(name) = ["cfg.json", "sae_weights.safetensors"]
        .iter()
        .find(|n| args.out.join(n).exists())
    {
        return Err(crate::invalid!(
            "--out {}: holds an SAE already ({name}); give another folder or remove it",
            args.out.display()
        ));
    }
    let out_dir = crate::output::OutputDir::create(&args.out, "--out", &inputs)?;
    let model = crate::model_cli::load_plain_model(&args.model, "f32")?;
    let store_dir = match (&args.cache, &args.text) {
        (Some(dir), _) => dir.clone(),
        (None, Some(text)) => {
            let dir = args.out.join("activations");
            let context =
                crate::model_cli::context_within(&model, args.context_size, "--context-size");
            let rows = glassbox_features::corpus::text_rows(&model, text, context, true)?;
            let opts = BuildOptions {
                hook_patterns: vec![args.hook.clone()],
                batch_size: 8,
                rows_per_shard: 64,
                model_label: args.model.display().to_string(),
            };
            let bar = crate::progress::bar(0, "caching");
            store::build(&model, &rows, &dir, &opts, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .with_context(|| format!("caching activations in {}", dir.display()))?;
            bar.finish_and_clear();
            dir
        }
        (None, None) => return Err(crate::invalid!("give --cache or --text")),
    };
    let store = ActivationStore::open(&store_dir)?;
    let hooks: Vec<String> = store
        .manifest
        .plan
        .hooks
        .iter()
        .map(|h| h.name.clone())
        .collect();
    let fingerprint = glassbox_features::store::model_fingerprint(&model, &hooks)?;
    if store.manifest.plan.model_fingerprint != fingerprint {
        return Err(crate::invalid!(
            "{}: the store was made from another model ({}) than {}{} (its activations there differ)",
            store_dir.display(),
            store.manifest.plan.model,
            args.model.display(),
            if crate::model_cli::adapter_dir().is_some() { " with --adapter" } else { "" }
        ));
    }
    let d_in = store.width(&args.hook).ok_or_else(|| {
        crate::invalid!(
            "{}: the store holds no `{}`",
            store_dir.display(),
            args.hook
        )
    })?;
    let arch = match args.arch {
        TrainArchName::Standard => TrainArch::Standard {
            l1_coefficient: args.l1_coefficient,
            lp_norm: args.lp_norm,
            l1_warm_up_steps: args.l1_warm_up_steps,
        },
        TrainArchName::Topk => TrainArch::TopK {
            k: args.k,
            aux_loss_coefficient: args.aux_loss_coefficient,
            rescale_acts_by_decoder_norm: args.rescale_acts_by_decoder_norm,
        },
        TrainArchName::Batchtopk => TrainArch::BatchTopK {
            k: args.k as f64,
            aux_loss_coefficient: args.aux_loss_coefficient,
            rescale_acts_by_decoder_norm: args.rescale_acts_by_decoder_norm,
            topk_threshold_lr: args.topk_threshold_lr,
        },
        TrainArchName::Jumprelu => TrainArch::JumpRelu {
            jumprelu_init_threshold: args.jumprelu_init_threshold,
            jumprelu_bandwidth: args.jumprelu_bandwidth,
            l0_coefficient: args.l0_coefficient,
            l0_warm_up_steps: args.l0_warm_up_steps,
        },
    };
    let mut metadata = serde_json::Map::new();
    metadata.insert("hook_name".into(), args.hook.clone().into());
    metadata.insert("hook_head_index".into(), Value::Null);
    metadata.insert("model_name".into(), args.model.display().to_string().into());
    metadata.insert("context_size".into(), store.manifest.plan.context.into());
    metadata.insert("prepend_bos".into(), true.into());
    metadata.insert(
        "exclude_special_tokens".into(),
        args.exclude_special_tokens.into(),
    );
    let opts = TrainOptions {
        arch,
        d_in,
        d_sae: args.d_sae,
        apply_b_dec_to_input: args.apply_b_dec_to_input,
        decoder_init_norm: Some(args.decoder_init_norm),
        lr: args.lr,
        lr_end: args.lr_end,
        lr_scheduler: match args.lr_scheduler_name {
            SchedulerName::Constant => LrScheduler::Constant,
            SchedulerName::Cosineannealing => LrScheduler::CosineAnnealing,
        },
        lr_warm_up_steps: args.lr_warm_up_steps,
        lr_decay_steps: args.lr_decay_steps,
        adam_beta1: args.adam_beta1,
        adam_beta2: args.adam_beta2,
        train_batch_size_tokens: args.train_batch_size_tokens,
        training_tokens: args.training_tokens,
        dead_feature_window: args.dead_feature_window,
        feature_sampling_window: args.feature_sampling_window,
        seed: args.seed,
        normalize_activations: matches!(
            args.normalize_activations,
            NormalizeName::ExpectedAverageOnlyIn
        ),
        n_batches_for_norm_estimate: args.n_batches_for_norm_estimate,
        metadata,
    };
    let steps = opts.total_steps();
    let checkpoints: Vec<usize> = (1..=args.n_checkpoints)
        .map(|i| i * steps / (args.n_checkpoints + 1))
        .filter(|&s| s > 0)
        .collect();
    let log_path = args.out.join("training_log.jsonl");
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?,
    );
    let exclude = if args.exclude_special_tokens {
        eval::special_tokens(&model)
    } else {
        Vec::new()
    };
    let bar = crate::progress::bar(steps as u64, "training");
    let buffer_rows = args.n_batches_in_buffer * store.manifest.plan.context;
    let trainer =
        train::train_on_store(&store, &args.hook, opts, buffer_rows, exclude, |t, step| {
            use std::io::Write;
            let line = serde_json::to_string(step).expect("a step log serialises");
            writeln!(log, "{line}").map_err(|e| {
                glassbox_features::FeatureError::Input(format!("{}: {e}", log_path.display()))
            })?;
            bar.set_position(t.step as u64);
            if checkpoints.contains(&t.step) {
                t.save(
                    &args
                        .out
                        .join("checkpoints")
                        .join(format!("step-{}", t.step)),
                )?;
            }
            Ok(())
        })?;
    bar.finish_and_clear();
    {
        use std::io::Write;
        log.flush()
            .with_context(|| format!("writing {}", log_path.display()))?;
    }
    trainer.save(&args.out)?;
    out_dir.keep();
    let sparsity = trainer.feature_sparsity();
    eprintln!(
        "{}: {} SAE, {} features on `{}` ({} steps); L0 {:.2}, {} dead",
        args.out.display(),
        trainer.opts.arch.name(),
        trainer.opts.d_sae,
        args.hook,
        trainer.step,
        sparsity.iter().sum::<f64>(),
        trainer.dead_features()
    );
    Ok(())
}
