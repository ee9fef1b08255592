//! Products with quantized weights: GMAC/s of `quantized_matmul` per format, numerics and
//! matrix size (one activation row: the decoding step), on this machine's threads.
//!
//! usage: cargo run --release -p glassbox-kernels --example quant_speed

use std::time::Instant;

use glassbox_kernels::quant::{
    quantized_matmul, sample_matrix, BlockFormat, QuantMatrix, QuantNumerics,
};

fn main() {
    streaming();
    for format in [
        BlockFormat::Q8_0,
        BlockFormat::Q4_0,
        BlockFormat::Q4K,
        BlockFormat::Q6K,
    ] {
        for (n, k) in [(768, 768), (3072, 768), (50257, 768)] {
            let data = sample_matrix(format, n, k, 1);
            let w = QuantMatrix::new(format, &data, n, k).unwrap();
            let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut y = vec![0f32; n];
            for numerics in [QuantNumerics::LlamaCpp, QuantNumerics::F32] {
                let reps = (2_000_000_000 / (n * k)).max(3);
                quantized_matmul(&x, 1, &w, None, numerics, &mut y);
                let t = Instant::now();
                for _ in 0..reps {
                    quantized_matmul(&x, 1, &w, None, numerics, &mut y);
                }
                let s = t.elapsed().as_secs_f64() / reps as f64;
                println!(
                    "{:5} {n:6}×{k}  {numerics:?}: {:7.1} µs  {:6.2} GMAC/s  {:6.2} GB/s of weights",
                    format.name(),
                    s * 1e6,
                    (n * k) as f64 / s / 1e9,
                    data.len() as f64 / s / 1e9
                );
            }
        }
    }
}

/// A decoding step's matrices used in turn, as the layers use them (far more than the caches
/// hold: the weights stream from memory): GPT-2 small's twelve layers and Qwen2.5-0.5B's
/// twenty-four, each in Q8_0 and Q4_0.
fn streaming() {
    let gpt2: Vec<(usize, usize)> = [(2304, 768), (768, 768), (3072, 768), (768, 3072)].repeat(12);
    let qwen: Vec<(usize, usize)> = [
        (896, 896),
        (128, 896),
        (128, 896),
        (896, 896),
        (4864, 896),
        (4864, 896),
        (896, 4864),
    ]
    .repeat(24);
    for (model, shapes) in [("GPT-2 small", gpt2), ("Qwen2.5-0.5B", qwen)] {
        for format in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
            let data: Vec<Vec<u8>> = shapes
                .iter()
                .enumerate()
                .map(|(s, &(n, k))| sample_matrix(format, n, k, s as u64))
                .collect();
            let ws: Vec<QuantMatrix> = data
                .iter()
                .zip(&shapes)
                .map(|(d, &(n, k))| QuantMatrix::new(format, d, n, k).unwrap())
                .collect();
            let xs: Vec<Vec<f32>> = shapes
                .iter()
                .map(|&(_, k)| (0..k).map(|i| (i as f32 * 0.37).sin()).collect())
                .collect();
            let mut y = vec![0f32; shapes.iter().map(|s| s.0).max().unwrap()];
            let reps = 10;
            let mut s = 0.0;
            // As a decoding loop runs: on a thread of the pool, its other workers kept awake.
            rayon::scope(|scope| {
                scope.spawn(|_| {
                    let _awake = glassbox_kernels::pool::keep_workers_awake();
                    let t = Instant::now();
                    for _ in 0..reps {
                        for ((w, x), &(n, _)) in ws.iter().zip(&xs).zip(&shapes) {
                            quantized_matmul(x, 1, w, None, QuantNumerics::LlamaCpp, &mut y[..n]);
                        }
                    }
                    s = t.elapsed().as_secs_f64() / reps as f64;
                })
            });
            let bytes: usize = data.iter().map(Vec::len).sum();
            println!(
                "{:5} streaming {model}'s layers: {:7.2} ms per step  {:6.2} GB/s of weights",
                format.name(),
                s * 1e3,
                bytes as f64 / s / 1e9
            );
        }
    }
}
