use super::activations::{quantize_q8, quantize_q8k};
use super::*;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
        })
        .collect()
}

/// Q8_0 as ggml-cpu's x86 `quantize_row_q8_0`: d = max/127 rounded to f16, q = x·127/max
/// rounded half to even.
#[test]
fn q8_0_activations_round_as_ggml_cpu() {
    // max |x| = 127: the scale is 1, so x·127/max is x itself and ties are visible.
    let mut x: Vec<f32> = (0..32).map(|j| (j as f32 - 16.0) * 7.7).collect();
    x[0] = -127.0;
    x[5] = 31.5;
    x[6] = 30.5;
    let mut out = Vec::new();
    quantize_q8(&x, true, &mut out);
    let b = &out[0];
    assert_eq!(b.d, half::f16::from_f32(1.0).to_f32());
    assert_eq!(b.q[0], -127);
    assert_eq!(b.q[31], (15.0f32 * 7.7).round() as i8);
    // Ties go to even (roundf would give 31 for 30.5).
    assert_eq!((b.q[5], b.q[6]), (32, 30));
    let sum: i32 = b.q.iter().map(|&q| q as i32).sum();
    assert_eq!(b.s, half::f16::from_f32(sum as f32).to_f32());
    // All zeros: d = 0, q = 0.
    out.clear();
    quantize_q8(&[0.0; 32], false, &mut out);
    assert_eq!((out[0].d, out[0].q), (0.0, [0; 32]));
}

/// Q8_K as ggml's reference: the element of largest magnitude maps to −127, d = its
/// reciprocal scale, bsums the sums of each 16.
#[test]
fn q8_k_activations_follow_the_reference() {
    let x = values(256, 3);
    let mut out = Vec::new();
    quantize_q8k(&x, &mut out);
    let b = &out[0];
    let (imax, max) =
        x.iter().enumerate().fold(
            (0, 0f32),
            |(i, m), (j, &v)| if v.abs() > m.abs() { (j, v) } else { (i, m) },
        );
    assert_eq!(b.q[imax], -127);
    assert_eq!(b.d, 1.0 / (-127.0 / max));
    for g in 0..16 {
        assert_eq!(
            b.bsums[g] as i32,
            b.q[16 * g..16 * g + 16]
                .iter()
                .map(|&q| q as i32)
                .sum::<i32>()
        );
    }
    for (j, &v) in x.iter().enumerate() {
        assert!((b.q[j] as f32 * b.d - v).abs() <= b.d.abs() * 0.5 + 1e-6);
    }
}

/// The integer dot product of every format equals the float dot product of the values it
/// decodes on both sides (exact integers; only the scales round), so the weight decoding of
/// the dot products and of dequantization agree.
#[test]
fn integer_dots_equal_the_dot_of_the_decoded_values() {
    for format in BlockFormat::ALL {
        let k = 512;
        let w = sample_matrix(format, 3, k, 7);
        let w = QuantMatrix::new(format, &w, 3, k).unwrap();
        let x = values(2 * k, 11);
        let mut y = vec![0f32; 2 * 3];
        quantized_matmul(&x, 2, &w, None, QuantNumerics::LlamaCpp, &mut y);
        // The activations as ggml quantized them, decoded.
        let xq: Vec<f32> = match quantize_activations(format, &x, 2, k) {
            Acts::Q8(a) => a.iter().flat_map(|b| b.q.map(|q| q as f32 * b.d)).collect(),
            Acts::Q8K(a) => a.iter().flat_map(|b| b.q.map(|q| q as f32 * b.d)).collect(),
        };
        for i in 0..2 {
            for j in 0..3 {
                let mut wr = vec![0f32; k];
                dequantize_row(format, w.row(j), &mut wr);
                let exact: f64 = (0..k).map(|p| wr[p] as f64 * xq[i * k + p] as f64).sum();
                let scale: f64 = (0..k)
                    .map(|p| (wr[p] as f64 * xq[i * k + p] as f64).abs())
                    .sum();
                let got = y[i * 3 + j] as f64;
                assert!(
                    (got - exact).abs() <= 1e-5 * scale.max(1e-3),
                    "{format:?} ({i}, {j}): {got} vs {exact}"
                );
            }
        }
    }
}

/// Under f32 numerics the product is the GEMM of the dequantized matrix, bit for bit, and a
/// row map selects rows.
#[test]
fn f32_numerics_is_the_product_with_the_dequantized_weight() {
    for format in [BlockFormat::Q4_0, BlockFormat::Q6K] {
        let (n, k) = (300, 256);
        let data = sample_matrix(format, n, k, 5);
        let w = QuantMatrix::new(format, &data, n, k).unwrap();
        let mut dense = vec![0f32; n * k];
        w.dequantize_rows(0..n, &mut dense);
        for m in [1, 3, 9] {
            let x = values(m * k, m as u64);
            let mut y = vec![0f32; m * n];
            quantized_matmul(&x, m, &w, None, QuantNumerics::F32, &mut y);
            let b = MatRef {
                data: &dense,
                rows: k,
                cols: n,
                row_stride: 1,
                col_stride: k,
            };
            let mut expected = vec![0f32; m * n];
            gemm(MatRef::row_major(&x, m, k), b, &mut expected, false);
            assert_eq!(
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{format:?} m = {m}"
            );
            let map: Vec<u32> = (0..n as u32).rev().step_by(7).collect();
            for numerics in [QuantNumerics::F32, QuantNumerics::LlamaCpp] {
                let mut all = vec![0f32; m * n];
                quantized_matmul(&x, m, &w, None, numerics, &mut all);
                let mut some = vec![0f32; m * map.len()];
                quantized_matmul(&x, m, &w, Some(&map), numerics, &mut some);
                for i in 0..m {
                    for (jj, &j) in map.iter().enumerate() {
                        assert_eq!(some[i * map.len() + jj], all[i * n + j as usize]);
                    }
                }
            }
        }
    }
}

#[test]
fn malformed_matrices_are_refused() {
    assert!(QuantMatrix::new(BlockFormat::Q4K, &[0; 144], 1, 128).is_err());
    assert!(QuantMatrix::new(BlockFormat::Q8_0, &[0; 33], 1, 32).is_err());
    assert!(QuantMatrix::new(BlockFormat::Q8_0, &[0; 68], 1, 64).is_ok());
    assert!(QuantMatrix::new(BlockFormat::Q8_0, &[0; 34], usize::MAX, 32).is_err());
}

/// Each quantizer's blocks decode back close to their input: within half a quantization step
/// of the block's range (plus the f16 rounding of the scales) for the reference searches, a
/// few steps for the weighted ones; zeros stay zeros. (Byte equality with llama.cpp's own
/// quantizer is tested in glassbox-formats on llama.cpp-made files.)
#[test]
fn quantized_rows_decode_close_to_their_input() {
    let formats = [
        (BlockFormat::Q8_0, 127.0),
        (BlockFormat::Q4_0, 7.0),
        (BlockFormat::Q4_1, 15.0),
        (BlockFormat::Q5_0, 15.0),
        (BlockFormat::Q5_1, 31.0),
        (BlockFormat::Q4K, 15.0),
        (BlockFormat::Q5K, 31.0),
        (BlockFormat::Q6K, 31.0),
    ];
    let x = values(1024, 7);
    let weights: Vec<f32> = values(1024, 8).iter().map(|v| v.abs() + 0.1).collect();
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (format, levels) in formats {
        assert!(encode::can_encode(format));
        let bytes = x.len() / format.block_elements() * format.block_bytes();
        for importance in [None, Some(weights.as_slice())] {
            let mut q = vec![0u8; bytes];
            encode::quantize_row(format, &x, importance, &mut q);
            let mut back = vec![0f32; x.len()];
            dequantize_row(format, &q, &mut back);
            let worst = x
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            // a K-quant's six-bit sub-block scales cost up to another step
            let bound = 2.0 * max / levels
                * if importance.is_some() || format.is_k_quant() {
                    2.0
                } else {
                    1.0
                };
            assert!(
                worst <= bound,
                "{} (importance {}): error {worst} > {bound}",
                format.name(),
                importance.is_some()
            );
        }
        let mut q = vec![0u8; bytes];
        encode::quantize_row(format, &vec![0.0; x.len()], None, &mut q);
        let mut back = vec![1f32; x.len()];
        dequantize_row(format, &q, &mut back);
        assert!(back.iter().all(|&v| v == 0.0), "{}: zeros", format.name());
    }
    assert!(!encode::can_encode(BlockFormat::Q2K));
}

/// The AVX2 activation quantizer writes the portable one's blocks (scale, rounding ties to
/// even, saturation, the sums), on random rows, rows with exact ties and an all-zero block.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_q8_activations_equal_the_portable_ones() {
    if !(is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c"))
    {
        eprintln!("no AVX2 here: the x86 quantizer cannot run");
        return;
    }
    let mut x = values(32 * 64, 5);
    // Max 127: the scale is 1 and halves are ties.
    for (j, v) in x[..32].iter_mut().enumerate() {
        *v = j as f32 - 15.5;
    }
    x[0] = 127.0;
    x[32..64].fill(0.0);
    for with_sum in [false, true] {
        let (mut portable, mut simd) = (Vec::new(), Vec::new());
        quantize_q8(&x, with_sum, &mut portable);
        unsafe { super::x86::quantize_q8(&x, with_sum, &mut simd) };
        assert_eq!(portable.len(), simd.len());
        for (i, (p, s)) in portable.iter().zip(&simd).enumerate() {
            assert_eq!(
                (p.d.to_bits(), p.s.to_bits(), p.q, p.minus_lanes8),
                (s.d.to_bits(), s.s.to_bits(), s.q, s.minus_lanes8),
                "block {i}, with_sum {with_sum}"
            );
        }
    }
}
