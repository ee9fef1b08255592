//! Training SAEs as SAELens 6 trains them (`TrainingSAE.training_forward_pass` and
//! `SAETrainer`): the same objectives, initialisation, Adam, gradient clipping, learning-rate
//! and coefficient schedules and dead-feature handling, so that from the same weights on the
//! same batches glassbox ends where SAELens does (tested on SAELens's own runs).
//!
//! - **standard**: ReLU; loss = MSE + c·mean‖f ⊙ ‖W_dec‖‖_p, `c` warmed up linearly from 0 over
//!   `l1_warm_up_steps`.
//! - **topk** / **batchtopk**: pre-activations scaled by the decoder rows' norms
//!   (`rescale_acts_by_decoder_norm`); TopK keeps each token's k largest, BatchTopK the
//!   k·batch largest of the whole batch; both add the AuxK loss of the features dead for more
//!   than `dead_feature_window` steps. BatchTopK tracks the threshold its inference form (a
//!   JumpReLU SAE) uses: an average of the smallest active value, rate `topk_threshold_lr`.
//!
//! MSE is summed over d_in and averaged over the batch, as in SAELens. Every step clips the
//! gradients' global norm to 1; Adam has no weight decay; the decoder is not renormalised.

use candle_core::{DType, Device, Tensor, Var};
use glassbox_models::rng::SplitMix64;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{FeatureError, Result};
use crate::sae::{linear, Activation, Normalization, Sae, SaeConfig};

pub use crate::train_options::{LrScheduler, TrainArch, TrainOptions};

/// What one step's forward and backward passes give the optimiser and the statistics.
pub(crate) struct Pass {
    pub mse: f64,
    pub aux: f64,
    /// Gradients in the order of `Trainer::params`.
    pub grads: Vec<Tensor>,
    /// Tokens of the batch each feature fired on.
    pub fired_tokens: Vec<u64>,
    /// Non-zero activations in the batch, and the smallest positive one.
    pub active: usize,
    pub min_active: f64,
}

/// One step's log, SAELens's names.
#[derive(Clone, Debug, Serialize)]
pub struct StepLog {
    pub step: usize,
    pub lr: f64,
    pub loss: f64,
    pub mse_loss: f64,
    /// `l1_loss` (standard) or `auxiliary_reconstruction_loss` (TopK, BatchTopK).
    pub aux_loss: f64,
    /// Mean features active per token.
    pub l0: f64,
    /// 1 − mean‖x − x̂‖² / mean‖x − mean x‖² over the batch.
    pub explained_variance: f64,
    pub dead_features: usize,
}

/// An SAE being trained.
pub struct Trainer {
    pub opts: TrainOptions,
    pub w_enc: Var,
    pub b_enc: Var,
    pub w_dec: Var,
    pub b_dec: Var,
    /// JumpReLU's learnt per-feature threshold [d_sae] (a fifth parameter).
    pub threshold: Option<Var>,
    /// BatchTopK's running threshold (f64, as SAELens keeps it).
    pub topk_threshold: f64,
    adam: Vec<(Tensor, Tensor)>,
    /// Steps since each feature last fired.
    since_fired: Vec<u64>,
    /// Tokens each feature fired on, and tokens seen, in the current sampling window.
    fired_counts: Vec<u64>,
    window_tokens: u64,
    pub step: usize,
    /// Compute every step through candle's autograd, never the sparse pass.
    pub dense_reference: bool,
    /// The factor activations are multiplied by before each step (see
    /// `TrainOptions::normalize_activations`); folded into the saved SAE.
    pub activation_scale: Option<f64>,
}

/// JumpReLU `h·[h > t]` and the step `[h > t]` (whose row sums are L0), with SAELens's
/// gradients: through the JumpReLU, `[h > t]·g` to h and −Σ_batch (t/bw)·rect((h − t)/bw)·g to
/// t; through the step, only −Σ_batch (1/bw)·rect((h − t)/bw)·g to t (rect: 1 on (−½, ½)).
/// Each gradient to t rides on a term `t·c − (t·c).detach()`: zero in value, `c` in gradient.
fn jump_relu_with_step(h: &Tensor, t: &Tensor, bw: f64) -> Result<(Tensor, Tensor)> {
    let hd = h.detach();
    let td = t.detach();
    let gate = hd.broadcast_gt(&td)?.to_dtype(DType::F32)?;
    let z = hd.broadcast_sub(&td)?.affine(1.0 / bw, 0.0)?;
    let rect = z
        .gt(-0.5)?
        .to_dtype(DType::F32)?
        .mul(&z.lt(0.5)?.to_dtype(DType::F32)?)?;
    let ste_through = |c: Tensor| -> Result<Tensor> {
        let tc = t.broadcast_mul(&c)?;
        Ok((&tc - tc.detach())?)
    };
    let c_jump = rect.broadcast_mul(&td)?.affine(-1.0 / bw, 0.0)?;
    let f = ((h * &gate)? + ste_through(c_jump)?)?;
    let c_step = rect.affine(-1.0 / bw, 0.0)?;
    let step = (gate + ste_through(c_step)?)?;
    Ok((f, step))
}

impl Trainer {
    /// SAELens's initialisation: W_dec Kaiming-uniform (bound √(6 / d_in)), its rows scaled to
    /// `decoder_init_norm`, W_enc its transpose, biases zero; drawn from `seed`.
    pub fn new(opts: TrainOptions) -> Result<Trainer> {
        opts.check()?;
        let (d_in, d_sae) = (opts.d_in, opts.d_sae);
        let bound = (6.0 / d_in as f64).sqrt() as f32;
        let mut rng = SplitMix64::keyed(opts.seed, "sae/W_dec");
        let w: Vec<f32> = (0..d_sae * d_in)
            .map(|_| (2.0 * rng.unit() as f32 - 1.0) * bound)
            .collect();
        let mut w_dec = Tensor::from_vec(w, (d_sae, d_in), &Device::Cpu)?;
        if let Some(norm) = opts.decoder_init_norm {
            let n = w_dec.sqr()?.sum_keepdim(1)?.sqrt()?;
            w_dec = w_dec.broadcast_div(&n)?.affine(norm, 0.0)?;
        }
        let w_enc = w_dec.t()?.contiguous()?;
        let zeros = |n: usize| Tensor::zeros(n, DType::F32, &Device::Cpu);
        Self::from_weights(opts, w_enc, zeros(d_sae)?, w_dec, zeros(d_in)?, 0.0)
    }

    /// Starts from given weights (another trainer's, or a checkpoint's).
    pub fn from_weights(
        opts: TrainOptions,
        w_enc: Tensor,
        b_enc: Tensor,
        w_dec: Tensor,
        b_dec: Tensor,
        topk_threshold: f64,
    ) -> Result<Trainer> {
        opts.check()?;
        let (d_in, d_sae) = (opts.d_in, opts.d_sae);
        for (name, t, shape) in [
            ("W_enc", &w_enc, vec![d_in, d_sae]),
            ("b_enc", &b_enc, vec![d_sae]),
            ("W_dec", &w_dec, vec![d_sae, d_in]),
            ("b_dec", &b_dec, vec![d_in]),
        ] {
            if t.dims() != shape.as_slice() {
                return Err(FeatureError::input(format!(
                    "{name} has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
        }
        let threshold = match opts.arch {
            TrainArch::JumpRelu {
                jumprelu_init_threshold,
                ..
            } => Some(Var::from_tensor(&Tensor::full(
                jumprelu_init_threshold as f32,
                d_sae,
                &Device::Cpu,
            )?)?),
            _ => None,
        };
        let mut vars = vec![&w_enc, &b_enc, &w_dec, &b_dec];
        if let Some(t) = &threshold {
            vars.push(t.as_tensor());
        }
        let adam = vars
            .iter()
            .map(|t| Ok((t.zeros_like()?, t.zeros_like()?)))
            .collect::<Result<Vec<_>>>()?;
        let var = |t: Tensor| Var::from_tensor(&t.to_dtype(DType::F32)?);
        Ok(Trainer {
            threshold,
            w_enc: var(w_enc)?,
            b_enc: var(b_enc)?,
            w_dec: var(w_dec)?,
            b_dec: var(b_dec)?,
            topk_threshold,
            adam,
            since_fired: vec![0; d_sae],
            fired_counts: vec![0; d_sae],
            window_tokens: 0,
            step: 0,
            dense_reference: std::env::var("GLASSBOX_SAE_DENSE").as_deref() == Ok("1"),
            activation_scale: None,
            opts,
        })
    }

    fn params(&self) -> Vec<&Var> {
        let mut p = vec![&self.w_enc, &self.b_enc, &self.w_dec, &self.b_dec];
        if let Some(t) = &self.threshold {
            p.push(t);
        }
        p
    }

    /// The coefficient of the sparsity term (L1 or L0) at this step: SAELens's linear
    /// warm-up from 0.
    fn sparsity_coefficient(&self) -> f64 {
        let (c, warm) = match self.opts.arch {
            TrainArch::Standard {
                l1_coefficient,
                l1_warm_up_steps,
                ..
            } => (l1_coefficient, l1_warm_up_steps),
            TrainArch::JumpRelu {
                l0_coefficient,
                l0_warm_up_steps,
                ..
            } => (l0_coefficient, l0_warm_up_steps),
            _ => return 0.0,
        };
        if self.step < warm {
            c * self.step as f64 / warm as f64
        } else {
            c
        }
    }

    /// Whether this step takes the sparse path (TopK and BatchTopK: each token's features
    /// are a few, so decoding and every gradient but the encoder's product touch only them).
    /// `dense_reference` (or `GLASSBOX_SAE_DENSE=1`) forces the autograd path, the reference
    /// it is tested against.
    fn sparse_path(&self) -> bool {
        matches!(
            self.opts.arch,
            TrainArch::TopK { .. } | TrainArch::BatchTopK { .. }
        ) && !self.dense_reference
    }

    /// One step on `x` [batch, d_in].
    pub fn train_step(&mut self, x: &Tensor) -> Result<StepLog> {
        let x = x.to_dtype(DType::F32)?;
        let x = match self.activation_scale {
            Some(scale) => (x * scale)?,
            None => x,
        };
        let (n, d) = x.dims2()?;
        if d != self.opts.d_in || n == 0 {
            return Err(FeatureError::input(format!(
                "a batch of activations is [rows, {}], got {:?}",
                self.opts.d_in,
                x.dims()
            )));
        }
        let window = self.opts.dead_feature_window as u64;
        let dead: Vec<bool> = self.since_fired.iter().map(|&s| s > window).collect();

        // JumpReLU's threshold is kept non-negative by projection before each step.
        if let Some(t) = &self.threshold {
            t.set(&t.as_tensor().relu()?)?;
        }
        let pass = if self.sparse_path() {
            crate::train_sparse::pass(self, &x, &dead)?
        } else {
            self.dense_pass(&x, &dead)?
        };

        // A loss that is no longer a number would be trained on into NaN weights.
        if !(pass.mse + pass.aux).is_finite() {
            return Err(FeatureError::input(format!(
                "training diverged at step {} (the loss is {}); nothing was written: lower --lr or the loss's coefficients",
                self.step + 1,
                pass.mse + pass.aux
            )));
        }
        let window_len = self.opts.feature_sampling_window.max(1);
        if self.step > 0 && self.step.is_multiple_of(window_len) {
            self.fired_counts.iter_mut().for_each(|c| *c = 0);
            self.window_tokens = 0;
        }
        for (c, &f) in self.fired_counts.iter_mut().zip(&pass.fired_tokens) {
            *c += f;
        }
        let centred = x.broadcast_sub(&x.mean_keepdim(0)?)?;
        let variance = centred.sqr()?.sum(1)?.mean(0)?.to_scalar::<f32>()? as f64;

        // Clip to global norm 1, Adam.
        let gs = pass.grads;
        let norms_sq: f64 = gs
            .iter()
            .map(|g| -> Result<f64> {
                let n = g.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt() as f64;
                Ok(n * n)
            })
            .sum::<Result<f64>>()?;
        let total = norms_sq.sqrt();
        let clip = (1.0 / (total + 1e-6)).min(1.0);
        let lr = self.opts.lr_at(self.step);
        let t = (self.step + 1) as i32;
        let (b1, b2, eps) = (self.opts.adam_beta1, self.opts.adam_beta2, 1e-8);
        let bc1 = 1.0 - b1.powi(t);
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        let params: Vec<Var> = self.params().into_iter().cloned().collect();
        for ((p, g), (m, v)) in params.iter().zip(gs).zip(self.adam.iter_mut()) {
            let g = (g * clip)?;
            // torch's Adam: m ← m + (1 − β1)(g − m); v ← β2·v + (1 − β2)·g²;
            // p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε).
            *m = (&*m + ((&g - &*m)? * (1.0 - b1))?)?;
            *v = ((&*v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let denom = ((v.sqrt()? / bc2_sqrt)? + eps)?;
            let update = ((&*m / denom)? * (lr / bc1))?;
            p.set(&(p.as_tensor() - update)?)?;
        }

        if let TrainArch::BatchTopK {
            topk_threshold_lr, ..
        } = self.opts.arch
        {
            if pass.min_active.is_finite() {
                self.topk_threshold = (1.0 - topk_threshold_lr) * self.topk_threshold
                    + topk_threshold_lr * pass.min_active;
            }
        }
        self.window_tokens += n as u64;
        for (s, &f) in self.since_fired.iter_mut().zip(&pass.fired_tokens) {
            *s = if f > 0 { 0 } else { *s + 1 };
        }
        let log = StepLog {
            step: self.step,
            lr,
            loss: pass.mse + pass.aux,
            mse_loss: pass.mse,
            aux_loss: pass.aux,
            l0: pass.active as f64 / n as f64,
            explained_variance: 1.0 - pass.mse / variance,
            dead_features: self.since_fired.iter().filter(|&&s| s > window).count(),
        };
        self.step += 1;
        Ok(log)
    }

    /// The step's losses and gradients through candle's autograd (every architecture).
    fn dense_pass(&self, x: &Tensor, dead: &[bool]) -> Result<Pass> {
        let x = x.clone();
        let n = x.dim(0)?;
        let num_dead = dead.iter().filter(|&&d| d).count();
        let w_enc = self.w_enc.as_tensor();
        let w_dec = self.w_dec.as_tensor();
        let sae_in = if self.opts.apply_b_dec_to_input {
            x.broadcast_sub(self.b_dec.as_tensor())?
        } else {
            x.clone()
        };
        let mut h = linear(&sae_in, w_enc)?.broadcast_add(self.b_enc.as_tensor())?;
        let norms = w_dec.sqr()?.sum(1)?.sqrt()?;
        let (rescale, aux_coefficient) = match self.opts.arch {
            TrainArch::Standard { .. } | TrainArch::JumpRelu { .. } => (false, 0.0),
            TrainArch::TopK {
                rescale_acts_by_decoder_norm,
                aux_loss_coefficient,
                ..
            }
            | TrainArch::BatchTopK {
                rescale_acts_by_decoder_norm,
                aux_loss_coefficient,
                ..
            } => (rescale_acts_by_decoder_norm, aux_loss_coefficient),
        };
        if rescale {
            h = h.broadcast_mul(&norms)?;
        }
        let h_values: Vec<f32> = h.flatten_all()?.to_vec1()?;
        let d_sae = self.opts.d_sae;
        let mut l0_term = None;
        let f = match self.opts.arch {
            TrainArch::Standard { .. } => h.relu()?,
            TrainArch::JumpRelu {
                jumprelu_bandwidth: bw,
                ..
            } => {
                let t = self
                    .threshold
                    .as_ref()
                    .expect("JumpReLU has a threshold")
                    .as_tensor();
                let (f, step) = jump_relu_with_step(&h, t, bw)?;
                l0_term = Some(step);
                f
            }
            TrainArch::TopK { k, .. } => {
                let mask = crate::sae::top_k_mask(&h.detach(), k)?;
                (h.relu()? * mask)?
            }
            TrainArch::BatchTopK { k, .. } => {
                // The int(k·batch) largest ReLU'd values of the whole batch.
                let keep = ((k * n as f64) as usize).min(n * d_sae);
                let relu: Vec<f32> = h_values.iter().map(|v| v.max(0.0)).collect();
                let idx = crate::sae::top_indices(&relu, keep);
                let mut mask = vec![0f32; relu.len()];
                for i in idx {
                    mask[i as usize] = 1.0;
                }
                let mask = Tensor::from_vec(mask, (n, d_sae), &Device::Cpu)?;
                (h.relu()? * mask)?
            }
        };
        let decode_in = if rescale {
            f.broadcast_div(&norms)?
        } else {
            f.clone()
        };
        let x_hat = linear(&decode_in, w_dec)?.broadcast_add(self.b_dec.as_tensor())?;
        let err = (&x_hat - &x)?;
        let mse = err.sqr()?.sum(1)?.mean(0)?;

        let aux = match self.opts.arch {
            TrainArch::JumpRelu { .. } => {
                let step = l0_term.expect("computed with the activations");
                (step.sum(1)?.mean(0)? * self.sparsity_coefficient())?
            }
            TrainArch::Standard { lp_norm, .. } => {
                let weighted = f.broadcast_mul(&norms)?.abs()?;
                let per_row = if lp_norm == 1.0 {
                    weighted.sum(1)?
                } else {
                    weighted.powf(lp_norm)?.sum(1)?.powf(1.0 / lp_norm)?
                };
                (per_row.mean(0)? * self.sparsity_coefficient())?
            }
            _ if num_dead == 0 => Tensor::zeros((), DType::F32, &Device::Cpu)?,
            _ => {
                // AuxK: the dead features' top pre-activations (not ReLU'd) reconstruct the
                // residual the live ones left, without b_dec.
                let k_aux = self.opts.d_in / 2;
                let scale = (num_dead as f64 / k_aux.max(1) as f64).min(1.0);
                let k_aux = k_aux.min(num_dead);
                let dead_h: Vec<f32> = h_values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        if dead[i % d_sae] {
                            v
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                    .collect();
                let dead_h = Tensor::from_vec(dead_h, (n, d_sae), &Device::Cpu)?;
                let mask = crate::sae::top_k_mask(&dead_h, k_aux)?;
                let a = (h.clone() * mask)?;
                let a = if rescale { a.broadcast_div(&norms)? } else { a };
                let e_hat = linear(&a, w_dec)?;
                let residual = (&x - &x_hat)?.detach();
                ((e_hat - residual)?.sqr()?.sum(1)?.mean(0)? * (aux_coefficient * scale))?
            }
        };
        let loss = (&mse + &aux)?;
        let f_values: Vec<f32> = f.flatten_all()?.to_vec1()?;
        let mut fired_tokens = vec![0u64; d_sae];
        let mut active = 0usize;
        let mut min_active = f64::INFINITY;
        for (i, &v) in f_values.iter().enumerate() {
            if v != 0.0 {
                fired_tokens[i % d_sae] += 1;
                active += 1;
            }
            if v > 0.0 {
                min_active = min_active.min(v as f64);
            }
        }
        let grads = loss.backward()?;
        let mut gs = Vec::with_capacity(5);
        for p in self.params() {
            gs.push(match grads.get(p.as_tensor()) {
                Some(g) => g.clone(),
                None => p.as_tensor().zeros_like()?,
            });
        }
        Ok(Pass {
            mse: mse.to_scalar::<f32>()? as f64,
            aux: aux.to_scalar::<f32>()? as f64,
            grads: gs,
            fired_tokens,
            active,
            min_active,
        })
    }

    /// Each feature's firing frequency over the current sampling window.
    pub fn feature_sparsity(&self) -> Vec<f64> {
        let n = self.window_tokens.max(1) as f64;
        self.fired_counts.iter().map(|&c| c as f64 / n).collect()
    }

    /// Features that have not fired for more than `dead_feature_window` steps.
    pub fn dead_features(&self) -> usize {
        let window = self.opts.dead_feature_window as u64;
        self.since_fired.iter().filter(|&&s| s > window).count()
    }

    /// Writes the inference SAE as SAELens's training runner does at the end: `cfg.json` (its
    /// metadata with `l0` and `num_dead_features`), `sae_weights.safetensors`, and
    /// `sparsity.safetensors` (log10 of each feature's firing frequency + 1e-10).
    pub fn save(&self, dir: &std::path::Path) -> Result<()> {
        // The last update may have left non-finite weights after the last finite loss.
        for p in self.params() {
            if !glassbox_models::ops::all_finite(p.as_tensor())? {
                return Err(FeatureError::input(format!(
                    "training diverged at step {}: the SAE's weights are not finite; nothing was written: lower --lr",
                    self.step
                )));
            }
        }
        let mut sae = self.to_sae()?;
        let sparsity = self.feature_sparsity();
        let l0: f64 = sparsity.iter().sum();
        sae.cfg.metadata.insert("l0".into(), json!(l0));
        sae.cfg
            .metadata
            .insert("num_dead_features".into(), json!(self.dead_features()));
        sae.save(dir)?;
        let log10: Vec<f32> = sparsity
            .iter()
            .map(|f| (f + 1e-10).log10() as f32)
            .collect();
        let n = log10.len();
        crate::write::safetensors(
            &dir.join(crate::sae::SPARSITY_FILE),
            &[("sparsity", Tensor::from_vec(log10, n, &Device::Cpu)?)],
        )
    }

    /// The SAE at inference, as SAELens's `save_inference_model` makes it: TopK and BatchTopK
    /// with the decoder norms folded into the encoder when rescaling; BatchTopK as JumpReLU
    /// with its running threshold.
    pub fn to_sae(&self) -> Result<Sae> {
        let o = &self.opts;
        let (activation, rescale) = match o.arch {
            TrainArch::Standard { .. } => (Activation::Relu, false),
            TrainArch::TopK {
                k,
                rescale_acts_by_decoder_norm,
                ..
            } => (
                Activation::TopK {
                    k,
                    rescale_acts_by_decoder_norm,
                },
                rescale_acts_by_decoder_norm,
            ),
            TrainArch::BatchTopK {
                rescale_acts_by_decoder_norm,
                ..
            } => (Activation::JumpRelu, rescale_acts_by_decoder_norm),
            TrainArch::JumpRelu { .. } => (Activation::JumpRelu, false),
        };
        let mut metadata = o.metadata.clone();
        metadata.insert("training_architecture".into(), json!(o.arch.name()));
        let hook_name = metadata
            .get("hook_name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut sae = Sae {
            cfg: SaeConfig {
                activation,
                d_in: o.d_in,
                d_sae: o.d_sae,
                dtype: DType::F32,
                apply_b_dec_to_input: o.apply_b_dec_to_input,
                normalize_activations: Normalization::None,
                // The store keeps hook_z's heads flattened; the SAE unflattens them to splice.
                reshape_hook_z: hook_name.ends_with(".hook_z"),
                hook_name,
                hook_head_index: None,
                metadata,
            },
            w_enc: self.w_enc.as_tensor().clone(),
            b_enc: self.b_enc.as_tensor().clone(),
            w_dec: self.w_dec.as_tensor().clone(),
            b_dec: self.b_dec.as_tensor().clone(),
            threshold: None,
            source: Default::default(),
        };
        // SAELens folds the activation scale first (W_enc·s, W_dec/s, b_dec/s; BatchTopK's
        // threshold, in units of decoder-norm-scaled activations, /s), then decoder norms.
        let mut topk_threshold = self.topk_threshold;
        if let Some(scale) = self.activation_scale {
            sae.w_enc = (&sae.w_enc * scale)?;
            sae.w_dec = (&sae.w_dec / scale)?;
            sae.b_dec = (&sae.b_dec / scale)?;
            if rescale {
                topk_threshold /= scale;
            }
        }
        if rescale {
            sae.fold_decoder_norm_into_encoder()?;
        }
        if let TrainArch::BatchTopK { .. } = o.arch {
            sae.threshold = Some(Tensor::full(topk_threshold as f32, o.d_sae, &Device::Cpu)?);
        }
        if let Some(t) = &self.threshold {
            sae.threshold = Some(t.as_tensor().clone());
        }
        Ok(sae)
    }
}

/// Trains on `hook`'s activations in `store`: batches of `train_batch_size_tokens` from the
/// shuffled reader (a mixing buffer of `buffer_rows`, `exclude` tokens left out), a fresh
/// seeded shuffle for each pass over the store, until `training_tokens`; `on_step` sees each
/// step's log (for progress, logs and checkpoints).
pub fn train_on_store(
    store: &crate::store::ActivationStore,
    hook: &str,
    opts: TrainOptions,
    buffer_rows: usize,
    exclude: Vec<u32>,
    mut on_step: impl FnMut(&Trainer, &StepLog) -> Result<()>,
) -> Result<Trainer> {
    let width = store.width(hook).unwrap_or(0);
    if width != opts.d_in {
        return Err(FeatureError::input(format!(
            "the store's `{hook}` activations have {width} values per token, the SAE reads {}",
            opts.d_in
        )));
    }
    let batch = opts.train_batch_size_tokens;
    let steps = opts.total_steps();
    let seed = opts.seed;
    let normalize = opts.normalize_activations;
    let estimate_batches = opts.n_batches_for_norm_estimate.max(1);
    let mut trainer = Trainer::new(opts)?;
    let mut pass = 0u64;
    let shuffle = |pass: u64| crate::store::ShuffleOptions {
        batch_size: batch,
        buffer_rows: buffer_rows.max(batch),
        seed: seed.wrapping_add(pass.wrapping_mul(0x9E37_79B9)),
        exclude_tokens: exclude.clone(),
    };
    if normalize {
        // √d_in over the mean activation norm of the first batches (SAELens's estimate).
        let mut reader = store.shuffled(hook, shuffle(u64::MAX))?;
        let (mut sum, mut count) = (0f64, 0usize);
        for _ in 0..estimate_batches {
            let Some(x) = reader.next_batch()? else { break };
            let norms: Vec<f32> = x.sqr()?.sum(1)?.sqrt()?.to_vec1()?;
            sum += norms.iter().map(|&v| v as f64).sum::<f64>();
            count += norms.len();
        }
        if count == 0 || sum <= 0.0 {
            return Err(FeatureError::input(format!(
                "no non-zero activations of `{hook}` to estimate a scale from"
            )));
        }
        trainer.activation_scale = Some((width as f64).sqrt() / (sum / count as f64));
    }
    let mut reader = store.shuffled(hook, shuffle(pass))?;
    while trainer.step < steps {
        let x = match reader.next_batch()? {
            // Only whole batches: a pass's remainder is dropped, as SAELens serves whole ones.
            Some(x) if x.dim(0)? == batch => x,
            _ => {
                pass += 1;
                if pass > 1 && trainer.step == 0 {
                    return Err(FeatureError::input(format!(
                        "the store holds fewer than {batch} usable activations of `{hook}`: no whole batch"
                    )));
                }
                reader = store.shuffled(hook, shuffle(pass))?;
                continue;
            }
        };
        let log = trainer.train_step(&x)?;
        on_step(&trainer, &log)?;
    }
    Ok(trainer)
}
