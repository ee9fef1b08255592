//! `glassbox finetune MODEL --data FILE.jsonl --lora-r R --lora-alpha A --target q_proj,v_proj
//! --out DIR`: LoRA adapters trained on the model's next-token loss, written as PEFT writes
//! them (`adapter_config.json`, `adapter_model.safetensors`) with `training_log.jsonl` (one
//! JSON object per step: `step`, `loss`, `lr`, `tokens`, `elapsed_s`). Deterministic: the same
//! model, data, options and seed give the same adapter bytes on any CPU and thread count.
//!
//! `--json` prints one object at the end: `out`, `modules` (adapted layers), `rows` (training
//! rows of `context + 1` tokens), `steps`, `loss_before` and `loss_after` (the mean loss over
//! the same `eval_rows` rows before the first step and after the last), `first_loss` and
//! `last_loss` (the first and last steps' batches: different rows), `seconds`.

use std::path::PathBuf;

use glassbox_train::finetune::{self, FinetuneOptions};
use serde_json::json;

use crate::invalid;

#[derive(clap::Args)]
pub struct Args {
    /// The base model (Hub folder or GGUF file); it stays frozen.
    pub model: PathBuf,
    /// Training text: JSONL, one {"text": "..."} per line.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Rank of each adapter.
    #[arg(long, default_value_t = 8)]
    pub lora_r: usize,
    /// LoRA's alpha: adapters are scaled by alpha / r (alpha / √r with --rslora).
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// The linear layers to adapt, by name or dotted suffix (PEFT's target_modules).
    #[arg(long, value_delimiter = ',', default_value = "q_proj,v_proj")]
    pub target: Vec<String>,
    /// Scale by alpha / √r (rank-stabilised LoRA).
    #[arg(long)]
    pub rslora: bool,
    /// Optimisation steps.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Rows per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per row (the text is packed into rows of context + 1 tokens).
    #[arg(long, default_value_t = 64)]
    pub context: usize,
    /// AdamW's learning rate (constant).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// AdamW's weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Seeds the adapters' initialisation and the order of the rows.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The adapter folder to write.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace DIR's adapter files if they exist.
    #[arg(long)]
    pub force: bool,
    /// Dtype the base weights are held in: f32 (default), f16 or bf16 (half the memory; the
    /// adapter trains in f32).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Machine-readable summary (keys in the module doc).
    #[arg(long)]
    pub json: bool,
}

/// The files a fine-tune writes in `--out`.
const WRITTEN: [&str; 3] = [
    "adapter_model.safetensors",
    "adapter_config.json",
    "training_log.jsonl",
];

pub fn run(args: Args) -> anyhow::Result<()> {
    // The inputs first, so that a bad one is named as itself.
    glassbox_formats::input::existing(&args.model)?;
    let texts = finetune::read_texts(&args.data)?;
    let mut inputs = vec![args.model.as_path(), args.data.as_path()];
    inputs.extend(crate::model_cli::adapter_dir());
    crate::output::not_an_input(&args.out, "--out", &inputs)?;
    if args.out.is_file() {
        return Err(invalid!(
            "--out {}: is a file; give a folder",
            args.out.display()
        ));
    }
    // No command writes over what it reads, --force or not.
    for name in WRITTEN {
        let written = args.out.join(name);
        if let Some(input) = inputs
            .iter()
            .find(|i| crate::output::same_file(i, &written))
        {
            return Err(invalid!(
                "{}: is an input of this run, and fine-tuning writes {name} there; give another --out",
                input.display()
            ));
        }
    }
    if let Some(name) = WRITTEN.iter().find(|n| args.out.join(n).exists()) {
        if !args.force {
            return Err(invalid!(
                "{}: holds an adapter already ({name}; pass --force to replace it)",
                args.out.display()
            ));
        }
    }
    let opts = FinetuneOptions {
        rank: args.lora_r,
        alpha: args.lora_alpha,
        targets: args.target.clone(),
        use_rslora: args.rslora,
        steps: args.steps,
        batch: args.batch,
        context: args.context,
        lr: args.lr,
        weight_decay: args.weight_decay,
        seed: args.seed,
    };
    let base = glassbox_models::LoadOptions {
        dtype: crate::model_cli::parse_dtype(&args.dtype)?,
        ..Default::default()
    };
    let bar = crate::progress::bar(args.steps as u64, "fine-tuning");
    let start = std::time::Instant::now();
    let done = finetune::finetune(&args.model, base, &texts, &opts, &mut |p| match p {
        finetune::Progress::Note(note) => bar.suspend(|| eprintln!("note: {note}")),
        finetune::Progress::Step(s) => {
            bar.set_position(s.step as u64);
            bar.set_message(format!("loss {:.4}", s.loss));
        }
    })?;
    bar.finish_and_clear();
    std::fs::create_dir_all(&args.out)?;
    done.adapter.write(&args.out)?;
    let log: String = done
        .log
        .iter()
        .map(|s| serde_json::to_string(s).map(|l| l + "\n"))
        .collect::<Result<_, _>>()?;
    glassbox_formats::output::write_bytes(&args.out.join("training_log.jsonl"), log.as_bytes())?;
    let first = done.log.first().map(|s| s.loss);
    let last = done.log.last().map(|s| s.loss);
    if args.json {
        let out = json!({
            "out": args.out.display().to_string(),
            "modules": done.modules,
            "rows": done.rows,
            "steps": done.log.len(),
            // the same rows before the first step and after the last
            "loss_before": done.loss_before,
            "loss_after": done.loss_after,
            "eval_rows": done.eval_rows,
            // one batch each (different rows): the first and last steps' losses
            "first_loss": first,
            "last_loss": last,
            "seconds": start.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "adapted {} modules (r {}, alpha {}) over {} rows of {} tokens in {} steps, {:.1} s: loss over {} rows {:.4} → {:.4} (the same rows before and after)",
            done.modules,
            args.lora_r,
            args.lora_alpha,
            done.rows,
            args.context + 1,
            done.log.len(),
            start.elapsed().as_secs_f64(),
            done.eval_rows,
            done.loss_before,
            done.loss_after
        );
        println!(
            "wrote {} (adapter_config.json, adapter_model.safetensors, training_log.jsonl)",
            args.out.display()
        );
    }
    Ok(())
}
