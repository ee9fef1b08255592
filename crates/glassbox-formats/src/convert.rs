//! Element conversion to f32 for dtypes candle has no native tensor type for, and for ggml's
//! quantized block formats.

use crate::DType;
use half::{bf16, f16};

/// Decodes `bytes` of `dtype` to f32 (dequantizing block formats), or None when `bytes` is not
/// a whole number of elements (blocks).
pub fn to_f32(dtype: DType, bytes: &[u8]) -> Option<Vec<f32>> {
    fn each<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunk of N")))
            .collect()
    }
    if !bytes.len().is_multiple_of(dtype.block().1) {
        return None;
    }
    Some(match dtype {
        DType::Bool | DType::U8 => bytes.iter().map(|&b| b as f32).collect(),
        DType::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
        DType::U16 => each(bytes, |b| u16::from_le_bytes(b) as f32),
        DType::I16 => each(bytes, |b| i16::from_le_bytes(b) as f32),
        DType::U32 => each(bytes, |b| u32::from_le_bytes(b) as f32),
        DType::I32 => each(bytes, |b| i32::from_le_bytes(b) as f32),
        DType::U64 => each(bytes, |b| u64::from_le_bytes(b) as f32),
        DType::I64 => each(bytes, |b| i64::from_le_bytes(b) as f32),
        DType::F16 => each(bytes, |b| f16::from_le_bytes(b).to_f32()),
        DType::BF16 => each(bytes, |b| bf16::from_le_bytes(b).to_f32()),
        DType::F32 => each(bytes, f32::from_le_bytes),
        DType::F64 => each(bytes, |b| f64::from_le_bytes(b) as f32),
        DType::F8E4M3 => bytes.iter().map(|&b| f8_e4m3(b)).collect(),
        DType::F8E5M2 => bytes.iter().map(|&b| f8_e5m2(b)).collect(),
        _ => return crate::quant::dequantize(dtype, bytes),
    })
}

/// OCP FP8 E4M3 (fn variant: no infinities, 0x7f/0xff are NaN).
fn f8_e4m3(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = ((b >> 3) & 0x0f) as i32;
    let man = (b & 0x07) as f32;
    if exp == 0x0f && (b & 0x07) == 0x07 {
        return f32::NAN;
    }
    if exp == 0 {
        sign * man / 8.0 * 2f32.powi(-6)
    } else {
        sign * (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    }
}

/// OCP FP8 E5M2 (IEEE-like, with infinities and NaNs).
fn f8_e5m2(b: u8) -> f32 {
    f16::from_bits((b as u16) << 8).to_f32()
}
