//! Fitting one probe: features standardised with the training set's statistics, then
//! logistic (softmax) regression or ridge regression, scored on both sets.

use super::stats::roc_auc;
use super::{Labels, ProbeOptions};

pub(super) struct Fit {
    pub direction: Option<Vec<f32>>,
    /// Regression: each held-out example's (actual, predicted) value.
    pub held_out: Vec<(f64, f64)>,
}

/// Fits on `train`, returns (the fit, (train score, test score, test AUC)).
pub(super) fn fit_one(
    rows: &[Vec<f32>],
    labels: &Labels,
    train: &[usize],
    test: &[usize],
    opts: &ProbeOptions,
) -> (Fit, (f64, f64, Option<f64>)) {
    let d = rows[0].len();
    // Standardise with the training set's statistics.
    let mut mean = vec![0f64; d];
    for &i in train {
        for (m, &v) in mean.iter_mut().zip(&rows[i]) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= train.len() as f64);
    let mut sd = vec![0f64; d];
    for &i in train {
        for ((s, &v), m) in sd.iter_mut().zip(&rows[i]).zip(&mean) {
            *s += (v as f64 - m) * (v as f64 - m);
        }
    }
    sd.iter_mut()
        .for_each(|s| *s = (*s / train.len() as f64).sqrt().max(1e-8));
    let z = |i: usize| -> Vec<f64> {
        rows[i]
            .iter()
            .zip(&mean)
            .zip(&sd)
            .map(|((&v, m), s)| (v as f64 - m) / s)
            .collect()
    };
    let zs: Vec<Vec<f64>> = (0..rows.len()).map(z).collect();
    // A direction in standardised space back to the activations' units, unit length.
    let to_raw = |w: &[f64]| -> Vec<f32> {
        let raw: Vec<f64> = w.iter().zip(&sd).map(|(w, s)| w / s).collect();
        let norm = raw.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-30);
        raw.iter().map(|v| (v / norm) as f32).collect()
    };
    match labels {
        Labels::Classes { names, y } => {
            let k = names.len();
            let (w, b) = softmax_regression(&zs, y, k, train, opts);
            let predict = |i: usize| -> Vec<f64> {
                let logits: Vec<f64> = (0..k)
                    .map(|c| b[c] + w[c].iter().zip(&zs[i]).map(|(a, x)| a * x).sum::<f64>())
                    .collect();
                logits
            };
            let accuracy = |set: &[usize]| -> f64 {
                set.iter()
                    .filter(|&&i| {
                        let l = predict(i);
                        let best = (0..k)
                            .max_by(|&a, &c| l[a].total_cmp(&l[c]).then(c.cmp(&a)))
                            .unwrap_or(0);
                        best == y[i]
                    })
                    .count() as f64
                    / set.len() as f64
            };
            let auc = (k == 2).then(|| {
                let scored: Vec<(f64, bool)> = test
                    .iter()
                    .map(|&i| {
                        let l = predict(i);
                        (l[1] - l[0], y[i] == 1)
                    })
                    .collect();
                roc_auc(&scored)
            });
            let direction = (k == 2).then(|| {
                let diff: Vec<f64> = w[1].iter().zip(&w[0]).map(|(a, b)| a - b).collect();
                to_raw(&diff)
            });
            (
                Fit {
                    direction,
                    held_out: Vec::new(),
                },
                (accuracy(train), accuracy(test), auc.flatten()),
            )
        }
        Labels::Values(v) => {
            let (w, b) = ridge(&zs, v, train, opts.l2.max(1e-6) * train.len() as f64);
            let predict = |i: usize| b + w.iter().zip(&zs[i]).map(|(a, x)| a * x).sum::<f64>();
            let r2 = |set: &[usize]| -> f64 {
                let mean = set.iter().map(|&i| v[i]).sum::<f64>() / set.len() as f64;
                let ss_tot: f64 = set.iter().map(|&i| (v[i] - mean).powi(2)).sum();
                let ss_res: f64 = set.iter().map(|&i| (v[i] - predict(i)).powi(2)).sum();
                if ss_tot == 0.0 {
                    f64::NAN // undefined: nothing to explain
                } else {
                    1.0 - ss_res / ss_tot
                }
            };
            (
                Fit {
                    direction: Some(to_raw(&w)),
                    held_out: test.iter().map(|&i| (v[i], predict(i))).collect(),
                },
                (r2(train), r2(test), None),
            )
        }
    }
}

/// Multinomial logistic regression on standardised rows: full-batch Adam on the mean
/// cross-entropy plus `l2`·‖W‖², from zero; deterministic.
fn softmax_regression(
    zs: &[Vec<f64>],
    y: &[usize],
    k: usize,
    train: &[usize],
    opts: &ProbeOptions,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let d = zs[0].len();
    let mut w = vec![vec![0f64; d]; k];
    let mut b = vec![0f64; k];
    let n = train.len() as f64;
    let (lr, b1, b2, eps): (f64, f64, f64, f64) = (0.05, 0.9, 0.999, 1e-8);
    let mut mw = vec![vec![0f64; d]; k];
    let mut vw = vec![vec![0f64; d]; k];
    let mut mb = vec![0f64; k];
    let mut vb = vec![0f64; k];
    for step in 1..=opts.steps {
        let mut gw = vec![vec![0f64; d]; k];
        let mut gb = vec![0f64; k];
        for &i in train {
            let logits: Vec<f64> = (0..k)
                .map(|c| b[c] + w[c].iter().zip(&zs[i]).map(|(a, x)| a * x).sum::<f64>())
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            for c in 0..k {
                let g = exps[c] / total - f64::from(u8::from(c == y[i]));
                gb[c] += g / n;
                for (gwc, x) in gw[c].iter_mut().zip(&zs[i]) {
                    *gwc += g * x / n;
                }
            }
        }
        let (bc1, bc2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
        for c in 0..k {
            for j in 0..d {
                let g = gw[c][j] + 2.0 * opts.l2 * w[c][j];
                mw[c][j] = b1 * mw[c][j] + (1.0 - b1) * g;
                vw[c][j] = b2 * vw[c][j] + (1.0 - b2) * g * g;
                w[c][j] -= lr * (mw[c][j] / bc1) / ((vw[c][j] / bc2).sqrt() + eps);
            }
            let g = gb[c];
            mb[c] = b1 * mb[c] + (1.0 - b1) * g;
            vb[c] = b2 * vb[c] + (1.0 - b2) * g * g;
            b[c] -= lr * (mb[c] / bc1) / ((vb[c] / bc2).sqrt() + eps);
        }
    }
    (w, b)
}

/// Ridge regression on standardised rows with an intercept: (ZᵀZ + λI) w = Zᵀ(y − ȳ).
fn ridge(zs: &[Vec<f64>], v: &[f64], train: &[usize], lambda: f64) -> (Vec<f64>, f64) {
    let d = zs[0].len();
    let y_mean = train.iter().map(|&i| v[i]).sum::<f64>() / train.len() as f64;
    let mut a = vec![0f64; d * d];
    let mut rhs = vec![0f64; d];
    for &i in train {
        let z = &zs[i];
        for r in 0..d {
            rhs[r] += z[r] * (v[i] - y_mean);
            for c in 0..d {
                a[r * d + c] += z[r] * z[c];
            }
        }
    }
    for r in 0..d {
        a[r * d + r] += lambda;
    }
    // Cholesky: A = L·Lᵀ (A is symmetric positive definite for λ > 0).
    let mut l = vec![0f64; d * d];
    for r in 0..d {
        for c in 0..=r {
            let mut s = a[r * d + c];
            for k in 0..c {
                s -= l[r * d + k] * l[c * d + k];
            }
            l[r * d + c] = if r == c {
                s.max(1e-300).sqrt()
            } else {
                s / l[c * d + c]
            };
        }
    }
    let mut t = vec![0f64; d];
    for r in 0..d {
        let s: f64 = (0..r).map(|k| l[r * d + k] * t[k]).sum();
        t[r] = (rhs[r] - s) / l[r * d + r];
    }
    let mut w = vec![0f64; d];
    for r in (0..d).rev() {
        let s: f64 = (r + 1..d).map(|k| l[k * d + r] * w[k]).sum();
        w[r] = (t[r] - s) / l[r * d + r];
    }
    // The intercept in standardised space: the training rows have mean zero.
    (w, y_mean)
}
