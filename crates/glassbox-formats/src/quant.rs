//! Dequantization of ggml block formats (Q4_0 … Q8_K) to f32.
//!
//! The arithmetic is candle's (`candle_core::quantized`), which mirrors ggml's reference
//! `dequantize_row_*` functions; this module only guards the hand-off. candle reinterprets the
//! byte slice as an array of block structs, so the slice must be exactly a whole number of
//! blocks (checked here) and aligned for the blocks' f16/f32 fields (copied into an aligned
//! buffer when it is not: a GGUF may use any alignment, and owned buffers have none).

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::Device;

use crate::DType;

fn ggml_dtype(dtype: DType) -> Option<GgmlDType> {
    Some(match dtype {
        DType::Q4_0 => GgmlDType::Q4_0,
        DType::Q4_1 => GgmlDType::Q4_1,
        DType::Q5_0 => GgmlDType::Q5_0,
        DType::Q5_1 => GgmlDType::Q5_1,
        DType::Q8_0 => GgmlDType::Q8_0,
        DType::Q2K => GgmlDType::Q2K,
        DType::Q3K => GgmlDType::Q3K,
        DType::Q4K => GgmlDType::Q4K,
        DType::Q5K => GgmlDType::Q5K,
        DType::Q6K => GgmlDType::Q6K,
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
        // candle's loader stops short of these two (ggml uses them for activations): both are
        // a scale times int8s, block_q8_1 = {f16 d, f16 sum, i8 q[32]},
        // block_q8_K = {f32 d, i8 q[256], i16 bsums[16]}.
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
        _ => {}
    }
    let ggml = ggml_dtype(dtype)?;
    let elements = bytes.len() / block_bytes * block_elems;
    if elements == 0 {
        return Some(Vec::new());
    }
    // Blocks hold f16 and f32 scales: give candle an 8-byte-aligned slice.
    let aligned: Vec<u64>;
    let slice = if (bytes.as_ptr() as usize).is_multiple_of(8) {
        bytes
    } else {
        let mut buf = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: `buf` owns at least `bytes.len()` initialised bytes; u8 has no alignment.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, bytes.len()) };
        dst.copy_from_slice(bytes);
        aligned = buf;
        // SAFETY: as above, a byte view of the initialised prefix of `aligned`.
        unsafe { std::slice::from_raw_parts(aligned.as_ptr() as *const u8, bytes.len()) }
    };
    let q = qtensor_from_ggml(ggml, slice, vec![elements], &Device::Cpu).ok()?;
    q.dequantize(&Device::Cpu).ok()?.to_vec1::<f32>().ok()
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
