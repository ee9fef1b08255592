//! Dequantization of ggml block formats (Q4_0 … Q8_K, MXFP4) to f32.
//!
//! The block formats a weight may be stored in are decoded by `glassbox_kernels::quant`, the
//! same decoding its quantized products use; the activation formats (Q8_1, Q8_K) and MXFP4
//! are decoded here. ggml's reference `dequantize_row_*` is followed expression for
//! expression; candle's own decoder (which mirrors it independently) checks that in the tests.

use glassbox_kernels::quant::{dequantize_row, BlockFormat};

use crate::DType;

/// The kernels' block format of a quantized weight dtype.
pub fn block_format(dtype: DType) -> Option<BlockFormat> {
    Some(match dtype {
        DType::Q4_0 => BlockFormat::Q4_0,
        DType::Q4_1 => BlockFormat::Q4_1,
        DType::Q5_0 => BlockFormat::Q5_0,
        DType::Q5_1 => BlockFormat::Q5_1,
        DType::Q8_0 => BlockFormat::Q8_0,
        DType::Q2K => BlockFormat::Q2K,
        DType::Q3K => BlockFormat::Q3K,
        DType::Q4K => BlockFormat::Q4K,
        DType::Q5K => BlockFormat::Q5K,
        DType::Q6K => BlockFormat::Q6K,
        _ => return None,
    })
}

/// Decodes the blocks in `bytes` of a quantized `dtype`; None if `dtype` is not a block format
/// or `bytes` is not a whole number of blocks.
pub fn dequantize(dtype: DType, bytes: &[u8]) -> Option<Vec<f32>> {
    let (block_elems, block_bytes) = dtype.block();
    if block_elems == 1 || !bytes.len().is_multiple_of(block_bytes) {
        return None;
    }
    match dtype {
        // Activation formats of ggml: a scale times int8s, block_q8_1 = {f16 d, f16 sum,
        // i8 q[32]}, block_q8_K = {f32 d, i8 q[256], i16 bsums[16]}.
        DType::Q8_1 => {
            return Some(scaled_int8(bytes, block_bytes, 4, 32, |b| {
                half::f16::from_le_bytes([b[0], b[1]]).to_f32()
            }))
        }
        DType::Q8K => {
            return Some(scaled_int8(bytes, block_bytes, 4, 256, |b| {
                f32::from_le_bytes([b[0], b[1], b[2], b[3]])
            }))
        }
        DType::Mxfp4 => return Some(mxfp4(bytes)),
        _ => {}
    }
    let format = block_format(dtype)?;
    let mut out = vec![0f32; bytes.len() / block_bytes * block_elems];
    dequantize_row(format, bytes, &mut out);
    Some(out)
}

/// Blocks of `scale * int8`: the scale decoded from the block's first bytes, the int8s from
/// `q_at` on.
fn scaled_int8(
    bytes: &[u8],
    block_bytes: usize,
    q_at: usize,
    n: usize,
    scale: impl Fn(&[u8]) -> f32,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / block_bytes * n);
    for block in bytes.chunks_exact(block_bytes) {
        let d = scale(block);
        out.extend(block[q_at..q_at + n].iter().map(|&q| d * q as i8 as f32));
    }
    out
}

/// E2M1 values doubled (ggml's `kvalues_mxfp4`): codes 0–7 positive, 8–15 their negatives.
const MXFP4_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// ggml's `block_mxfp4` = {u8 e (E8M0), u8 qs[16]}: value `j` is the low nibble of `qs[j]`,
/// value `j + 16` its high nibble, each `kvalues[code] · 2^(e − 128)` (half the E8M0 scale,
/// as the values are doubled).
fn mxfp4(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / 17 * 32);
    for block in bytes.chunks_exact(17) {
        let e = block[0];
        // ggml's `ggml_e8m0_to_fp32_half`: exact powers of two, subnormal below e = 2.
        let half_scale = f32::from_bits(if e < 2 {
            0x0020_0000 << e
        } else {
            u32::from(e - 1) << 23
        });
        let qs = &block[1..];
        let mut values = [0f32; 32];
        for (j, &q) in qs.iter().enumerate() {
            values[j] = f32::from(MXFP4_VALUES[usize::from(q & 0x0F)]) * half_scale;
            values[j + 16] = f32::from(MXFP4_VALUES[usize::from(q >> 4)]) * half_scale;
        }
        out.extend_from_slice(&values);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// candle's decoder of each block format (written from ggml's reference independently of
    /// ours) gives the same bits on blocks with every quant pattern.
    #[test]
    fn block_formats_decode_as_candles_decoder_does() {
        use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
        use candle_core::Device;
        for (dtype, ggml) in [
            (DType::Q4_0, GgmlDType::Q4_0),
            (DType::Q4_1, GgmlDType::Q4_1),
            (DType::Q5_0, GgmlDType::Q5_0),
            (DType::Q5_1, GgmlDType::Q5_1),
            (DType::Q8_0, GgmlDType::Q8_0),
            (DType::Q2K, GgmlDType::Q2K),
            (DType::Q3K, GgmlDType::Q3K),
            (DType::Q4K, GgmlDType::Q4K),
            (DType::Q5K, GgmlDType::Q5K),
            (DType::Q6K, GgmlDType::Q6K),
        ] {
            let format = block_format(dtype).unwrap();
            let (rows, cols) = (4, 1024);
            let bytes = glassbox_kernels::quant::sample_matrix(format, rows, cols, 9);
            // candle reads the bytes as block structs: give it an 8-byte-aligned copy.
            let mut aligned = vec![0u64; bytes.len().div_ceil(8)];
            let view = unsafe {
                std::slice::from_raw_parts_mut(aligned.as_mut_ptr() as *mut u8, bytes.len())
            };
            view.copy_from_slice(&bytes);
            let q = qtensor_from_ggml(ggml, view, vec![rows * cols], &Device::Cpu).unwrap();
            let expected = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let ours = dequantize(dtype, &bytes).unwrap();
            let differ = ours
                .iter()
                .zip(&expected)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differ, 0, "{dtype:?}: {differ} values differ from candle's");
        }
    }

    /// E8M0 127 is a scale of 1, so the values are E2M1's own: code 2 is 1.0, code 9 is −0.5;
    /// value j is the low nibble of byte j, value j + 16 its high nibble.
    #[test]
    fn mxfp4_blocks_decode_as_ggml_does() {
        let mut block = [0u8; 17];
        block[0] = 127;
        block[1] = 0x92;
        block[16] = 0x7F; // code 15 (−6) low, code 7 (6) high
        let v = dequantize(DType::Mxfp4, &block).unwrap();
        assert_eq!(v.len(), 32);
        assert_eq!((v[0], v[16]), (1.0, -0.5));
        assert_eq!((v[15], v[31]), (-6.0, 6.0));
        assert!(v[1..15].iter().all(|&x| x == 0.0));
        // E8M0 0 and 1 are subnormal halves: 2^-128 and 2^-127 per unit of the doubled value.
        block[0] = 0;
        let v = dequantize(DType::Mxfp4, &block).unwrap();
        assert_eq!(v[0], 2.0 * 2f32.powi(-128));
        block[0] = 200;
        let v = dequantize(DType::Mxfp4, &block).unwrap();
        assert_eq!(v[0], 2.0 * 2f32.powi(200 - 128));
        assert!(dequantize(DType::Mxfp4, &block[..16]).is_none());
    }
}
