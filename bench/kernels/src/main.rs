//! f32 GEMM GFLOP/s: glassbox-kernels (every ISA path this CPU runs) vs the `gemm` crate
//! (candle's), `faer` and `rten-gemm`, against the machine's measured FMA peak.
//!
//! usage: kernels_bench [--reps N] [--budget SECONDS] [--threads 1,2] [--shapes MxKxN,...]
//!                      [--only NAME,...] [--json PATH]
//!
//! For each shape C[m,n] = A[m,k]·B[k,n] and each B layout — `b[k,n]` (B stored row-major) and
//! `w[n,k]ᵀ` (B = Wᵀ with W stored [n,k], as a linear layer's weight) — and each thread count,
//! every implementation runs once to warm up (its result is checked against an f64 reference),
//! then REPS timed runs (fewer when they exceed the time budget, never fewer than 3); the
//! median is reported. Threads: each measurement runs inside a rayon pool of that size (all
//! four libraries split work over rayon); `gemm` and `faer` are also told the count explicitly.

use std::io::Write;
use std::time::Instant;

use glassbox_kernels::{with_isa, Isa, MatRef};

struct Opts {
    reps: usize,
    budget_s: f64,
    threads: Vec<usize>,
    shapes: Vec<(usize, usize, usize)>,
    only: Option<Vec<String>>,
    json: Option<String>,
}

fn parse_args() -> Opts {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Opts {
        reps: 20,
        budget_s: 3.0,
        threads: if cores > 1 { vec![1, cores] } else { vec![1] },
        shapes: vec![(128, 768, 3072), (1, 768, 3072), (1024, 768, 768), (1024, 768, 3072)],
        only: None,
        json: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--reps" => o.reps = v.parse().expect("--reps N"),
            "--budget" => o.budget_s = v.parse().expect("--budget SECONDS"),
            "--threads" => o.threads = v.split(',').map(|t| t.parse().expect("--threads 1,2")).collect(),
            "--shapes" => {
                o.shapes = v
                    .split(',')
                    .map(|s| {
                        let d: Vec<usize> = s.split('x').map(|x| x.parse().expect("--shapes MxKxN")).collect();
                        assert_eq!(d.len(), 3, "--shapes MxKxN");
                        (d[0], d[1], d[2])
                    })
                    .collect()
            }
            "--only" => o.only = Some(v.split(',').map(str::to_string).collect()),
            "--json" => o.json = Some(v),
            "-h" | "--help" => {
                println!("usage: kernels_bench [--reps N] [--budget SECONDS] [--threads 1,2] [--shapes MxKxN,...] [--only NAME,...] [--json PATH]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    o
}

/// Deterministic values in [-0.5, 0.5).
fn fill(len: usize, seed: usize) -> Vec<f32> {
    let mut x = seed as u64 * 0x9E37_79B9_7F4A_7C15 + 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Naive f64 product of A [m,k] and B [k,n] (both row-major).
fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0f64; m * n];
    let b64: Vec<f64> = b.iter().map(|&x| x as f64).collect();
    for i in 0..m {
        let row = &mut c[i * n..(i + 1) * n];
        for p in 0..k {
            let av = a[i * k + p] as f64;
            for (cj, bj) in row.iter_mut().zip(&b64[p * n..(p + 1) * n]) {
                *cj += av * bj;
            }
        }
    }
    c
}

/// max |c − ref| / max |ref| (normwise relative error; NaN if any output is NaN).
fn max_rel_err(c: &[f32], r: &[f64]) -> f64 {
    let scale = r.iter().fold(0f64, |m, x| m.max(x.abs())).max(f64::MIN_POSITIVE);
    let mut err = 0f64;
    for (x, y) in c.iter().zip(r) {
        let e = (*x as f64 - y).abs();
        if e.is_nan() {
            return f64::NAN;
        }
        err = err.max(e);
    }
    err / scale
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// B stored row-major [k, n].
    Kn,
    /// B = Wᵀ with W stored row-major [n, k] (a linear layer's weight).
    WnkT,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Kn => "b[k,n]",
            Layout::WnkT => "w[n,k]^T",
        }
    }
}

struct Problem<'a> {
    m: usize,
    k: usize,
    n: usize,
    a: &'a [f32],
    /// B [k, n] when the layout is Kn, W [n, k] when it is WnkT.
    b: &'a [f32],
    layout: Layout,
    threads: usize,
}

type Impl = (String, Box<dyn Fn(&Problem, &mut [f32]) + Send + Sync>);

fn implementations() -> Vec<Impl> {
    let mut v: Vec<Impl> = Vec::new();
    for isa in Isa::available_paths() {
        v.push((
            format!("glassbox/{isa}"),
            Box::new(move |p: &Problem, c: &mut [f32]| {
                let a = MatRef::row_major(p.a, p.m, p.k);
                let b = match p.layout {
                    Layout::Kn => MatRef::row_major(p.b, p.k, p.n),
                    Layout::WnkT => MatRef::row_major(p.b, p.n, p.k).t(),
                };
                with_isa(isa, || glassbox_kernels::gemm(a, b, c, false));
            }),
        ));
    }
    v.push((
        "gemm 0.19".into(),
        Box::new(|p: &Problem, c: &mut [f32]| {
            let (rhs_cs, rhs_rs) = match p.layout {
                Layout::Kn => (1isize, p.n as isize),
                Layout::WnkT => (p.k as isize, 1isize),
            };
            let par = if p.threads == 1 {
                gemm::Parallelism::None
            } else {
                gemm::Parallelism::Rayon(p.threads)
            };
            // Safety: the pointers, strides and shapes describe the slices exactly.
            unsafe {
                gemm::gemm(
                    p.m, p.n, p.k, c.as_mut_ptr(), 1, p.n as isize, false,
                    p.a.as_ptr(), 1, p.k as isize, p.b.as_ptr(), rhs_cs, rhs_rs,
                    0.0f32, 1.0f32, false, false, false, par,
                );
            }
        }),
    ));
    v.push((
        "faer 0.24".into(),
        Box::new(|p: &Problem, c: &mut [f32]| {
            use faer::{Accum, MatMut, MatRef, Par};
            let a = MatRef::from_row_major_slice(p.a, p.m, p.k);
            let b = match p.layout {
                Layout::Kn => MatRef::from_row_major_slice(p.b, p.k, p.n),
                Layout::WnkT => MatRef::from_row_major_slice(p.b, p.n, p.k).transpose(),
            };
            let dst = MatMut::from_row_major_slice_mut(c, p.m, p.n);
            let par = if p.threads == 1 { Par::Seq } else { Par::rayon(p.threads) };
            faer::linalg::matmul::matmul(dst, Accum::Replace, a, b, 1.0f32, par);
        }),
    ));
    // rten's executor is neither Send nor Sync: one per thread (made once, reused).
    thread_local! {
        static RTEN: rten_gemm::GemmExecutor<f32> = rten_gemm::GemmExecutor::default();
    }
    v.push((
        format!("rten-gemm 0.27 ({})", RTEN.with(|e| e.kernel_name().to_string())),
        Box::new(move |p: &Problem, c: &mut [f32]| {
            use rten_gemm::{GemmInputA, GemmInputB, GemmOptions};
            use rten_tensor::NdTensorView;
            let a = NdTensorView::from_data([p.m, p.k], p.a);
            let b = match p.layout {
                crate::Layout::Kn => NdTensorView::from_data([p.k, p.n], p.b),
                crate::Layout::WnkT => NdTensorView::from_data([p.n, p.k], p.b).transposed(),
            };
            RTEN.with(|e| e.gemm(c, GemmInputA::Unpacked(a), GemmInputB::Unpacked(b), GemmOptions::default()))
                .expect("rten gemm");
        }),
    ));
    v
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let o = parse_args();
    let mut json: Box<dyn Write> = match &o.json {
        Some(path) => Box::new(std::fs::File::create(path).expect("create --json file")),
        None => Box::new(std::io::sink()),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pools: Vec<(usize, rayon::ThreadPool)> = o
        .threads
        .iter()
        .map(|&t| (t, rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()))
        .collect();

    // FMA peak per ISA path and thread count: every thread of the pool runs independent FMA
    // chains at once (the two vCPUs of a small VM may be one core's two hyperthreads).
    let isas: Vec<Isa> = Isa::available_paths().into_iter().filter(|i| *i != Isa::Portable).collect();
    println!("# CPU: {} ({cores} logical CPUs); paths: {:?}", cpu_model(), Isa::available_paths());
    writeln!(json, "{}", serde_json::json!({"kind": "machine", "cpu": cpu_model(), "logical_cpus": cores,
        "paths": Isa::available_paths().iter().map(|i| i.name()).collect::<Vec<_>>()})).unwrap();
    let mut peak = std::collections::BTreeMap::new();
    for (t, pool) in &pools {
        for &isa in &isas {
            let g: f64 = pool.broadcast(|_| glassbox_kernels::gemm::fma_peak_gflops(isa)).iter().sum();
            println!("# FMA peak {isa:>7}, {t} thread(s): {g:7.1} GFLOP/s");
            writeln!(json, "{}", serde_json::json!({"kind": "peak", "isa": isa.name(), "threads": t, "gflops": g})).unwrap();
            let e = peak.entry(*t).or_insert(0f64);
            *e = e.max(g);
        }
    }
    println!("# of_peak = GFLOP/s / the best FMA peak at that thread count; err = max|c - ref| / max|ref| vs f64");
    println!();
    println!("| shape m×k×n | B layout | thr | implementation | ms (median) | GFLOP/s | of peak | max rel err |");
    println!("| --- | --- | --- | --- | ---: | ---: | ---: | ---: |");

    let impls = implementations();
    for &(m, k, n) in &o.shapes {
        let a = fill(m * k, 1);
        let b_kn = fill(k * n, 2);
        let mut w = vec![0f32; n * k];
        for p in 0..k {
            for j in 0..n {
                w[j * k + p] = b_kn[p * n + j];
            }
        }
        let r = reference(&a, &b_kn, m, k, n);
        let flops = 2.0 * (m * k * n) as f64;
        let mut c = vec![0f32; m * n];
        for layout in [Layout::WnkT, Layout::Kn] {
            for (t, pool) in &pools {
                let prob = Problem { m, k, n, a: &a, b: if layout == Layout::Kn { &b_kn } else { &w }, layout, threads: *t };
                for (name, f) in &impls {
                    if let Some(only) = &o.only {
                        if !only.iter().any(|s| name.starts_with(s.as_str())) {
                            continue;
                        }
                    }
                    c.fill(f32::NAN);
                    pool.install(|| f(&prob, &mut c));
                    let err = max_rel_err(&c, &r);
                    // The timing loop runs inside the pool, so no cross-thread hand-off is timed.
                    let mut times = pool.install(|| {
                        let mut times = Vec::new();
                        let start = Instant::now();
                        while times.len() < o.reps && (times.len() < 3 || start.elapsed().as_secs_f64() < o.budget_s) {
                            let t0 = Instant::now();
                            f(&prob, &mut c);
                            times.push(t0.elapsed().as_secs_f64());
                        }
                        times
                    });
                    times.sort_by(f64::total_cmp);
                    let med = times[times.len() / 2];
                    let gflops = flops / med / 1e9;
                    let pk = peak.get(t).copied().unwrap_or(f64::NAN);
                    println!(
                        "| {m}×{k}×{n} | {} | {t} | {name} | {:.4} | {gflops:.1} | {:.0}% | {err:.1e} |",
                        layout.name(),
                        med * 1e3,
                        100.0 * gflops / pk
                    );
                    writeln!(json, "{}", serde_json::json!({"kind": "gemm", "impl": name, "m": m, "k": k, "n": n,
                        "b_layout": layout.name(), "threads": t, "reps": times.len(), "ms": med * 1e3,
                        "gflops": gflops, "peak_gflops": pk, "of_peak": gflops / pk, "max_rel_err": err})).unwrap();
                    std::io::stdout().flush().ok();
                }
            }
        }
    }
}
