//! The sparse training pass of TopK and BatchTopK SAEs: the same losses and gradients as the
//! autograd pass (`Trainer::dense_pass`, which `GLASSBOX_SAE_DENSE=1` selects and the tests
//! compare with), computed knowing that each token has a handful of active features.
//!
//! Only the encoder's product `(x − b_dec)·W_enc` is dense (every pre-activation is needed to
//! choose the top ones). Decoding, the AuxK reconstruction and every gradient touch only the
//! chosen (token, feature) entries: with k = 32 of 6,144 features that is 1/200 of the dense
//! work, and no [batch, d_sae] tensor is allocated for the backward pass.
//!
//! With `r_j = ‖W_dec_j‖` and rescaling on (off: r = 1 in the first two lines):
//! ```text
//! p = (x − b_dec)·W_enc + b_enc      h = p·r            chosen: top k of h (TopK, per token)
//! a = relu(h)/r on chosen entries    x̂ = b_dec + Σ a_j W_dec_j        or of relu(h) (BatchTopK)
//! AuxK: a' = h/r on the top k_aux dead features, ê = Σ a'_j W_dec_j, target x − x̂ (fixed)
//! ```
//! Gradients flow back through `a` to `h` (and to `r` twice: through `h = p·r` and `a = …/r`),
//! from `h` to `p`, then to `W_enc`, `b_enc`, and `b_dec` through the input; from `r` to the
//! decoder rows (`∂r/∂W_dec_j = W_dec_j / r_j`).

use candle_core::{Device, Tensor};
use glassbox_models::kernel_ops;
use rayon::prelude::*;

use crate::error::Result;
use crate::sae::top_indices;
use crate::train::{Pass, TrainArch, Trainer};

/// A chosen (token, feature) entry with its pre-activation pieces.
#[derive(Clone, Copy)]
struct Entry {
    feature: u32,
    /// p (before rescaling) and the value decoded, a.
    p: f32,
    a: f32,
}

pub(crate) fn pass(t: &Trainer, x: &Tensor, dead: &[bool]) -> Result<Pass> {
    let o = &t.opts;
    let (n, d, m) = (x.dim(0)?, o.d_in, o.d_sae);
    let (k_tok, batch_keep, aux_coefficient, rescale) = match o.arch {
        TrainArch::TopK {
            k,
            aux_loss_coefficient,
            rescale_acts_by_decoder_norm,
        } => (k, None, aux_loss_coefficient, rescale_acts_by_decoder_norm),
        TrainArch::BatchTopK {
            k,
            aux_loss_coefficient,
            rescale_acts_by_decoder_norm,
            ..
        } => (
            0,
            Some(((k * n as f64) as usize).min(n * m)),
            aux_loss_coefficient,
            rescale_acts_by_decoder_norm,
        ),
        _ => unreachable!("the sparse pass serves TopK and BatchTopK"),
    };
    let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let b_dec: Vec<f32> = t.b_dec.as_tensor().to_vec1()?;
    let b_enc: Vec<f32> = t.b_enc.as_tensor().to_vec1()?;
    let w_dec: Vec<f32> = t.w_dec.as_tensor().flatten_all()?.to_vec1()?;
    let w_enc_t: Vec<f32> = t
        .w_enc
        .as_tensor()
        .t()?
        .contiguous()?
        .flatten_all()?
        .to_vec1()?;
    let r: Vec<f32> = if rescale {
        w_dec
            .chunks_exact(d)
            .map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect()
    } else {
        vec![1.0; m]
    };

    // The one dense product.
    let s: Vec<f32> = if o.apply_b_dec_to_input {
        xv.chunks_exact(d)
            .flat_map(|row| row.iter().zip(&b_dec).map(|(a, b)| a - b))
            .collect()
    } else {
        xv.clone()
    };
    let s_t = Tensor::from_vec(s.clone(), (n, d), &Device::Cpu)?;
    let mut p: Vec<f32> = kernel_ops::matmul(&s_t, t.w_enc.as_tensor())?
        .flatten_all()?
        .to_vec1()?;
    p.par_chunks_mut(m).for_each(|row| {
        for (v, b) in row.iter_mut().zip(&b_enc) {
            *v += b;
        }
    });
    let h_of = |i: usize| p[i] * r[i % m];

    // The chosen entries, row by row.
    let mut entries: Vec<Vec<Entry>> = match batch_keep {
        None => (0..n)
            .into_par_iter()
            .map(|row| {
                let h: Vec<f32> = (0..m).map(|j| h_of(row * m + j)).collect();
                top_indices(&h, k_tok)
                    .into_iter()
                    .filter(|&j| h[j as usize] > 0.0)
                    .map(|j| Entry {
                        feature: j,
                        p: p[row * m + j as usize],
                        a: h[j as usize] / r[j as usize],
                    })
                    .collect()
            })
            .collect(),
        Some(keep) => {
            let relu: Vec<f32> = (0..n * m)
                .into_par_iter()
                .map(|i| h_of(i).max(0.0))
                .collect();
            let mut rows: Vec<Vec<Entry>> = vec![Vec::new(); n];
            for i in top_indices(&relu, keep) {
                let i = i as usize;
                if relu[i] > 0.0 {
                    rows[i / m].push(Entry {
                        feature: (i % m) as u32,
                        p: p[i],
                        a: relu[i] / r[i % m],
                    });
                }
            }
            rows
        }
    };
    for row in &mut entries {
        row.sort_by_key(|e| e.feature);
    }

    // Decode, the error and the MSE.
    let decode = |row: &[Entry], with_bias: bool| -> Vec<f32> {
        let mut out = if with_bias {
            b_dec.clone()
        } else {
            vec![0.0; d]
        };
        for e in row {
            let w = &w_dec[e.feature as usize * d..(e.feature as usize + 1) * d];
            for (o, wv) in out.iter_mut().zip(w) {
                *o += e.a * wv;
            }
        }
        out
    };
    let x_hat: Vec<Vec<f32>> = entries.par_iter().map(|row| decode(row, true)).collect();
    let err: Vec<f32> = x_hat
        .iter()
        .zip(xv.chunks_exact(d))
        .flat_map(|(xh, xr)| xh.iter().zip(xr).map(|(a, b)| a - b))
        .collect();
    let mse = err
        .chunks_exact(d)
        .map(|e| e.iter().map(|v| v * v).sum::<f32>() as f64)
        .sum::<f64>()
        / n as f64;

    // AuxK on the dead features.
    let num_dead = dead.iter().filter(|&&x| x).count();
    let mut aux = 0.0f64;
    let mut aux_entries: Vec<Vec<Entry>> = vec![Vec::new(); n];
    let mut aux_grad: Vec<f32> = Vec::new();
    if num_dead > 0 {
        let k_aux = d / 2;
        let scale = (num_dead as f64 / k_aux.max(1) as f64).min(1.0);
        let k_aux = k_aux.min(num_dead);
        let dead_ids: Vec<u32> = (0..m as u32).filter(|&j| dead[j as usize]).collect();
        aux_entries = (0..n)
            .into_par_iter()
            .map(|row| {
                let h: Vec<f32> = dead_ids
                    .iter()
                    .map(|&j| h_of(row * m + j as usize))
                    .collect();
                let mut chosen: Vec<Entry> = top_indices(&h, k_aux)
                    .into_iter()
                    .map(|i| {
                        let j = dead_ids[i as usize] as usize;
                        Entry {
                            feature: j as u32,
                            p: p[row * m + j],
                            a: h[i as usize] / r[j],
                        }
                    })
                    .collect();
                chosen.sort_by_key(|e| e.feature);
                chosen
            })
            .collect();
        // ê − (x − x̂) = ê + err, per token.
        let diff: Vec<f32> = aux_entries
            .par_iter()
            .enumerate()
            .flat_map_iter(|(row, chosen)| {
                let e_hat = decode(chosen, false);
                let e = &err[row * d..(row + 1) * d];
                e_hat
                    .into_iter()
                    .zip(e)
                    .map(|(a, b)| a + b)
                    .collect::<Vec<f32>>()
            })
            .collect();
        let c = aux_coefficient * scale;
        aux = c * diff
            .chunks_exact(d)
            .map(|v| v.iter().map(|x| x * x).sum::<f32>() as f64)
            .sum::<f64>()
            / n as f64;
        let g = (2.0 * c / n as f64) as f32;
        aux_grad = diff.iter().map(|v| v * g).collect();
    }

    // Backward. Per token: the gradient reaching each entry's h (and through it p), and the
    // decoder-norm gradient contributions; per feature: the weight gradients.
    let g_scale = 2.0 / n as f32;
    let g_xhat: Vec<f32> = err.iter().map(|e| e * g_scale).collect();
    struct Back {
        /// (feature, ∂L/∂p, ∂L/∂r part) per entry, main then aux.
        main: Vec<(u32, f32, f32)>,
        aux: Vec<(u32, f32, f32)>,
        /// ∂L/∂s for the token.
        g_s: Vec<f32>,
    }
    let back: Vec<Back> = (0..n)
        .into_par_iter()
        .map(|row| {
            let gx = &g_xhat[row * d..(row + 1) * d];
            let mut g_s = vec![0f32; d];
            // Main entries have h > 0 (ReLU passes the gradient); AuxK's are not ReLU'd.
            let mut entry_grad = |e: &Entry, g_out: &[f32]| -> (u32, f32, f32) {
                let j = e.feature as usize;
                let w = &w_dec[j * d..(j + 1) * d];
                let g_a: f32 = w.iter().zip(g_out).map(|(a, b)| a * b).sum();
                // a = v / r with v = relu(h) (main) or h (aux); h = p·r.
                let g_h = g_a / r[j];
                let mut g_r = -e.a / r[j] * g_a;
                let g_p = g_h * r[j];
                g_r += g_h * e.p;
                let we = &w_enc_t[j * d..(j + 1) * d];
                for (gs, wv) in g_s.iter_mut().zip(we) {
                    *gs += g_p * wv;
                }
                (e.feature, g_p, g_r)
            };
            let main = entries[row].iter().map(|e| entry_grad(e, gx)).collect();
            let aux = if aux_grad.is_empty() {
                Vec::new()
            } else {
                let ga = &aux_grad[row * d..(row + 1) * d];
                aux_entries[row].iter().map(|e| entry_grad(e, ga)).collect()
            };
            Back { main, aux, g_s }
        })
        .collect();

    // Per feature: its entries (row order), then its weight gradients.
    // (row, ∂L/∂p, ∂L/∂r part, decoded value, main rather than AuxK)
    type FeatureEntry = (u32, f32, f32, f32, bool);
    let mut by_feature: Vec<Vec<FeatureEntry>> = vec![Vec::new(); m];
    for (row, b) in back.iter().enumerate() {
        for (e, &(j, g_p, g_r)) in entries[row].iter().zip(&b.main) {
            by_feature[j as usize].push((row as u32, g_p, g_r, e.a, true));
        }
        for (e, &(j, g_p, g_r)) in aux_entries[row].iter().zip(&b.aux) {
            by_feature[j as usize].push((row as u32, g_p, g_r, e.a, false));
        }
    }
    let per_feature: Vec<(Vec<f32>, Vec<f32>, f32)> = by_feature
        .par_iter()
        .enumerate()
        .map(|(j, list)| {
            let mut g_wdec = vec![0f32; d];
            let mut g_wenc = vec![0f32; d];
            let mut g_benc = 0f32;
            let mut g_r = 0f32;
            for &(row, g_p, gr, a, main) in list {
                let row = row as usize;
                let g_out = if main {
                    &g_xhat[row * d..(row + 1) * d]
                } else {
                    &aux_grad[row * d..(row + 1) * d]
                };
                for (g, go) in g_wdec.iter_mut().zip(g_out) {
                    *g += a * go;
                }
                let sr = &s[row * d..(row + 1) * d];
                for (g, sv) in g_wenc.iter_mut().zip(sr) {
                    *g += g_p * sv;
                }
                g_benc += g_p;
                g_r += gr;
            }
            if rescale && g_r != 0.0 {
                let w = &w_dec[j * d..(j + 1) * d];
                for (g, wv) in g_wdec.iter_mut().zip(w) {
                    *g += g_r * wv / r[j];
                }
            }
            (g_wdec, g_wenc, g_benc)
        })
        .collect();

    let mut g_w_dec = Vec::with_capacity(m * d);
    let mut g_w_enc_t = Vec::with_capacity(m * d);
    let mut g_b_enc = Vec::with_capacity(m);
    for (gd, ge, gb) in per_feature {
        g_w_dec.extend(gd);
        g_w_enc_t.extend(ge);
        g_b_enc.push(gb);
    }
    let mut g_b_dec = vec![0f32; d];
    for row in 0..n {
        for (g, v) in g_b_dec.iter_mut().zip(&g_xhat[row * d..(row + 1) * d]) {
            *g += v;
        }
        if o.apply_b_dec_to_input {
            for (g, v) in g_b_dec.iter_mut().zip(&back[row].g_s) {
                *g -= v;
            }
        }
    }

    let mut fired_tokens = vec![0u64; m];
    let mut active = 0usize;
    let mut min_active = f64::INFINITY;
    for row in &entries {
        for e in row {
            fired_tokens[e.feature as usize] += 1;
            active += 1;
            min_active = min_active.min((e.a * r[e.feature as usize]) as f64);
        }
    }
    let dev = &Device::Cpu;
    let grads = vec![
        Tensor::from_vec(g_w_enc_t, (m, d), dev)?
            .t()?
            .contiguous()?,
        Tensor::from_vec(g_b_enc, m, dev)?,
        Tensor::from_vec(g_w_dec, (m, d), dev)?,
        Tensor::from_vec(g_b_dec, d, dev)?,
    ];
    Ok(Pass {
        mse,
        aux,
        grads,
        fired_tokens,
        active,
        min_active,
    })
}
