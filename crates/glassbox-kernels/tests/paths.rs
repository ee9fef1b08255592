//! The determinism contract, checked on this machine: every instruction-set path this CPU can
//! run gives the portable path's bits, for 1, 2 and 3 threads; and the portable path is
//! accurate against f64.

use glassbox_kernels::rows::{self, Activation, NormKind};
use glassbox_kernels::{
    gemm, gemm_batched, gemm_batched_new, gemm_few_rows_chained, gemm_reference, math, transposed,
    with_isa, Element, Isa, MatRef, FEW_ROWS,
};
use half::{bf16, f16};

/// A seeded stream of values in [-2, 2) with a few exact zeros and large magnitudes mixed in.
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            match i % 97 {
                0 => 0.0,
                1 => (u - 0.5) * 60.0,
                _ => u * 4.0 - 2.0,
            }
        })
        .collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Runs `f` on every available path × {1, 2, 3} threads and checks all results equal the
/// portable single-threaded one bit for bit. Returns the paths checked.
fn same_bits_everywhere<T: PartialEq + std::fmt::Debug + Send>(
    what: &str,
    f: impl Fn() -> T + Sync,
) -> Vec<Isa> {
    let reference = pool(1).install(|| with_isa(Isa::Portable, &f));
    let paths = Isa::available_paths();
    for &isa in &paths {
        for threads in [1, 2, 3] {
            let got = pool(threads).install(|| with_isa(isa, &f));
            assert!(
                got == reference,
                "{what}: {isa} with {threads} threads differs from portable"
            );
        }
    }
    paths
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn this_machine_checks_a_simd_path() {
    // On x86-64 CI machines (AVX2 or AVX-512) at least one SIMD path must be under test.
    #[cfg(target_arch = "x86_64")]
    assert!(
        Isa::Avx2.available(),
        "x86-64 test machines have AVX2 + FMA"
    );
    println!("paths under test: {:?}", Isa::available_paths());
}

#[test]
fn gemm_matches_the_reference_on_every_path_shape_and_layout() {
    // Shapes around every blocking edge: micro-tile rows and columns, KC = NC = 512, tails; the
    // few-row kernels (m ≤ 4) with k around the 16 lanes and the 64-row chunks, n over several
    // threaded tasks.
    let shapes = [
        (1, 1, 1),
        (1, 300, 70),
        (2, 700, 600),
        (3, 47, 300),
        (4, 16, 16),
        (4, 15, 1030),
        // The few-row chains over k in chunks of 64 rows: exactly one chunk, one row past it,
        // and chunks too few to go round the threads (columns split too).
        (1, 64, 40),
        (3, 129, 200),
        (7, 33, 17),
        (9, 257, 41),
        (64, 64, 64),
        (13, 520, 100),
        (130, 96, 33),
        (40, 600, 530),
        // k past the transposed formulation's one block (2048): two blocks of 1050; and more
        // rows than one packed block of B' holds at k = 1500.
        (20, 2100, 70),
        (300, 1500, 40),
    ];
    for (si, &(m, k, n)) in shapes.iter().enumerate() {
        let a = values(si as u64 * 2 + 1, m * k);
        let b = values(si as u64 * 2 + 2, k * n);
        let c0 = values(si as u64 + 99, m * n);
        // A row-major or transposed storage; B row-major or stored [n, k] (a linear layer).
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        for accumulate in [false, true] {
            let layouts: [(MatRef<f32>, MatRef<f32>); 4] = [
                (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n)),
                (
                    MatRef::row_major(&a, m, k),
                    MatRef::row_major(&bt, n, k).t(),
                ),
                (
                    MatRef::row_major(&at, k, m).t(),
                    MatRef::row_major(&b, k, n),
                ),
                (
                    MatRef::row_major(&at, k, m).t(),
                    MatRef::row_major(&bt, n, k).t(),
                ),
            ];
            for (li, (am, bm)) in layouts.into_iter().enumerate() {
                let mut expected = c0.clone();
                gemm_reference(am, bm, &mut expected, accumulate);
                let paths = same_bits_everywhere(&format!("gemm {m}x{k}x{n} layout {li}"), || {
                    let mut c = c0.clone();
                    gemm(am, bm, &mut c, accumulate);
                    bits(&c)
                });
                // …and the common result is the reference's.
                let mut c = c0.clone();
                with_isa(*paths.last().unwrap(), || gemm(am, bm, &mut c, accumulate));
                assert_eq!(
                    bits(&c),
                    bits(&expected),
                    "gemm {m}x{k}x{n} layout {li} vs reference"
                );
            }
        }
    }
}

#[test]
fn a_transposed_copy_is_exact_and_multiplies_to_the_same_bits() {
    // Around the 8×8 register blocks and the 64×64 tiles, and thin in either direction.
    for (si, &(rows, cols)) in [
        (1, 1),
        (3, 5),
        (8, 8),
        (64, 64),
        (65, 130),
        (200, 77),
        (9, 1000),
        (1000, 7),
    ]
    .iter()
    .enumerate()
    {
        let w = values(si as u64 + 500, rows * cols);
        let expected: Vec<f32> = (0..rows * cols)
            .map(|i| w[(i % rows) * cols + i / rows])
            .collect();
        same_bits_everywhere(&format!("transpose {rows}x{cols}"), || {
            let t = transposed(&w, rows, cols);
            assert_eq!(bits(&t), bits(&expected), "transpose {rows}x{cols}");
            bits(&t)
        });
    }
    // A weight stored [in, out] and its copy stored [out, in], used transposed: the same
    // product bits for more than FEW_ROWS rows (one FMA chain per element either way).
    let (m, k, n) = (FEW_ROWS + 1, 300, 90);
    let x = values(600, m * k);
    let w = values(601, k * n);
    let wt = transposed(&w, k, n);
    let mut packed = vec![0.0; m * n];
    gemm(
        MatRef::row_major(&x, m, k),
        MatRef::row_major(&w, k, n),
        &mut packed,
        false,
    );
    let mut in_place = vec![0.0; m * n];
    gemm(
        MatRef::row_major(&x, m, k),
        MatRef::row_major(&wt, n, k).t(),
        &mut in_place,
        false,
    );
    assert_eq!(bits(&packed), bits(&in_place));
}

#[test]
fn few_row_products_read_from_a_transposed_copy_keep_the_stored_layouts_bits() {
    // A weight stored [k, n] (GPT-2's Conv1D) is multiplied by a few rows in chains over
    // 64-row chunks of k; held as its [n, k] copy it must give those bits, on every path and
    // thread count. Shapes around the 64-row chunks, the 64-column blocks and 16-column
    // groups, and GPT-2's (its MLP's long copy rows too).
    for (si, &(m, k, n)) in [
        (1, 1, 1),
        (1, 64, 64),
        (2, 65, 7),
        (3, 130, 200),
        (4, 63, 129),
        (1, 300, 1000),
        (2, 197, 77),
        (4, 768, 2304),
        (1, 3072, 768),
    ]
    .iter()
    .enumerate()
    {
        let x = values(si as u64 + 700, m * k);
        let w = values(si as u64 + 800, k * n);
        let copy = transposed(&w, k, n);
        let mut stored = vec![0.0; m * n];
        gemm(
            MatRef::row_major(&x, m, k),
            MatRef::row_major(&w, k, n),
            &mut stored,
            false,
        );
        let mut reference = vec![0.0; m * n];
        gemm_reference(
            MatRef::row_major(&x, m, k),
            MatRef::row_major(&w, k, n),
            &mut reference,
            false,
        );
        assert_eq!(bits(&stored), bits(&reference), "{m}x{k}x{n} stored");
        same_bits_everywhere(&format!("{m}x{k}x{n} from the copy"), || {
            let mut c = vec![f32::NAN; m * n];
            let b = MatRef::row_major(&copy, n, k).t();
            gemm_few_rows_chained(MatRef::row_major(&x, m, k), b, &mut c);
            assert_eq!(bits(&c), bits(&stored), "{m}x{k}x{n} from the copy");
            bits(&c)
        });
    }
}

#[test]
fn half_precision_weights_are_widened_exactly() {
    let (m, k, n) = (5, 70, 40);
    let a = values(7, m * k);
    let w = values(8, n * k);
    let w16: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
    let wb: Vec<bf16> = w.iter().map(|&x| bf16::from_f32(x)).collect();
    let w16_as_f32: Vec<f32> = w16.iter().map(|x| x.to_f32()).collect();
    let wb_as_f32: Vec<f32> = wb.iter().map(|x| x.to_f32()).collect();
    let am = MatRef::row_major(&a, m, k);
    let mut expected = vec![0.0; m * n];
    gemm_reference(
        am,
        MatRef::row_major(&w16_as_f32, n, k).t(),
        &mut expected,
        false,
    );
    same_bits_everywhere("f16 weights", || {
        let mut c = vec![0.0; m * n];
        gemm(am, MatRef::row_major(&w16, n, k).t(), &mut c, false);
        assert_eq!(bits(&c), bits(&expected));
        // The half operand on the left (a transposed product) too.
        let mut ct = vec![0.0; n * m];
        gemm(MatRef::row_major(&w16, n, k), am.t(), &mut ct, false);
        bits(&c)
    });
    // Stored [k, n] (row-major B, packed row by row) with enough rows to take the packed path.
    let (m2, k2, n2) = (20, 70, 45);
    let a2 = values(9, m2 * k2);
    let w2 = values(10, k2 * n2);
    let w2_16: Vec<f16> = w2.iter().map(|&x| f16::from_f32(x)).collect();
    let w2_as_f32: Vec<f32> = w2_16.iter().map(|x| x.to_f32()).collect();
    let a2m = MatRef::row_major(&a2, m2, k2);
    let mut expected2 = vec![0.0; m2 * n2];
    gemm_reference(
        a2m,
        MatRef::row_major(&w2_as_f32, k2, n2),
        &mut expected2,
        false,
    );
    same_bits_everywhere("f16 weights stored [k, n]", || {
        let mut c = vec![0.0; m2 * n2];
        gemm(a2m, MatRef::row_major(&w2_16, k2, n2), &mut c, false);
        assert_eq!(bits(&c), bits(&expected2));
        bits(&c)
    });
    gemm_reference(
        am,
        MatRef::row_major(&wb_as_f32, n, k).t(),
        &mut expected,
        false,
    );
    same_bits_everywhere("bf16 weights", || {
        let mut c = vec![0.0; m * n];
        gemm(am, MatRef::row_major(&wb, n, k).t(), &mut c, false);
        assert_eq!(bits(&c), bits(&expected));
        bits(&c)
    });
    // Stored [n, k] with enough rows of A that B' = Wᵀ is packed (its columns transposed 8 at a
    // time after widening, the last 5 one by one), k with a tail past the 8×8 blocks.
    let (m3, k3, n3) = (64, 70, 45);
    let a3 = values(11, m3 * k3);
    let w3 = values(12, n3 * k3);
    let a3m = MatRef::row_major(&a3, m3, k3);
    let w3_16: Vec<f16> = w3.iter().map(|&x| f16::from_f32(x)).collect();
    let w3_b: Vec<bf16> = w3.iter().map(|&x| bf16::from_f32(x)).collect();
    for (name, widened, product) in [
        (
            "f16 weights, packed",
            w3_16.iter().map(|x| x.to_f32()).collect::<Vec<f32>>(),
            Box::new(|c: &mut [f32]| gemm(a3m, MatRef::row_major(&w3_16, n3, k3).t(), c, false))
                as Box<dyn Fn(&mut [f32]) + Sync>,
        ),
        (
            "bf16 weights, packed",
            w3_b.iter().map(|x| x.to_f32()).collect(),
            Box::new(|c: &mut [f32]| gemm(a3m, MatRef::row_major(&w3_b, n3, k3).t(), c, false)),
        ),
    ] {
        let mut expected3 = vec![0.0; m3 * n3];
        gemm_reference(
            a3m,
            MatRef::row_major(&widened, n3, k3).t(),
            &mut expected3,
            false,
        );
        same_bits_everywhere(name, || {
            let mut c = vec![0.0; m3 * n3];
            product(&mut c);
            assert_eq!(bits(&c), bits(&expected3), "{name}");
            bits(&c)
        });
    }
}

#[test]
fn half_precision_weights_stream_exactly_in_few_row_products() {
    // m ≤ 4 (decoding): the weight is widened as it streams, in both layouts, with k and n past
    // one widened block (4096 floats) and past one 64-row chunk, and with tails.
    for (si, &(m, k, n)) in [(1, 70, 300), (3, 4100, 20), (4, 130, 5000), (2, 17, 9)]
        .iter()
        .enumerate()
    {
        let a = values(40 + si as u64, m * k);
        let w = values(50 + si as u64, n * k);
        let c0 = values(60 + si as u64, m * n);
        let am = MatRef::row_major(&a, m, k);
        let w16: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
        let wb: Vec<bf16> = w.iter().map(|&x| bf16::from_f32(x)).collect();
        let w16_f32: Vec<f32> = w16.iter().map(|x| x.to_f32()).collect();
        let wb_f32: Vec<f32> = wb.iter().map(|x| x.to_f32()).collect();
        for accumulate in [false, true] {
            for transposed in [true, false] {
                // Stored [n, k] and used transposed (a linear layer), or stored [k, n].
                let (rows, cols) = if transposed { (n, k) } else { (k, n) };
                let reference = |widened: &[f32]| {
                    let b = MatRef::row_major(widened, rows, cols);
                    let mut want = c0.clone();
                    gemm_reference(
                        am,
                        if transposed { b.t() } else { b },
                        &mut want,
                        accumulate,
                    );
                    want
                };
                let name = format!("{m}x{k}x{n} transposed {transposed} accumulate {accumulate}");
                let product = Product {
                    a: am,
                    rows,
                    cols,
                    transposed,
                    c0: &c0,
                    accumulate,
                };
                product.check(&format!("f16 {name}"), &w16, &reference(&w16_f32));
                product.check(&format!("bf16 {name}"), &wb, &reference(&wb_f32));
            }
        }
    }
}

/// A few-row product against a weight stored [rows, cols] (used transposed or not).
struct Product<'a> {
    a: MatRef<'a, f32>,
    rows: usize,
    cols: usize,
    transposed: bool,
    c0: &'a [f32],
    accumulate: bool,
}

impl Product<'_> {
    /// `gemm` with weight `w` gives `want`'s bits on every path and thread count.
    fn check<T: Element>(&self, name: &str, w: &[T], want: &[f32]) {
        same_bits_everywhere(name, || {
            let mut c = self.c0.to_vec();
            let b = MatRef::row_major(w, self.rows, self.cols);
            let b = if self.transposed { b.t() } else { b };
            gemm(self.a, b, &mut c, self.accumulate);
            assert_eq!(bits(&c), bits(want), "{name}");
            bits(&c)
        });
    }
}

#[test]
fn batched_gemm_matches_per_item_reference() {
    // Attention's shape: [heads, t, d] · [heads, d, t], plus a broadcast B.
    let (batch, m, k, n) = (6, 19, 16, 23);
    let a = values(11, batch * m * k);
    let b = values(12, batch * k * n);
    for b_stride in [k * n, 0] {
        let mut expected = vec![0.0; batch * m * n];
        for i in 0..batch {
            gemm_reference(
                MatRef::row_major(&a[i * m * k..], m, k),
                MatRef::row_major(&b[i * b_stride..], k, n),
                &mut expected[i * m * n..(i + 1) * m * n],
                false,
            );
        }
        same_bits_everywhere("batched gemm", || {
            let mut c = vec![0.0; batch * m * n];
            gemm_batched(
                batch,
                MatRef::row_major(&a, m, k),
                m * k,
                MatRef::row_major(&b, k, n),
                b_stride,
                &mut c,
                false,
            );
            assert_eq!(bits(&c), bits(&expected));
            bits(&c)
        });
    }
}

#[test]
fn row_kernels_agree_on_every_path() {
    for &n in &[1usize, 5, 16, 33, 64, 100, 1000] {
        let rows = 7;
        let x = values(n as u64, rows * n);
        let dy = values(n as u64 + 1000, rows * n);
        same_bits_everywhere(&format!("softmax n={n}"), || {
            let mut y = x.clone();
            rows::softmax(&mut y, n);
            let mut dx = vec![0.0; y.len()];
            rows::softmax_backward(&y, &dy, &mut dx, n);
            (bits(&y), bits(&dx))
        });
        for kind in [NormKind::Layer, NormKind::Rms] {
            same_bits_everywhere(&format!("{kind:?} n={n}"), || {
                let mut y = vec![0.0; x.len()];
                rows::normalize(kind, &x, &mut y, n, 1e-5);
                let mut dx = vec![0.0; x.len()];
                rows::normalize_backward(kind, &x, &dy, &mut dx, n, 1e-5);
                (bits(&y), bits(&dx))
            });
        }
        for act in [
            Activation::GeluTanh,
            Activation::GeluErf,
            Activation::Silu,
            Activation::Tanh,
        ] {
            same_bits_everywhere(&format!("{act:?} n={n}"), || {
                let mut y = x.clone();
                rows::activation(act, &mut y);
                let mut dx = x.clone();
                rows::activation_backward(act, &mut dx, &dy);
                (bits(&y), bits(&dx))
            });
        }
        let targets: Vec<u32> = (0..rows as u32).map(|r| (r * 7) % n as u32).collect();
        same_bits_everywhere(&format!("cross-entropy n={n}"), || {
            let loss = rows::cross_entropy(&x, n, &targets);
            let mut dx = vec![0.0; x.len()];
            rows::cross_entropy_backward(&x, n, &targets, &dy[..rows], &mut dx);
            (bits(&loss), bits(&dx))
        });
    }
    // Large enough to be split across threads.
    let (rows_n, n) = (300, 333);
    let x = values(5, rows_n * n);
    same_bits_everywhere("large softmax", || {
        let mut y = x.clone();
        rows::softmax(&mut y, n);
        bits(&y)
    });
    same_bits_everywhere("large gelu", || {
        let mut y = x.clone();
        rows::activation(Activation::GeluTanh, &mut y);
        bits(&y)
    });
}

#[test]
fn transcendentals_agree_on_every_path_and_are_accurate() {
    let mut xs = values(3, 5000);
    xs.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        88.7,
        88.8,
        -87.3,
        -103.0,
        -104.5,
        -200.0,
        200.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN,
        f32::MAX,
        20.0,
        -20.0,
    ]);
    for (name, f) in [
        ("exp", math::exp_in_place as fn(Isa, &mut [f32])),
        ("tanh", math::tanh_in_place),
        ("erf", math::erf_in_place),
    ] {
        same_bits_everywhere(name, || {
            let mut y = xs.clone();
            f(Isa::active(), &mut y);
            bits(&y)
        });
    }
    for &x in &xs {
        let xd = x as f64;
        let e = math::exp(x) as f64;
        let want = xd.exp();
        if want.is_finite() && want > 1.2e-38 && want < f32::MAX as f64 {
            assert!(
                ((e - want) / want).abs() < 3e-7,
                "exp({x}) = {e}, want {want}"
            );
        } else if x.is_nan() {
            assert!(e.is_nan());
        } else if want >= f32::MAX as f64 {
            assert_eq!(e, f64::INFINITY, "exp({x})");
        } else {
            assert!(e < 1.2e-38, "exp({x}) = {e}");
        }
        if x.is_finite() {
            assert!((math::tanh(x) as f64 - xd.tanh()).abs() < 2e-7, "tanh({x})");
            let erf_ref = erf_f64(xd);
            assert!(
                (math::erf(x) as f64 - erf_ref).abs() < 3e-7,
                "erf({x}) = {} want {erf_ref}",
                math::erf(x)
            );
        }
        if x > 0.0 && x.is_finite() {
            let l = math::ln(x) as f64;
            assert!(
                (l - xd.ln()).abs() <= 2e-7 * xd.ln().abs().max(1.0),
                "ln({x}) = {l}"
            );
        }
    }
    assert_eq!(math::exp(0.0), 1.0);
    assert_eq!(math::ln(1.0), 0.0);
    assert!(math::ln(-1.0).is_nan() && math::ln(0.0) == f32::NEG_INFINITY);
}

/// erf in f64 by its Maclaurin series (|x| < 3) or continued fraction tail (slow, exact enough).
fn erf_f64(x: f64) -> f64 {
    if x.abs() > 6.0 {
        return x.signum();
    }
    // Series: erf x = 2/√π Σ (−1)^n x^{2n+1} / (n! (2n+1)), summed until negligible.
    let mut sum = 0.0;
    let mut term = x;
    let mut n = 0.0;
    while n < 200.0 {
        let t = term / (2.0 * n + 1.0);
        sum += t;
        if t.abs() < 1e-17 * sum.abs().max(1e-300) {
            break;
        }
        n += 1.0;
        term *= -x * x / n;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn row_kernels_are_accurate_against_f64() {
    let n = 50;
    let x = values(77, 4 * n);
    let mut y = x.clone();
    rows::softmax(&mut y, n);
    for (xr, yr) in x.chunks(n).zip(y.chunks(n)) {
        let m = xr.iter().fold(f64::MIN, |a, &b| a.max(b as f64));
        let s: f64 = xr.iter().map(|&v| (v as f64 - m).exp()).sum();
        for (&xv, &yv) in xr.iter().zip(yr) {
            assert!((((xv as f64 - m).exp() / s) - yv as f64).abs() < 1e-6);
        }
    }
    let mut ln = vec![0.0; x.len()];
    rows::normalize(NormKind::Layer, &x, &mut ln, n, 1e-5);
    for (xr, yr) in x.chunks(n).zip(ln.chunks(n)) {
        let mean: f64 = xr.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var: f64 = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        for (&xv, &yv) in xr.iter().zip(yr) {
            assert!(((xv as f64 - mean) / (var + 1e-5).sqrt() - yv as f64).abs() < 1e-5);
        }
    }
    let mut g = x.clone();
    rows::activation(Activation::GeluErf, &mut g);
    for (&xv, &gv) in x.iter().zip(&g) {
        let want = 0.5 * xv as f64 * (1.0 + erf_f64(xv as f64 / 2f64.sqrt()));
        assert!(
            (want - gv as f64).abs() < 1e-5 * (1.0 + want.abs()),
            "gelu({xv})"
        );
    }
    // Backward by central differences in f64 of the forward definitions.
    let mut dx = x.clone();
    let ones = vec![1.0; x.len()];
    rows::activation_backward(Activation::Silu, &mut dx, &ones);
    for (&xv, &d) in x.iter().zip(&dx) {
        let f = |v: f64| v / (1.0 + (-v).exp());
        let h = 1e-5;
        let want = (f(xv as f64 + h) - f(xv as f64 - h)) / (2.0 * h);
        assert!(
            (want - d as f64).abs() < 1e-4,
            "silu'({xv}) = {d}, want {want}"
        );
    }
}

/// Rotary embedding: the same bits on every path and thread count, each pair turned as the
/// element-wise composition turns it (products rounded before the sum), rows at their
/// positions, pass-through dimensions copied.
#[test]
fn rotary_agrees_on_every_path_and_is_the_composition() {
    use rows::{RotaryPairs, RotaryTables};
    let (batch, positions, heads, d, half) = (3, 40, 5, 20, 8);
    let x = values(31, batch * positions * heads * d);
    let cos: Vec<f32> = values(32, positions * half);
    let sin: Vec<f32> = values(33, positions * half);
    let tables = RotaryTables {
        cos: &cos,
        sin: &sin,
        half,
        heads,
        positions,
    };
    for pairs in [RotaryPairs::Halves, RotaryPairs::Adjacent] {
        let y = same_bits_everywhere(&format!("rotary {pairs:?}"), || {
            let mut y = vec![0.0; x.len()];
            rows::rotary(pairs, tables, false, &x, &mut y, d);
            bits(&y)
        });
        assert!(!y.is_empty());
        let mut y = vec![0.0; x.len()];
        rows::rotary(pairs, tables, false, &x, &mut y, d);
        for (r, (xr, yr)) in x.chunks(d).zip(y.chunks(d)).enumerate() {
            let p = (r / heads) % positions;
            for i in 0..half {
                let (a, b, ya, yb) = match pairs {
                    RotaryPairs::Halves => (xr[i], xr[i + half], yr[i], yr[i + half]),
                    RotaryPairs::Adjacent => (xr[2 * i], xr[2 * i + 1], yr[2 * i], yr[2 * i + 1]),
                };
                let (c, s) = (cos[p * half + i], sin[p * half + i]);
                assert_eq!(ya.to_bits(), (a * c - b * s).to_bits(), "row {r} pair {i}");
                assert_eq!(yb.to_bits(), (b * c + a * s).to_bits(), "row {r} pair {i}");
            }
            assert_eq!(bits(&xr[2 * half..]), bits(&yr[2 * half..]), "pass-through");
        }
    }
}

/// The fused attention softmax (`x · scale + mask`, then softmax, in one pass) and the
/// activation into a new vector give the bits of the steps one after another, on every path
/// and thread count, split across threads or not.
#[test]
fn fused_row_kernels_equal_their_steps() {
    for (rows_n, n) in [(7usize, 33usize), (300, 333)] {
        let x = values(11, rows_n * n);
        // two mask rows, alternating: 0 where allowed, the most negative f32 where not
        let mask: Vec<f32> = (0..2 * n)
            .map(|i| {
                if (i % n) > (i / n) * n / 2 + 3 {
                    f32::MIN
                } else {
                    0.0
                }
            })
            .collect();
        let row_of = |r: usize| r % 2;
        let scale = 0.125f32;
        let steps = {
            let mut y: Vec<f32> = x
                .iter()
                .enumerate()
                .map(|(i, v)| v * scale + mask[row_of(i / n) * n + i % n])
                .collect();
            rows::softmax(&mut y, n);
            bits(&y)
        };
        let paths = same_bits_everywhere(&format!("masked softmax {rows_n}×{n}"), || {
            bits(&rows::softmax_scaled(&x, n, scale, Some((&mask, &row_of))))
        });
        assert!(!paths.is_empty());
        let fused = bits(&rows::softmax_scaled(&x, n, scale, Some((&mask, &row_of))));
        assert_eq!(fused, steps, "{rows_n}×{n}: fused = scale, mask, softmax");
        let mut plain = x.clone();
        rows::softmax(&mut plain, n);
        assert_eq!(bits(&rows::softmax_scaled(&x, n, 1.0, None)), bits(&plain));
        for act in [Activation::GeluTanh, Activation::Silu] {
            let mut y = x.clone();
            rows::activation(act, &mut y);
            same_bits_everywhere(&format!("{act:?} into a new vector"), || {
                bits(&rows::activation_of(act, &x))
            });
            assert_eq!(bits(&rows::activation_of(act, &x)), bits(&y));
        }
    }
}

/// Products with quantized weights: every format, both numerics, decode-sized and
/// prompt-sized activations.
#[test]
fn quantized_products_agree_on_every_path() {
    use glassbox_kernels::quant::{
        quantized_matmul, sample_matrix, BlockFormat, QuantMatrix, QuantNumerics,
    };
    for format in BlockFormat::ALL {
        let (n, k) = (70, 512);
        let data = sample_matrix(format, n, k, 17);
        let w = QuantMatrix::new(format, &data, n, k).unwrap();
        for m in [1, 6] {
            let x = values(m as u64 + 40, m * k);
            for numerics in [QuantNumerics::LlamaCpp, QuantNumerics::F32] {
                same_bits_everywhere(&format!("{} × {m} {numerics:?}", format.name()), || {
                    let mut y = vec![0f32; m * n];
                    quantized_matmul(&x, m, &w, None, numerics, &mut y);
                    bits(&y)
                });
            }
        }
    }
}

/// A product not accumulating writes every element of C and reads none, on every path, so that
/// `gemm_batched_new` may hand out a buffer it never zeroed: a C full of NaN comes out as the
/// reference, whatever the shape (few rows by either layout, k = 0, k split into blocks, a
/// transposed plan, half-precision B).
#[test]
fn a_product_writes_all_of_c_and_reads_none_of_it() {
    let shapes = [
        (1, 7, 5),
        (3, 64, 9),
        (4, 1, 3),
        (19, 0, 23),
        (37, 40, 70),
        (16, 3000, 24),
    ];
    for (m, k, n) in shapes {
        let a = values(21, m * k);
        let w = values(22, k * n);
        let w16: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
        let stored = MatRef::row_major(&w, n, k).t(); // B = Wᵀ, W stored [n, k]
        let rows = MatRef::row_major(&w, k, n); // B stored [k, n]
        for (what, b) in [("Wᵀ", stored), ("[k, n]", rows)] {
            let mut expected = vec![0.0; m * n];
            gemm_reference(MatRef::row_major(&a, m, k), b, &mut expected, false);
            same_bits_everywhere(&format!("{m}×{k}×{n} by {what}"), || {
                let mut c = vec![f32::NAN; m * n];
                gemm_batched(1, MatRef::row_major(&a, m, k), 0, b, 0, &mut c, false);
                assert_eq!(bits(&c), bits(&expected), "{m}×{k}×{n} by {what}");
                let new = gemm_batched_new(1, MatRef::row_major(&a, m, k), 0, b, 0);
                assert_eq!(bits(&new), bits(&expected), "{m}×{k}×{n} by {what}, new");
                bits(&c)
            });
        }
        let b16 = MatRef::row_major(&w16, n, k).t();
        let mut expected = vec![0.0; m * n];
        gemm_reference(MatRef::row_major(&a, m, k), b16, &mut expected, false);
        let mut c = vec![f32::NAN; m * n];
        gemm_batched(1, MatRef::row_major(&a, m, k), 0, b16, 0, &mut c, false);
        assert_eq!(bits(&c), bits(&expected), "{m}×{k}×{n} by f16 Wᵀ");
    }
}
