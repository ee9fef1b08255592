//! ggml's block formats: their byte layouts, decoded into small integers and scales.
//!
//! Every format is decoded the same way, a block at a time, into integers `a` and, per group of
//! 16 (K-quants) or per block (the 32-element formats), a scale and an offset. Dequantizing
//! and the integer dot products of [`super::dot`] both start from that decoding, so the two
//! numerics read the same weights. The float expressions of [`dequantize_row`] are ggml's
//! reference `dequantize_row_*` ones, operation for operation, so the values are its bits.

use half::f16;

/// A ggml block format a weight may be stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockFormat {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

/// Elements per K-quant super-block.
pub const QK_K: usize = 256;

impl BlockFormat {
    pub const ALL: [BlockFormat; 10] = [
        BlockFormat::Q4_0,
        BlockFormat::Q4_1,
        BlockFormat::Q5_0,
        BlockFormat::Q5_1,
        BlockFormat::Q8_0,
        BlockFormat::Q2K,
        BlockFormat::Q3K,
        BlockFormat::Q4K,
        BlockFormat::Q5K,
        BlockFormat::Q6K,
    ];

    /// ggml's name (`Q4_0`, `Q4_K`, …).
    pub fn name(self) -> &'static str {
        match self {
            BlockFormat::Q4_0 => "Q4_0",
            BlockFormat::Q4_1 => "Q4_1",
            BlockFormat::Q5_0 => "Q5_0",
            BlockFormat::Q5_1 => "Q5_1",
            BlockFormat::Q8_0 => "Q8_0",
            BlockFormat::Q2K => "Q2_K",
            BlockFormat::Q3K => "Q3_K",
            BlockFormat::Q4K => "Q4_K",
            BlockFormat::Q5K => "Q5_K",
            BlockFormat::Q6K => "Q6_K",
        }
    }

    /// Elements per block.
    pub fn block_elements(self) -> usize {
        if self.is_k_quant() {
            QK_K
        } else {
            32
        }
    }

    /// Bytes per block (ggml's `sizeof(block_*)`).
    pub fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q4_0 => 18,
            BlockFormat::Q4_1 => 20,
            BlockFormat::Q5_0 => 22,
            BlockFormat::Q5_1 => 24,
            BlockFormat::Q8_0 => 34,
            BlockFormat::Q2K => 84,
            BlockFormat::Q3K => 110,
            BlockFormat::Q4K => 144,
            BlockFormat::Q5K => 176,
            BlockFormat::Q6K => 210,
        }
    }

    pub fn is_k_quant(self) -> bool {
        matches!(
            self,
            BlockFormat::Q2K
                | BlockFormat::Q3K
                | BlockFormat::Q4K
                | BlockFormat::Q5K
                | BlockFormat::Q6K
        )
    }

    /// Whether a value is `scale·a − offset` (an offset per group) rather than `scale·a`.
    pub(crate) fn has_offset(self) -> bool {
        matches!(
            self,
            BlockFormat::Q4_1
                | BlockFormat::Q5_1
                | BlockFormat::Q2K
                | BlockFormat::Q4K
                | BlockFormat::Q5K
        )
    }
}

pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// A 32-element block decoded: values `d·a[j]` (+ `m` for Q4_1 / Q5_1).
pub(crate) struct Small {
    pub a: [i8; 32],
    pub d: f32,
    pub m: f32,
}

/// Decodes one block of a 32-element format (`block.len() == format.block_bytes()`).
#[inline(always)]
pub(crate) fn decode_small(format: BlockFormat, block: &[u8]) -> Small {
    let mut a = [0i8; 32];
    let d = f16_at(block, 0);
    let mut m = 0.0;
    match format {
        BlockFormat::Q8_0 => {
            for (v, &q) in a.iter_mut().zip(&block[2..34]) {
                *v = q as i8;
            }
        }
        BlockFormat::Q4_0 | BlockFormat::Q4_1 => {
            let qs = if format == BlockFormat::Q4_0 {
                &block[2..18]
            } else {
                m = f16_at(block, 2);
                &block[4..20]
            };
            let bias = if format == BlockFormat::Q4_0 { 8 } else { 0 };
            for j in 0..16 {
                a[j] = (qs[j] & 0x0F) as i8 - bias;
                a[j + 16] = (qs[j] >> 4) as i8 - bias;
            }
        }
        BlockFormat::Q5_0 | BlockFormat::Q5_1 => {
            let (qh_at, qs_at) = if format == BlockFormat::Q5_0 {
                (2, 6)
            } else {
                m = f16_at(block, 2);
                (4, 8)
            };
            let qh = u32::from_le_bytes([
                block[qh_at],
                block[qh_at + 1],
                block[qh_at + 2],
                block[qh_at + 3],
            ]);
            let qs = &block[qs_at..qs_at + 16];
            let bias = if format == BlockFormat::Q5_0 { 16 } else { 0 };
            for j in 0..16 {
                let h0 = (((qh >> j) & 1) << 4) as u8;
                let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
                a[j] = ((qs[j] & 0x0F) | h0) as i8 - bias;
                a[j + 16] = ((qs[j] >> 4) | h1) as i8 - bias;
            }
        }
        _ => unreachable!("{format:?} is a K-quant"),
    }
    Small { a, d, m }
}

/// A K-quant super-block decoded: value `l` of group `g = l / 16` is
/// `(d·scale[g])·a[l] − dmin·min[g]` (no offset for Q3_K / Q6_K).
pub(crate) struct Super {
    pub a: [i8; QK_K],
    pub scale: [i32; 16],
    pub min: [i32; 16],
    pub d: f32,
    pub dmin: f32,
}

/// The 6-bit scale and min `j` (0..8) of Q4_K / Q5_K's packed 12 bytes (ggml's
/// `get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (i32, i32) {
    if j < 4 {
        ((q[j] & 63) as i32, (q[j + 4] & 63) as i32)
    } else {
        (
            ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4)) as i32,
            ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as i32,
        )
    }
}

/// Q4_K / Q5_K's packed 12 bytes as a scale and a min per group of 16 (each pair of groups
/// shares its 32-element sub-block's).
#[inline(always)]
pub(crate) fn q4_k_scales(sc: &[u8]) -> ([i32; 16], [i32; 16]) {
    let (mut scale, mut min) = ([0; 16], [0; 16]);
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, sc);
        scale[2 * j] = s;
        scale[2 * j + 1] = s;
        min[2 * j] = m;
        min[2 * j + 1] = m;
    }
    (scale, min)
}

/// Decodes one super-block of a K-quant (`block.len() == format.block_bytes()`).
#[inline(always)]
pub(crate) fn decode_super(format: BlockFormat, block: &[u8]) -> Super {
    let mut s = Super {
        a: [0; QK_K],
        scale: [0; 16],
        min: [0; 16],
        d: 0.0,
        dmin: 0.0,
    };
    match format {
        BlockFormat::Q2K => {
            // scales[16] | qs[64] | d | dmin
            let (sc, qs) = (&block[..16], &block[16..80]);
            s.d = f16_at(block, 80);
            s.dmin = f16_at(block, 82);
            for (g, &byte) in sc.iter().enumerate() {
                s.scale[g] = (byte & 0x0F) as i32;
                s.min[g] = (byte >> 4) as i32;
            }
            // Element 128·n + 32·j + l is bits 2j.. of qs[32·n + l].
            for n in 0..2 {
                for j in 0..4 {
                    for l in 0..32 {
                        s.a[128 * n + 32 * j + l] = ((qs[32 * n + l] >> (2 * j)) & 3) as i8;
                    }
                }
            }
        }
        BlockFormat::Q3K => {
            // hmask[32] | qs[64] | scales[12] | d
            let (hm, qs, sc) = (&block[..32], &block[32..96], &block[96..108]);
            s.d = f16_at(block, 108);
            let word = |i: usize| {
                u32::from_le_bytes([sc[4 * i], sc[4 * i + 1], sc[4 * i + 2], sc[4 * i + 3]])
            };
            let (a0, a1, tmp) = (word(0), word(1), word(2));
            const LOW: u32 = 0x0f0f_0f0f;
            const TOP: u32 = 0x0303_0303;
            let aux = [
                (a0 & LOW) | ((tmp & TOP) << 4),
                (a1 & LOW) | (((tmp >> 2) & TOP) << 4),
                ((a0 >> 4) & LOW) | (((tmp >> 4) & TOP) << 4),
                ((a1 >> 4) & LOW) | (((tmp >> 6) & TOP) << 4),
            ];
            for g in 0..16 {
                let byte = aux[g / 4].to_le_bytes()[g % 4];
                s.scale[g] = byte as i8 as i32 - 32;
            }
            for n in 0..2 {
                for j in 0..4 {
                    let bit = 1u8 << (4 * n + j);
                    for l in 0..32 {
                        let low = ((qs[32 * n + l] >> (2 * j)) & 3) as i8;
                        let high = if hm[l] & bit != 0 { 0 } else { 4 };
                        s.a[128 * n + 32 * j + l] = low - high;
                    }
                }
            }
        }
        BlockFormat::Q4K | BlockFormat::Q5K => {
            // d | dmin | scales[12] | (qh[32] for Q5_K) | qs[128]
            s.d = f16_at(block, 0);
            s.dmin = f16_at(block, 2);
            (s.scale, s.min) = q4_k_scales(&block[4..16]);
            let (qh, qs) = if format == BlockFormat::Q5K {
                (Some(&block[16..48]), &block[48..176])
            } else {
                (None, &block[16..144])
            };
            // Elements 64·j.. are the low nibbles of qs[32·j..], the next 32 the high ones;
            // Q5_K's fifth bit of element 32·i + l is bit i of qh[l].
            for j in 0..4 {
                for l in 0..32 {
                    let q = qs[32 * j + l];
                    let (mut lo, mut hi) = ((q & 0x0F) as i8, (q >> 4) as i8);
                    if let Some(qh) = qh {
                        lo += (((qh[l] >> (2 * j)) & 1) << 4) as i8;
                        hi += (((qh[l] >> (2 * j + 1)) & 1) << 4) as i8;
                    }
                    s.a[64 * j + l] = lo;
                    s.a[64 * j + 32 + l] = hi;
                }
            }
        }
        BlockFormat::Q6K => {
            // ql[128] | qh[64] | scales[16] (i8) | d
            let (ql, qh, sc) = (&block[..128], &block[128..192], &block[192..208]);
            s.d = f16_at(block, 208);
            for (scale, &byte) in s.scale.iter_mut().zip(sc) {
                *scale = byte as i8 as i32;
            }
            for n in 0..2 {
                let (ql, qh) = (&ql[64 * n..], &qh[32 * n..]);
                let a = &mut s.a[128 * n..];
                for l in 0..32 {
                    a[l] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
                    a[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                    a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                    a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                }
            }
        }
        _ => unreachable!("{format:?} is not a K-quant"),
    }
    s
}

/// Decodes `bytes` (whole blocks of `format`) into `out` (`bytes.len() / block_bytes ·
/// block_elements` values), as ggml's reference `dequantize_row_*` does.
pub fn dequantize_row(format: BlockFormat, bytes: &[u8], out: &mut [f32]) {
    let (elements, block_bytes) = (format.block_elements(), format.block_bytes());
    assert_eq!(
        bytes.len() % block_bytes,
        0,
        "not whole {} blocks",
        format.name()
    );
    assert_eq!(
        out.len(),
        bytes.len() / block_bytes * elements,
        "output size"
    );
    for (block, out) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(elements))
    {
        if format.is_k_quant() {
            let s = decode_super(format, block);
            for g in 0..16 {
                let ds = s.d * s.scale[g] as f32;
                let a = &s.a[16 * g..16 * g + 16];
                let y = &mut out[16 * g..16 * g + 16];
                if format.has_offset() {
                    let ms = s.dmin * s.min[g] as f32;
                    for (y, &a) in y.iter_mut().zip(a) {
                        *y = ds * a as f32 - ms;
                    }
                } else {
                    for (y, &a) in y.iter_mut().zip(a) {
                        *y = ds * a as f32;
                    }
                }
            }
        } else {
            let s = decode_small(format, block);
            if format.has_offset() {
                for (y, &a) in out.iter_mut().zip(&s.a) {
                    *y = a as f32 * s.d + s.m;
                }
            } else {
                for (y, &a) in out.iter_mut().zip(&s.a) {
                    *y = a as f32 * s.d;
                }
            }
        }
    }
}
