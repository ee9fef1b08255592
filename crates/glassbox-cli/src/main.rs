//! The `glassbox` binary: argument parsing and output only. Each subcommand lives in
//! `cmd/<name>.rs` with its own `Args` and `run`; the work itself is in the library crates.
//!
//! Exit codes: 0 success, 2 invalid input (a bad file, a bad argument), 1 anything else.

use clap::{Parser, Subcommand};

mod analysis_cli;
mod cmd;
mod exit;
mod model_cli;
mod output;
mod progress;
mod render;
mod training_cli;

#[derive(Parser)]
#[command(
    name = "glassbox",
    version,
    about = "A workbench for open AI models: audit a release, look inside a checkpoint, rebuild a fully open model."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Colour in terminal views: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    color: render::terminal::ColorChoice,
    /// Arithmetic of a GGUF model: llamacpp (what llama.cpp's CPU backend computes:
    /// activations quantized for quantized weights, rounded to f16 for F16 weights, its F16 KV
    /// cache unless --kv-cache f32; the default for files with quantized weights) or f32 (what
    /// the dequantized model computes; the default otherwise).
    #[arg(long, global = true, value_enum)]
    numerics: Option<model_cli::NumericsChoice>,
    /// How attention holds keys and values: f16 (llama.cpp's default cache: keys and values,
    /// and the queries and attention weights multiplied with them, rounded to f16; the default
    /// under --numerics llamacpp) or f32 (as computed: llama.cpp's --cache-type-k f32
    /// --cache-type-v f32; the default otherwise).
    #[arg(long, global = true, value_enum)]
    kv_cache: Option<model_cli::KvCacheChoice>,
    /// A LoRA adapter to apply, unmerged, to the model a command runs: a folder as PEFT saves
    /// one (adapter_config.json + adapter_model.safetensors), PEFT's own or `finetune`'s.
    #[arg(long, global = true, value_name = "DIR")]
    adapter: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Architecture summary, parameter counts, tensor table, statistics of a checkpoint.
    Inspect(cmd::inspect::Args),
    /// Per-tensor differences between two checkpoints (any formats).
    Diff(cmd::diff::Args),
    /// Quantize a model to a GGUF file as llama.cpp's llama-quantize does (q8_0 … q6_k).
    Quantize(cmd::quantize::Args),
    /// The top next tokens at each position.
    Run(cmd::run::Args),
    /// Sample a continuation with a KV cache, streaming tokens.
    Generate(cmd::generate::Args),
    /// Write activations at chosen hooks to a safetensors file.
    Trace(cmd::trace::Args),
    /// Logit lens: what each layer predicts.
    Lens(cmd::lens::Args),
    /// Direct logit attribution to embeddings, heads, MLPs and biases.
    Attribute(cmd::attribute::Args),
    /// Previous-token, duplicate-token, induction and first-token scores for every head.
    Heads(cmd::heads::Args),
    /// The web workbench: models, tensors and a prompt explorer in the browser.
    Serve(cmd::serve::Args),
    /// Activation patching between a clean and a corrupted prompt.
    Patch(cmd::patch::Args),
    /// Zero, mean or resample ablation of heads, MLPs or neurons.
    Ablate(cmd::ablate::Args),
    /// Linear probes: is a labelled property readable from the activations at each hook?
    Probe(cmd::probe::Args),
    /// Build a steering (control) vector from contrasting prompts or probe directions.
    Steer(cmd::steer::Args),
    /// Which experts each token is routed to, in mixture-of-experts models.
    Experts(cmd::experts::Args),
    /// Feature dashboards of a sparse autoencoder: top contexts, density, logit effects.
    Features(cmd::features::Args),
    /// Stream activations at chosen hooks over a corpus into a sharded, resumable store.
    Cache(cmd::cache::Args),
    /// Sparse autoencoders (SAELens's format): evaluate one on a model.
    Sae(cmd::sae::Args),
    /// Openness audit of a release: tier, licences, MOF class, evidence.
    Audit(cmd::audit::Args),
    /// Train a model from a recipe.
    Train(cmd::train::Args),
    /// Fine-tune LoRA adapters (PEFT's format) on a model's next-token loss.
    Finetune(cmd::finetune::Args),
    /// Merge a LoRA adapter (--adapter) into a model's weights.
    Merge(cmd::merge::Args),
    /// What changed between two versions of a model (quantization, fine-tune, checkpoints).
    Drift(cmd::drift::Args),
    /// Rebuild a fully open release from its recipe and compare.
    Reproduce(cmd::reproduce::Args),
    /// A one-minute tour of the three tiers on the bundled reference model.
    Tour(cmd::tour::Args),
}

/// A closed pipe on stdout (`glassbox audit --list | head`) ends the process quietly, as it
/// does for other command-line tools, instead of a panic in `println!`: Rust starts programs
/// with SIGPIPE ignored, so restore the default action.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first in main, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// `RUST_BACKTRACE=1`, which Rust users often keep set, also makes libraries capture a
/// backtrace in every error value (candle's do, and print it in the message): an input error
/// would end in forty lines of stack. Library backtraces are off unless `RUST_LIB_BACKTRACE`
/// asks for them; panics still print theirs under `RUST_BACKTRACE`.
fn quiet_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // First in main, before any thread exists that could read the environment.
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

/// Runs `f` on a thread of the kernels' pool (rayon's global pool, with the main thread's
/// 8 MiB stack). A command makes thousands of small parallel calls; from a pool thread each
/// is split among the workers directly, where from the main thread each is handed over and
/// waited for: a patching sweep ran 10–15 % faster.
fn on_kernel_threads<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    // Fails only if a pool exists already, which is then used as it is.
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(8 << 20)
        .build_global();
    let mut out = None;
    rayon::scope(|s| s.spawn(|_| out = Some(f())));
    out.expect("the command ran")
}

fn main() {
    glassbox_models::memory::keep_freed_memory();
    restore_sigpipe();
    quiet_error_backtraces();
    glassbox_models::kernel_ops::claim_cpu_threads();
    let cli = Cli::parse();
    render::terminal::set_color_choice(cli.color);
    model_cli::set_numerics(cli.numerics);
    model_cli::set_kv_cache(cli.kv_cache);
    // The global model options a command would ignore are refused rather than ignored: an
    // adapter by commands that read weights without running the model or train their own,
    // --numerics by those that run no GGUF model's arithmetic.
    let ignores = match &cli.command {
        Command::Inspect(_) => Some(("inspect", true, true)),
        Command::Diff(_) => Some(("diff", true, true)),
        Command::Quantize(_) => Some(("quantize", true, true)),
        Command::Audit(_) => Some(("audit", true, true)),
        Command::Train(_) => Some(("train", true, true)),
        Command::Reproduce(_) => Some(("reproduce", true, true)),
        Command::Tour(_) => Some(("tour", true, true)),
        Command::Finetune(_) => Some(("finetune", true, true)),
        Command::Serve(_) => Some(("serve", true, false)),
        Command::Merge(_) => Some(("merge", false, true)),
        _ => None,
    };
    if let (Command::Drift(_), Some(_)) = (&cli.command, &cli.adapter) {
        eprintln!("error: --adapter: drift opens two models; give the fine-tune's adapter as --b-adapter DIR (glassbox drift BASE BASE --b-adapter DIR)");
        std::process::exit(2);
    }
    if let (Some((name, true, _)), Some(_)) = (ignores, &cli.adapter) {
        eprintln!("error: --adapter: `{name}` does not apply an adapter; merge it into the model first (glassbox merge MODEL --adapter DIR --out DIR)");
        std::process::exit(2);
    }
    if let (Some((name, _, true)), Some(_)) = (ignores, &cli.numerics) {
        eprintln!("error: --numerics: `{name}` does not run a GGUF model's arithmetic (it applies to commands that run a model: run, generate, trace, lens, …)");
        std::process::exit(2);
    }
    if let (Some((name, _, true)), Some(_)) = (ignores, &cli.kv_cache) {
        eprintln!("error: --kv-cache: `{name}` does not run a model's attention (it applies to commands that run a model: run, generate, trace, lens, …)");
        std::process::exit(2);
    }
    model_cli::set_adapter(cli.adapter);
    // A forced instruction-set path the CPU cannot run is the user's error, named up front
    // (the kernels would otherwise quietly use the detected path).
    if let Err(err) = glassbox_kernels::isa_from_env() {
        eprintln!("error: {err}");
        std::process::exit(2);
    }
    // The server's own threads wait on sockets; its computations go to the kernels' pool.
    let result = match cli.command {
        Command::Serve(a) => cmd::serve::run(a),
        command => on_kernel_threads(|| run_command(command)),
    };
    if let Err(err) = result {
        eprintln!("error: {}", exit::describe(&err));
        std::process::exit(exit::code(&err));
    }
}

/// Every command but `serve`, on a thread of the kernels' pool.
fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Diff(a) => cmd::diff::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Trace(a) => cmd::trace::run(a),
        Command::Lens(a) => cmd::lens::run(a),
        Command::Attribute(a) => cmd::attribute::run(a),
        Command::Heads(a) => cmd::heads::run(a),
        Command::Patch(a) => cmd::patch::run(a),
        Command::Ablate(a) => cmd::ablate::run(a),
        Command::Probe(a) => cmd::probe::run(a),
        Command::Steer(a) => cmd::steer::run(a),
        Command::Experts(a) => cmd::experts::run(a),
        Command::Cache(a) => cmd::cache::run(a),
        Command::Features(a) => cmd::features::run(a),
        Command::Sae(a) => cmd::sae::run(a),
        Command::Audit(a) => cmd::audit::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Finetune(a) => cmd::finetune::run(a),
        Command::Merge(a) => cmd::merge::run(a),
        Command::Drift(a) => cmd::drift::run(a),
        Command::Reproduce(a) => cmd::reproduce::run(a),
        Command::Tour(a) => cmd::tour::run(a),
        Command::Serve(a) => cmd::serve::run(a),
    }
}
