//! Timing harness for `bench/forward/run.sh` (not a test): one measurement per process, so
//! the peak resident memory it reports belongs to that measurement alone.
//!
//! usage: [DTYPE=f16|bf16] forward_bench MODEL_DIR (logits|cache|decode|session) N_TOKENS REPS
//!        [NEW_TOKENS] [BATCH]
//! (DTYPE: weights and activations held in half precision, as `--dtype` does; a checkpoint
//! stored in that dtype keeps its weights in the memory map.)
//! Tokens of row b are `(i * 7919 + 13 + 31 b) % vocab`, the same formula the Python side
//! uses (decode runs one row). `session` is a notebook's order: two forward passes of the
//! batch (the second makes GPT-2's transposed weight copies), then decode as `decode`. Prints one
//! JSON line: median milliseconds (or decode tokens per second), peak RSS, weight bytes and
//! cached activation bytes.

use std::time::Instant;

use glassbox_models::{GenerateOptions, HookedModel, Hooks, LoadOptions, NameFilter};

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    glassbox_models::kernel_ops::claim_cpu_threads();
    // As the CLI and the Python package start: freed buffers stay in the heap for reuse.
    glassbox_models::memory::keep_freed_memory();
    // As the CLI does: the work runs on a thread of the kernels' pool, so that its parallel
    // calls are split among the workers directly (not handed over and waited for).
    let mut result = None;
    rayon::scope(|s| s.spawn(|_| result = Some(bench().map_err(|e| e.to_string()))));
    Ok(result.expect("the benchmark ran")?)
}

fn bench() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err(
            "usage: forward_bench MODEL_DIR (logits|cache|decode) N_TOKENS REPS [NEW_TOKENS]"
                .into(),
        );
    }
    let (dir, mode) = (&args[1], args[2].as_str());
    let n: usize = args[3].parse()?;
    let reps: usize = args[4].parse()?;
    let new_tokens: usize = args.get(5).map_or(Ok(32), |s| s.parse())?;
    let batch: usize = args.get(6).map_or(Ok(1), |s| s.parse())?;
    if matches!(mode, "decode" | "session") && new_tokens < 2 {
        return Err(
            "decoding is timed from the first new token to the last: NEW_TOKENS ≥ 2".into(),
        );
    }
    // DTYPE=f16|bf16: weights (and activations) held in half precision, as `--dtype` does.
    let mut options = LoadOptions::default();
    match std::env::var("DTYPE").as_deref() {
        Ok("f16") => options.dtype = candle_core::DType::F16,
        Ok("bf16") => options.dtype = candle_core::DType::BF16,
        Ok("f32") | Err(_) => {}
        Ok(other) => return Err(format!("DTYPE={other}: f32, f16 or bf16").into()),
    }
    let model = HookedModel::load(dir.as_ref(), &options)?;
    let vocab = model.info().d_vocab;
    let ids: Vec<u32> = (0..n).map(|i| ((i * 7919 + 13) % vocab) as u32).collect();
    let rows: Vec<u32> = (0..batch)
        .flat_map(|b| (0..n).map(move |i| ((i * 7919 + 13 + 31 * b) % vocab) as u32))
        .collect();
    let input = candle_core::Tensor::from_vec(rows, (batch, n), &candle_core::Device::Cpu)?;
    let mut times = Vec::new();
    let mut activations_mb = 0.0;
    let all = NameFilter::all();
    let mode = match mode {
        "session" => {
            model.run(&input)?;
            model.run(&input)?;
            "decode"
        }
        mode => mode,
    };
    for rep in 0..=reps {
        let start = Instant::now();
        match mode {
            "logits" => {
                model.run(&input)?;
            }
            "cache" => {
                let (_, cache) = model.run_with_cache(&input, &all)?;
                activations_mb = cache.bytes() as f64 / 1048576.0;
            }
            "decode" => {
                // Tokens per second of the single-token steps: from the first new token (the
                // end of the prefill) to the last, within one generation — the same span on
                // every side (bench_ref.py, bench_llamacpp.py).
                let opts = GenerateOptions {
                    max_new_tokens: new_tokens,
                    stop_at_eos: false,
                    ..GenerateOptions::default()
                };
                let mut stamps = Vec::with_capacity(new_tokens);
                model.generate(&ids, &opts, &mut Hooks::none(), |_| {
                    stamps.push(Instant::now())
                })?;
                if stamps.len() != new_tokens {
                    return Err(format!("{} of {new_tokens} tokens reported", stamps.len()).into());
                }
                let (first, last) = (stamps[0], stamps[new_tokens - 1]);
                times.push((new_tokens - 1) as f64 / (last - first).as_secs_f64().max(1e-9));
                continue;
            }
            other => return Err(format!("unknown mode `{other}`").into()),
        }
        if rep > 0 {
            // The first run warms caches and allocators.
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    if mode == "decode" {
        times.remove(0);
    }
    println!(
        "{}",
        serde_json::json!({
            "impl": "glassbox",
            "mode": mode,
            "tokens": n,
            "batch": batch,
            "value": median(times),
            "unit": if mode == "decode" { "tok/s" } else { "ms" },
            "peak_rss_mb": peak_rss_mb(),
            "activations_mb": activations_mb,
        })
    );
    Ok(())
}
