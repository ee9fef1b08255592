//! GEMM GFLOP/s of each path this CPU runs against its measured FMA peak.
//! usage: gemm_speed [M K N] [REPS]    (run through bench/kernels/run.sh for the comparison)

use std::time::Instant;

use glassbox_kernels::{gemm, with_isa, Isa, MatRef};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (m, k, n) = match args.as_slice() {
        [m, k, n, ..] => (*m, *k, *n),
        _ => (128, 768, 3072),
    };
    let reps = args.get(3).copied().unwrap_or(20);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut c = vec![0f32; m * n];
    let threads = glassbox_kernels::threads();
    for isa in Isa::available_paths() {
        if isa == Isa::Portable {
            continue;
        }
        // The machine's peak: every thread running FMA chains at once (vCPUs may share a core).
        let peak: f64 = rayon::broadcast(|_| glassbox_kernels::gemm::fma_peak_gflops(isa))
            .iter()
            .sum();
        // A few rows also by w [k, n] held as its [n, k] copy, in w's order (decoding GPT-2
        // after its Conv1D weights were copied).
        let chained: &[_] = match m <= glassbox_kernels::FEW_ROWS {
            true => &[("x·w  from its copy", MatRef::row_major(&w, n, k).t(), true)],
            false => &[],
        };
        let products = [
            (
                "x·wᵀ (linear, w [n,k])",
                MatRef::row_major(&w, n, k).t(),
                false,
            ),
            ("x·w  (w [k,n])", MatRef::row_major(&w, k, n), false),
        ];
        for &(label, bm, from_copy) in products.iter().chain(chained) {
            let am = MatRef::row_major(&a, m, k);
            let product = |c: &mut [f32]| match from_copy {
                true => glassbox_kernels::gemm_few_rows_chained(am, bm, c),
                false => gemm(am, bm, c, false),
            };
            with_isa(isa, || product(&mut c));
            let mut times = Vec::new();
            for _ in 0..reps {
                let t = Instant::now();
                with_isa(isa, || product(&mut c));
                times.push(t.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            let med = times[times.len() / 2];
            let gflops = 2.0 * (m * k * n) as f64 / med / 1e9;
            println!(
                "{{\"isa\":\"{isa}\",\"op\":\"{label}\",\"m\":{m},\"k\":{k},\"n\":{n},\"threads\":{threads},\"ms\":{:.3},\"gflops\":{gflops:.1},\"peak_gflops\":{peak:.1},\"of_peak\":{:.3}}}",
                med * 1e3,
                gflops / peak
            );
        }
    }
}
