//! Block-scaled FP8 weights, as DeepSeek-V3 / R1 publish them (`quantization_config`
//! `{"quant_method": "fp8", "weight_block_size": [128, 128]}`).
//!
//! Each such linear stores its weight as `float8_e4m3fn` plus `weight_scale_inv`
//! [⌈out/128⌉, ⌈in/128⌉]; the real weight is `w[i, j] · scale_inv[i / 128, j / 128]`, which is
//! what transformers' FP8 integration computes when it dequantizes. Reading the FP8 values
//! without their scales would silently give a different model, so every linear of a family
//! that may ship in this form loads through [`load_linear`].

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::Linear;

/// The block size of the published checkpoints (the only one accepted).
pub const BLOCK: usize = 128;

/// A `nn.Linear` at `vb` ([`Linear::load`]), dequantized when it carries `weight_scale_inv`.
pub fn load_linear(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
    let mut linear = Linear::load(vb.clone(), in_dim, out_dim, bias)?;
    if !vb.contains_tensor("weight_scale_inv") {
        return Ok(linear);
    }
    let blocks = (out_dim.div_ceil(BLOCK), in_dim.div_ceil(BLOCK));
    // Shape-checked: a scale table of the wrong size is an error naming the tensor.
    let scale = vb.get_with_hints_dtype(
        blocks,
        "weight_scale_inv",
        candle_nn::Init::Const(1.0),
        DType::F32,
    )?;
    linear.weight = dequantize(&linear.weight.tensor()?, &scale)?.into();
    Ok(linear)
}

/// `w · scale_inv` broadcast over `BLOCK × BLOCK` tiles, in `w`'s dtype.
pub fn dequantize(w: &Tensor, scale_inv: &Tensor) -> Result<Tensor> {
    let (out_dim, in_dim) = w.dims2()?;
    let (bo, bi) = scale_inv.dims2()?;
    let tiled = scale_inv
        .reshape((bo, 1, bi, 1))?
        .broadcast_as((bo, BLOCK, bi, BLOCK))?
        .reshape((bo * BLOCK, bi * BLOCK))?
        .narrow(0, 0, out_dim)?
        .narrow(1, 0, in_dim)?;
    (w.to_dtype(DType::F32)? * tiled)?.to_dtype(w.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn each_tile_takes_its_own_scale() {
        let dev = Device::Cpu;
        // A [130, 3] weight of ones spans two row tiles and one column tile.
        let w = Tensor::ones((130, 3), DType::F32, &dev).unwrap();
        let s = Tensor::new(&[[2f32], [5.0]], &dev).unwrap();
        let d = dequantize(&w, &s).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(d[0], [2.0; 3]);
        assert_eq!(d[127], [2.0; 3]);
        assert_eq!(d[128], [5.0; 3]);
        assert_eq!(d[129], [5.0; 3]);
    }

    #[test]
    fn scales_of_the_wrong_shape_are_refused() {
        let dev = Device::Cpu;
        let mut map = std::collections::HashMap::new();
        map.insert(
            "weight".to_string(),
            Tensor::ones((4, 4), DType::F32, &dev).unwrap(),
        );
        map.insert(
            "weight_scale_inv".to_string(),
            Tensor::ones((2, 1), DType::F32, &dev).unwrap(),
        );
        let vb = VarBuilder::from_tensors(map, DType::F32, &dev);
        assert!(load_linear(vb, 4, 4, false).is_err());
    }
}
