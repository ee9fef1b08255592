//! The statistics a probe's scores are judged by: Wilson's interval of an accuracy, a
//! bootstrap interval of R², ROC AUC, and the normal quantiles they need.

use glassbox_models::rng::SplitMix64;

/// The 95 % Wilson score interval of a proportion of `k` in `n` (all of [0, 1] for n = 0).
/// Unlike the normal approximation it stays inside [0, 1] and is not empty at k = 0 or n.
pub fn wilson_interval(k: usize, n: usize) -> [f64; 2] {
    wilson_interval_z(k, n, 1.959_963_984_540_054)
}

/// Wilson's interval with `z` standard deviations on each side.
pub(super) fn wilson_interval_z(k: usize, n: usize, z: f64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = z * z;
    let den = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / den;
    let half = z / den * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

/// The standard normal quantile of `p` in (0, 1): Acklam's rational approximation (relative
/// error below 1.2e-9), enough for the z of an interval.
pub(super) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Resamples of the held-out set for an R² interval: enough for the 0.025 / 20 quantile.
const BOOTSTRAP_RESAMPLES: usize = 4000;

/// The bootstrap percentile interval [q, 1 − q] of R² over `held_out` (actual, predicted)
/// pairs, seeded: each resample draws as many pairs with replacement.
pub(super) fn r2_interval(held_out: &[(f64, f64)], q: f64, seed: u64) -> Option<[f64; 2]> {
    if held_out.len() < 2
        || held_out
            .iter()
            .any(|(a, p)| !(a.is_finite() && p.is_finite()))
    {
        return None;
    }
    let mut rng = SplitMix64::keyed(seed, "probe/bootstrap");
    let n = held_out.len();
    let mut scores: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let draw: Vec<&(f64, f64)> = (0..n)
                .map(|_| &held_out[(rng.next_u64() % n as u64) as usize])
                .collect();
            let mean = draw.iter().map(|(a, _)| a).sum::<f64>() / n as f64;
            let ss_tot: f64 = draw.iter().map(|(a, _)| (a - mean).powi(2)).sum();
            let ss_res: f64 = draw.iter().map(|(a, p)| (a - p).powi(2)).sum();
            if ss_tot == 0.0 {
                0.0
            } else {
                1.0 - ss_res / ss_tot
            }
        })
        .collect();
    scores.sort_by(f64::total_cmp);
    let at =
        |f: f64| scores[((f * BOOTSTRAP_RESAMPLES as f64) as usize).min(BOOTSTRAP_RESAMPLES - 1)];
    Some([at(q), at(1.0 - q)])
}

/// ROC AUC from (score, positive) pairs: the probability that a positive outscores a negative
/// (ties count half). None when one class is missing.
pub(super) fn roc_auc(scored: &[(f64, bool)]) -> Option<f64> {
    let pos: Vec<f64> = scored.iter().filter(|s| s.1).map(|s| s.0).collect();
    let neg: Vec<f64> = scored.iter().filter(|s| !s.1).map(|s| s.0).collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut wins = 0f64;
    for p in &pos {
        for q in &neg {
            wins += if p > q {
                1.0
            } else if p == q {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (pos.len() * neg.len()) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wilson_interval_matches_its_formula() {
        // 2 of 2: the interval of a perfect score on two examples still reaches 0.34
        let [lo, hi] = wilson_interval(2, 2);
        assert!((lo - 0.3424).abs() < 1e-4 && hi == 1.0, "{lo} {hi}");
        let [lo, hi] = wilson_interval(50, 100);
        assert!(
            (lo - 0.4038).abs() < 1e-4 && (hi - 0.5962).abs() < 1e-4,
            "{lo} {hi}"
        );
        assert_eq!(wilson_interval(0, 0), [0.0, 1.0]);
    }

    #[test]
    fn normal_quantiles_are_the_tables() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-6);
        assert!((normal_quantile(0.001) + 3.090_232).abs() < 1e-6);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.025 / 15.0) + 2.935_199).abs() < 1e-5);
    }

    #[test]
    fn auc_counts_pairs() {
        assert_eq!(roc_auc(&[(1.0, true), (0.0, false)]), Some(1.0));
        assert_eq!(roc_auc(&[(0.0, true), (1.0, false)]), Some(0.0));
        assert_eq!(roc_auc(&[(1.0, true), (1.0, false)]), Some(0.5));
        assert_eq!(roc_auc(&[(1.0, true)]), None);
    }
}
