//! The final normalisation, read off the model as "normalise, then scale and shift".
//!
//! Direct logit attribution needs the final norm *linearised at the actual run*: with the
//! run's statistics frozen, LayerNorm is `x ↦ (x − mean x) / s ⊙ g + b` and RMSNorm is
//! `x ↦ x / s ⊙ g` (+ a shift where a variant has one), both linear in x apart from the shift.
//! Rather than asking every architecture for its norm's internals, [`FinalNorm::probe`] reads
//! them off the model's own `final_norm` on three probe vectors:
//!
//! - the shift `b` is `final_norm(0)` (both normalisations map 0 to 0);
//! - the norm centres iff `final_norm(1,…,1) = b` (LayerNorm removes a constant vector);
//! - the gain `g` comes from a large zero-mean probe `z` with no zero entry, where the
//!   normalisation is `z / rms(z)` to within eps/|z|² (negligible):
//!   `g = (final_norm(z) − b) · rms(z) / z`.
//!
//! The run's scale `s` at each position then follows from the model's own output on the
//! real residual: `final_norm(x) − b = P(x) / s ⊙ g`, solved for `s` by least squares over
//! the d_model coordinates. [`FinalNorm::check`] verifies the reconstruction, so a norm of
//! another shape is reported rather than mis-attributed.

use candle_core::{DType, Device, Tensor, D};
use glassbox_models::Model;

use crate::error::{AnalysisError, Result};

/// The final norm of a model as an affine map after (optional) centring and scaling.
#[derive(Clone, Debug)]
pub struct FinalNorm {
    /// LayerNorm-like (subtracts the mean) rather than RMSNorm-like.
    pub centers: bool,
    /// The learned gain `g` [d_model] (what multiplies the normalised vector).
    pub gain: Tensor,
    /// The learned shift `b` [d_model] (zeros for RMSNorm).
    pub shift: Tensor,
}

/// A zero-mean vector of length `d` with no zero entry: ±1 alternating, with (2, −1, −1)
/// first when `d` is odd.
fn probe_vector(d: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(d);
    if d % 2 == 1 {
        if d >= 3 {
            v.extend([2.0, -1.0, -1.0]);
        } else {
            v.push(1.0);
        }
    }
    while v.len() < d {
        v.push(if v.len() % 2 == 0 { 1.0 } else { -1.0 });
    }
    v
}

impl FinalNorm {
    /// Reads the final norm off `model` (see the module documentation).
    pub fn probe(model: &dyn Model) -> Result<Self> {
        let d = model.info().d_model;
        let device = Device::Cpu;
        let device = model.w_u().map(|w| w.device().clone()).unwrap_or(device);
        let run = |v: Vec<f32>| -> Result<Tensor> {
            let x = Tensor::from_vec(v, (1, d), &device)?;
            Ok(model.final_norm(&x)?.to_dtype(DType::F32)?.squeeze(0)?)
        };
        let shift = run(vec![0.0; d])?;
        let ones = (run(vec![1.0; d])? - &shift)?;
        let centers = ones.abs()?.max(0)?.to_scalar::<f32>()? < 1e-4;
        let base = probe_vector(d);
        let rms = (base.iter().map(|x| x * x).sum::<f32>() / d as f32).sqrt();
        let amplitude = 1000.0f32;
        let z: Vec<f32> = base.iter().map(|x| x * amplitude).collect();
        let normed = (run(z)? - &shift)?;
        // gain = normed · rms(z) / z, with rms(z) = amplitude · rms(base)
        let inv: Vec<f32> = base.iter().map(|x| rms / x).collect();
        let gain = normed.mul(&Tensor::from_vec(inv, d, &device)?)?;
        if d == 1 && centers {
            return Err(AnalysisError::input(
                "a LayerNorm over one dimension has no direction to attribute",
            ));
        }
        Ok(FinalNorm {
            centers,
            gain,
            shift,
        })
    }

    /// `x` with its mean over the last dimension removed if the norm centres, else `x`.
    pub fn center(&self, x: &Tensor) -> Result<Tensor> {
        if self.centers {
            Ok(x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?)
        } else {
            Ok(x.clone())
        }
    }

    /// The run's scale `s` [.., 1] for residuals `x` [.., d_model]: solves
    /// `final_norm(x) − b = P(x) / s ⊙ g` by least squares over the last dimension.
    pub fn scale(&self, model: &dyn Model, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?;
        let y = model
            .final_norm(&x)?
            .to_dtype(DType::F32)?
            .broadcast_sub(&self.shift)?;
        let a = self.center(&x)?.broadcast_mul(&self.gain)?;
        let num = a.sqr()?.sum_keepdim(D::Minus1)?;
        let den = a.mul(&y)?.sum_keepdim(D::Minus1)?;
        Ok(num.div(&den)?)
    }

    /// The final norm with the scale frozen at `scale` and no shift: the linear map each
    /// residual component goes through, `P(c) / s ⊙ g`.
    pub fn apply_frozen(&self, c: &Tensor, scale: &Tensor) -> Result<Tensor> {
        Ok(self
            .center(c)?
            .broadcast_div(scale)?
            .broadcast_mul(&self.gain)?)
    }

    /// Checks that `P(x)/s ⊙ g + b` reproduces the model's `final_norm(x)`; an error names
    /// the mismatch (a norm of another shape than LayerNorm/RMSNorm).
    pub fn check(&self, model: &dyn Model, x: &Tensor) -> Result<()> {
        let x = x.to_dtype(DType::F32)?;
        let s = self.scale(model, &x)?;
        let rebuilt = self.apply_frozen(&x, &s)?.broadcast_add(&self.shift)?;
        let actual = model.final_norm(&x)?.to_dtype(DType::F32)?;
        let err = (rebuilt - &actual)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let size = actual.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
        if err > 1e-3 * size {
            return Err(AnalysisError::input(format!(
                "the final norm of this model is not a LayerNorm or RMSNorm after all \
                 (reconstruction error {err:.2e}); direct attribution does not apply"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::probe_vector;

    #[test]
    fn probe_vectors_have_zero_mean_and_no_zero() {
        for d in [2usize, 3, 4, 7, 64, 65] {
            let v = probe_vector(d);
            assert_eq!(v.len(), d);
            assert!(v.iter().sum::<f32>().abs() < 1e-6, "{d}");
            assert!(v.iter().all(|x| *x != 0.0));
        }
    }
}
