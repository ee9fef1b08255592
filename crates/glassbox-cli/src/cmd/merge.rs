//! `glassbox merge MODEL --adapter DIR --out DIR`: the base model's Hub folder with a LoRA
//! adapter merged into its weights (PEFT's `merge_and_unload`): `W + s·B·A` in each weight's
//! own dtype, every other tensor and the config and tokenizer files copied.

use std::path::PathBuf;

use glassbox_formats::Checkpoint;

use crate::invalid;

#[derive(clap::Args)]
pub struct Args {
    /// The base model's Hub folder (config.json + safetensors).
    pub model: PathBuf,
    /// The merged model's folder to write (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Some(adapter_dir) = crate::model_cli::adapter_dir() else {
        return Err(invalid!("merge needs --adapter DIR (the adapter to merge)"));
    };
    crate::output::not_an_input(&args.out, "--out", &[&args.model, adapter_dir])?;
    if args.out.exists()
        && std::fs::read_dir(&args.out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(invalid!(
            "--out {}: exists and is not an empty folder",
            args.out.display()
        ));
    }
    if !args.model.is_dir() {
        return Err(invalid!("{}: not a Hub folder", args.model.display()));
    }
    let adapter = crate::model_cli::load_adapter(adapter_dir)?;
    let checkpoint = Checkpoint::open(&args.model)?;
    let report = glassbox_formats::peft::merge(&checkpoint, &adapter, &args.out)?;
    println!(
        "merged {} adapted weights ({} tensors copied) into {}",
        report.merged,
        report.copied,
        args.out.display()
    );
    Ok(())
}
