use serde::Serialize;

/// Element types of every format glassbox reads. Quantized GGUF types are block formats: their
/// byte size is per block of `block_size()` elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum DType {
    Bool,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F16,
    BF16,
    F32,
    F64,
    F8E4M3,
    F8E5M2,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    /// OCP MXFP4 as ggml stores it (`GGML_TYPE_MXFP4`, gpt-oss's experts): per 32 values an
    /// E8M0 scale byte and 16 bytes of E2M1 codes.
    Mxfp4,
}

impl DType {
    /// (elements per block, bytes per block).
    pub fn block(self) -> (usize, usize) {
        use DType::*;
        match self {
            Bool | U8 | I8 | F8E4M3 | F8E5M2 => (1, 1),
            U16 | I16 | F16 | BF16 => (1, 2),
            U32 | I32 | F32 => (1, 4),
            U64 | I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2K => (256, 84),
            Q3K => (256, 110),
            Q4K => (256, 144),
            Q5K => (256, 176),
            Q6K => (256, 210),
            Q8K => (256, 292),
            Mxfp4 => (32, 17),
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block().0 > 1
    }

    /// Byte size of `n_elements` of this type, or None if not a whole number of blocks or on
    /// overflow.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let (bs, bb) = self.block();
        if !n_elements.is_multiple_of(bs as u64) {
            return None;
        }
        (n_elements / bs as u64).checked_mul(bb as u64)
    }

    pub fn name(self) -> &'static str {
        use DType::*;
        match self {
            Bool => "BOOL",
            U8 => "U8",
            I8 => "I8",
            U16 => "U16",
            I16 => "I16",
            U32 => "U32",
            I32 => "I32",
            U64 => "U64",
            I64 => "I64",
            F16 => "F16",
            BF16 => "BF16",
            F32 => "F32",
            F64 => "F64",
            F8E4M3 => "F8_E4M3",
            F8E5M2 => "F8_E5M2",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            Mxfp4 => "MXFP4",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The element count of a shape, or None when it overflows u64. A zero dim does not excuse
/// the others: the product of the non-zero dims must fit too, or code that multiplies the
/// dims in another order (or drops the zero) would overflow.
pub(crate) fn element_count(dims: impl IntoIterator<Item = u64>) -> Option<u64> {
    let mut nonzero = 1u64;
    let mut any_zero = false;
    for d in dims {
        if d == 0 {
            any_zero = true;
        } else {
            nonzero = nonzero.checked_mul(d)?;
        }
    }
    usize::try_from(nonzero).ok()?;
    Some(if any_zero { 0 } else { nonzero })
}
