//! The measures [`super::compare`] accumulates: sums of squares and their ratios (NaN kept as
//! NaN), next-token distributions compared, direct-logit-attribution and feature tallies.

use std::cmp::Ordering;

use candle_core::{DType, Tensor, D};
use glassbox_models::ops;

use super::{FeatureChange, FeatureDrift};
use crate::error::Result;

/// Root-sum-square accumulators of one compared quantity.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sums {
    /// Σ‖A‖²
    pub(super) a: f64,
    /// Σ‖B_local − A‖²
    pub(super) local: f64,
    /// Σ‖B − A‖²
    pub(super) end_to_end: f64,
    /// Σ‖residual stream‖² it is measured against
    pub(super) stream: f64,
}

pub(super) fn sum_sq(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?)
}

pub(super) fn diff_sq(x: &Tensor, y: &Tensor) -> Result<f64> {
    sum_sq(&(x.to_dtype(DType::F32)? - y.to_dtype(DType::F32)?)?)
}

pub(super) fn ratio(num: f64, den: f64) -> f64 {
    if num.is_nan() || den.is_nan() {
        // a comparison with NaN would read as "no change"
        f64::NAN
    } else if den > 0.0 {
        (num / den).sqrt()
    } else if num > 0.0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// The larger of two numbers, NaN if either is (`f64::max` drops a NaN, and a model that
/// produces NaN must not read as one that agrees).
pub(super) fn max_or_nan(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else {
        x.max(y)
    }
}

/// Orders changes largest first, a NaN before every number: a change that could not be
/// measured is a change, not none (`total_cmp` alone puts a NaN with its sign bit set, the
/// x86 default NaN, last).
pub(super) fn larger_first(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => y.total_cmp(&x),
    }
}

/// Log-probabilities over the last dimension, in f32.
pub(super) fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let max = x.max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Rows of logits [n, V] of A and B compared.
pub(super) struct Compared {
    /// KL(A‖B) per row (NaN where either row is not finite).
    pub(super) kl: Vec<f64>,
    /// Whether the argmaxes agree, per row (never where either row is not finite: the
    /// argmax of NaNs is arbitrary).
    pub(super) agree: Vec<bool>,
    /// Rows of A, and of B, with a value that is not finite.
    pub(super) nonfinite_a: usize,
    pub(super) nonfinite_b: usize,
    pub(super) log_probs_a: Tensor,
    pub(super) log_probs_b: Tensor,
}

pub(super) fn compare_distributions(a: &Tensor, b: &Tensor) -> Result<Compared> {
    let (la, lb) = (log_softmax(a)?, log_softmax(b)?);
    let kl = (la.exp()? * (&la - &lb)?)?
        .sum(D::Minus1)?
        .to_vec1::<f32>()?;
    let top_a = a.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let top_b = b.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let (fa, fb) = (ops::finite_rows(a)?, ops::finite_rows(b)?);
    Ok(Compared {
        // below zero only by rounding; a NaN stays NaN (`f64::max` would make it 0)
        kl: kl
            .iter()
            .map(|&k| if k < 0.0 { 0.0 } else { k as f64 })
            .collect(),
        agree: (0..top_a.len())
            .map(|i| fa[i] && fb[i] && top_a[i] == top_b[i])
            .collect(),
        nonfinite_a: fa.iter().filter(|&&f| !f).count(),
        nonfinite_b: fb.iter().filter(|&&f| !f).count(),
        log_probs_a: la,
        log_probs_b: lb,
    })
}

#[derive(Default)]
pub(super) struct DlaSums {
    pub(super) a: f64,
    pub(super) b: f64,
    pub(super) change: f64,
    pub(super) count: usize,
}

#[derive(Default)]
pub(super) struct FeatureSums {
    pub(super) positions: usize,
    pub(super) fired_a: Vec<usize>,
    pub(super) fired_b: Vec<usize>,
    pub(super) sum_a: Vec<f64>,
    pub(super) sum_b: Vec<f64>,
    pub(super) abs_change: Vec<f64>,
    /// Activations that are not finite, per feature, in A and in B.
    pub(super) nonfinite_a: Vec<usize>,
    pub(super) nonfinite_b: Vec<usize>,
}

impl FeatureSums {
    pub(super) fn add(&mut self, fa: &[Vec<f32>], fb: &[Vec<f32>]) {
        for (ra, rb) in fa.iter().zip(fb) {
            if self.sum_a.is_empty() {
                let n = ra.len();
                self.fired_a = vec![0; n];
                self.fired_b = vec![0; n];
                self.sum_a = vec![0.0; n];
                self.sum_b = vec![0.0; n];
                self.abs_change = vec![0.0; n];
                self.nonfinite_a = vec![0; n];
                self.nonfinite_b = vec![0; n];
            }
            self.positions += 1;
            for (f, (&x, &y)) in ra.iter().zip(rb).enumerate() {
                self.fired_a[f] += (x > 0.0) as usize;
                self.fired_b[f] += (y > 0.0) as usize;
                self.nonfinite_a[f] += !x.is_finite() as usize;
                self.nonfinite_b[f] += !y.is_finite() as usize;
                self.sum_a[f] += x as f64;
                self.sum_b[f] += y as f64;
                self.abs_change[f] += (y as f64 - x as f64).abs();
            }
        }
    }

    pub(super) fn report(&self, hook: &str, top: usize) -> FeatureDrift {
        let n = self.positions.max(1) as f64;
        let change = |f: usize| FeatureChange {
            feature: f,
            frequency_a: self.fired_a[f] as f64 / n,
            frequency_b: self.fired_b[f] as f64 / n,
            mean_a: self.sum_a[f] / n,
            mean_b: self.sum_b[f] / n,
            mean_abs_change: self.abs_change[f] / n,
        };
        let d = self.sum_a.len();
        let ranked = |keep: &dyn Fn(usize) -> bool, key: &dyn Fn(usize) -> f64| {
            let mut ids: Vec<usize> = (0..d).filter(|&f| keep(f)).collect();
            ids.sort_by(|&x, &y| larger_first(key(x), key(y)).then(x.cmp(&y)));
            ids
        };
        // a feature whose activations are NaN did not die (or appear): it was not measured
        let died = ranked(
            &|f| self.fired_a[f] > 0 && self.fired_b[f] == 0 && self.nonfinite_b[f] == 0,
            &|f| self.fired_a[f] as f64,
        );
        let appeared = ranked(
            &|f| self.fired_b[f] > 0 && self.fired_a[f] == 0 && self.nonfinite_a[f] == 0,
            &|f| self.fired_b[f] as f64,
        );
        // NaN is kept: it moved, as far as anyone can tell
        let moved = ranked(
            &|f| self.abs_change[f] > 0.0 || self.abs_change[f].is_nan(),
            &|f| self.abs_change[f],
        );
        let list = |ids: &[usize]| ids.iter().take(top).map(|&f| change(f)).collect::<Vec<_>>();
        FeatureDrift {
            hook: hook.to_string(),
            d_features: d,
            positions: self.positions,
            alive_a: self.fired_a.iter().filter(|&&c| c > 0).count(),
            alive_b: self.fired_b.iter().filter(|&&c| c > 0).count(),
            died_count: died.len(),
            appeared_count: appeared.len(),
            died: list(&died),
            appeared: list(&appeared),
            moved: list(&moved),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_is_a_change_and_ranks_first() {
        // the sign bit set: x86's default NaN, which `total_cmp` puts below every number
        let negative_nan = f64::from_bits(0xfff8_0000_0000_0000);
        let mut v = [0.0, negative_nan, 1.0, f64::INFINITY, f64::NAN];
        v.sort_by(|x, y| larger_first(*x, *y));
        assert!(v[0].is_nan() && v[1].is_nan(), "{v:?}");
        assert_eq!(v[2..], [f64::INFINITY, 1.0, 0.0]);
        assert!(max_or_nan(0.0, f64::NAN).is_nan() && max_or_nan(f64::NAN, 1.0).is_nan());
        assert!(ratio(f64::NAN, 1.0).is_nan() && ratio(1.0, f64::NAN).is_nan());
        assert_eq!(ratio(0.0, 0.0), 0.0);
        let t = Tensor::new(
            &[[1f32, 2.0], [f32::NAN, 0.0], [0.0, f32::NEG_INFINITY]],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        assert_eq!(ops::finite_rows(&t).unwrap(), [true, false, false]);
    }

    #[test]
    fn a_feature_that_is_nan_in_b_moved_and_did_not_die() {
        let mut s = FeatureSums::default();
        s.add(&[vec![1.0, 0.0, 2.0]], &[vec![f32::NAN, 0.0, 0.0]]);
        let r = s.report("h", 10);
        let ids = |l: &[FeatureChange]| l.iter().map(|c| c.feature).collect::<Vec<_>>();
        assert_eq!(ids(&r.died), [2]);
        assert_eq!(ids(&r.moved), [0, 2], "NaN first");
    }
}
