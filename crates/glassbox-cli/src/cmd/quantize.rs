//! `glassbox quantize MODEL --to q8_0|q4_0|q4_k_m|q5_k_m|q6_k --out F.gguf [--imatrix F]
//! [--dry-run] [--json]`: the file llama.cpp's `llama-quantize` writes from the same F32/F16
//! GGUF, byte for byte (see `glassbox_formats::gguf_quantize`).
//!
//! `--json` writes one object with these stable keys:
//! - `"model"`, `"out"` (paths; `out` is null with `--dry-run`), `"mixture"` (`"Q4_K_M"`, …),
//!   `"file_type"` (llama.cpp's `general.file_type`), `"imatrix"` (path or null);
//! - `"source_bytes"`, `"data_bytes"` (tensor data before and after), `"bits_per_weight"`;
//! - `"fallbacks"`: tensors whose rows are not whole blocks of the type the rules chose;
//! - `"types"`: `{TYPE: tensor count}`;
//! - `"tensors"`: list in file order of `{name, shape, from, to}`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use glassbox_formats::gguf_convert::{is_hub_folder, HubAsGguf};
use glassbox_formats::gguf_quantize::{self, GgufSource, ImportanceMatrix, Mixture, QuantSource};
use glassbox_formats::GgufFile;
use serde_json::json;

use crate::invalid;

#[derive(clap::Args)]
pub struct Args {
    /// The model: an F32, F16 or BF16 GGUF file, or a Hub snapshot folder of a Llama, Mistral,
    /// Qwen 2 or Qwen 3 model (converted as llama.cpp's convert_hf_to_gguf.py converts it).
    pub model: PathBuf,
    /// The mixture, as llama.cpp names it: q8_0, q4_0, q4_k_m, q5_k_m or q6_k.
    #[arg(long, value_name = "TYPE")]
    pub to: String,
    /// The GGUF file to write.
    #[arg(long, value_name = "FILE", required_unless_present = "dry_run")]
    pub out: Option<PathBuf>,
    /// An importance matrix made by llama.cpp's `llama-imatrix` (GGUF or legacy .dat).
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// Show the plan (each tensor's type, the sizes) without writing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable output (keys documented in the command's module doc and the README).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mixture = Mixture::parse(&args.to).ok_or_else(|| {
        invalid!(
            "--to {}: not a mixture; use one of {}",
            args.to,
            Mixture::ALL.map(|m| m.name().to_lowercase()).join(", ")
        )
    })?;
    if let Some(out) = &args.out {
        let mut inputs = vec![args.model.as_path()];
        inputs.extend(args.imatrix.as_deref());
        crate::output::check(out, "--out", &inputs)?;
    }
    let (file, hub, gguf);
    let (source, source_bytes): (&dyn QuantSource, u64) = if is_hub_folder(&args.model) {
        hub = HubAsGguf::open(&args.model)?;
        let bytes = hub.checkpoint().tensors().iter().map(|t| t.bytes).sum();
        (&hub, bytes)
    } else {
        file = GgufFile::open(&args.model)?;
        let bytes = file.tensors.iter().map(|t| (t.end - t.start) as u64).sum();
        gguf = GgufSource::new(&file);
        (&gguf, bytes)
    };
    // A tokenizer llama.cpp has no vocabulary type for here is carried whole for glassbox;
    // llama.cpp loads such a file but aborts on the first text it tokenizes.
    let carried = source.metadata().iter().any(|(k, v)| {
        k == "tokenizer.ggml.model"
            && matches!(v, glassbox_formats::GgufValue::String(m) if m == "none")
    });
    if carried && args.out.is_some() {
        eprintln!(
            "note: {}: its tokenizer.json is carried as `tokenizer.huggingface.json` (`tokenizer.ggml.model = none`): glassbox tokenizes text from it, llama.cpp only runs token ids (llama-cli or llama-server given text abort). A SentencePiece vocabulary (Llama 2, Mistral) is written as llama.cpp's from the folder's tokenizer.model, which this folder lacks; for llama.cpp's tools, convert it with llama.cpp's convert_hf_to_gguf.py and quantize its GGUF",
            args.model.display()
        );
    }
    let imatrix = match &args.imatrix {
        Some(path) => Some((ImportanceMatrix::open(path)?, path.display().to_string())),
        None => None,
    };
    let plan = gguf_quantize::plan(
        source,
        mixture,
        imatrix.as_ref().map(|(m, l)| (m, l.as_str())),
    )?;

    let data_bytes = plan.data_bytes();
    let elements: u64 = source
        .tensors()
        .iter()
        .map(|t| t.shape.iter().product::<usize>() as u64)
        .sum();
    let bits_per_weight = data_bytes as f64 * 8.0 / elements.max(1) as f64;
    let mut types = BTreeMap::<String, usize>::new();
    for t in &plan.tensors {
        *types.entry(t.to.name().to_string()).or_default() += 1;
    }

    let start = std::time::Instant::now();
    if let (Some(out), false) = (&args.out, args.dry_run) {
        let bar = crate::progress::bar(plan.tensors.len() as u64, "quantizing");
        gguf_quantize::quantize(
            source,
            &plan,
            imatrix.as_ref().map(|(m, _)| m),
            out,
            |done, _| bar.set_position(done as u64),
        )?;
        bar.finish_and_clear();
    }
    let seconds = start.elapsed().as_secs_f64();
    let written = args.out.as_ref().filter(|_| !args.dry_run);

    if args.json {
        let tensors: Vec<_> = plan
            .tensors
            .iter()
            .map(|t| json!({"name": t.name, "shape": t.shape, "from": t.from.name(), "to": t.to.name()}))
            .collect();
        let out = json!({
            "model": args.model.display().to_string(),
            "out": written.map(|p| p.display().to_string()),
            "mixture": mixture.name(),
            "file_type": mixture.file_type(),
            "imatrix": args.imatrix.as_ref().map(|p| p.display().to_string()),
            "source_bytes": source_bytes,
            "data_bytes": data_bytes,
            "bits_per_weight": bits_per_weight,
            "fallbacks": plan.fallbacks,
            "types": types,
            "tensors": tensors,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "{} → {} ({} tensors)",
        args.model.display(),
        mixture.name(),
        plan.tensors.len()
    );
    if args.dry_run {
        for t in &plan.tensors {
            println!(
                "  {:<40} {:<18} {:>5} → {}",
                t.name,
                format!("{:?}", t.shape),
                t.from.name(),
                t.to.name()
            );
        }
    }
    let mix: Vec<String> = types.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!("  types:  {}", mix.join(", "));
    println!(
        "  size:   {:.2} MiB → {:.2} MiB ({bits_per_weight:.2} bits per weight)",
        mib(source_bytes),
        mib(data_bytes)
    );
    if plan.fallbacks > 0 {
        println!(
            "  {} tensor(s) have rows that are not whole blocks of their type and fell back (as llama.cpp does)",
            plan.fallbacks
        );
    }
    if let Some((m, label)) = &imatrix {
        println!(
            "  importance matrix: {label} ({} entries, {} chunks)",
            m.entries.len(),
            m.chunk_count
        );
    }
    match written {
        Some(out) => println!("  wrote {} in {seconds:.1} s", out.display()),
        None => println!("  (dry run: nothing written)"),
    }
    Ok(())
}
