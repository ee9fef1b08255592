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

/// Twenty 3072×768 matrices used in turn (50 MB of Q8_0: more than the caches hold), as the
/// layers of a decoding step are: the weights stream from memory.
fn streaming() {
    for format in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
        let (n, k, count) = (3072, 768, 20);
        let data: Vec<Vec<u8>> = (0..count).map(|s| sample_matrix(format, n, k, s)).collect();
        let ws: Vec<QuantMatrix> = data
            .iter()
            .map(|d| QuantMatrix::new(format, d, n, k).unwrap())
            .collect();
        let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut y = vec![0f32; n];
        let reps = 20;
        let t = Instant::now();
        for _ in 0..reps {
            for w in &ws {
                quantized_matmul(&x, 1, w, None, QuantNumerics::LlamaCpp, &mut y);
            }
        }
        let s = t.elapsed().as_secs_f64() / (reps * count) as f64;
        println!(
            "{:5} streaming {count} × {n}×{k}: {:6.2} GMAC/s  {:6.2} GB/s of weights",
            format.name(),
            (n * k) as f64 / s / 1e9,
            data[0].len() as f64 / s / 1e9
        );
    }
}
