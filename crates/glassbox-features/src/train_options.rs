//! What an SAE training run is asked to do: the architecture with its loss's hyperparameters,
//! the schedules and sizes (named as SAELens names them), and the domain each setting must
//! lie in — checked before anything is allocated or trained.

use serde_json::{Map, Value};

use crate::error::{FeatureError, Result};

/// The architecture and its loss's hyperparameters, named as SAELens names them.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainArch {
    Standard {
        l1_coefficient: f64,
        lp_norm: f64,
        l1_warm_up_steps: usize,
    },
    TopK {
        k: usize,
        aux_loss_coefficient: f64,
        rescale_acts_by_decoder_norm: bool,
    },
    BatchTopK {
        k: f64,
        aux_loss_coefficient: f64,
        rescale_acts_by_decoder_norm: bool,
        topk_threshold_lr: f64,
    },
    /// JumpReLU with SAELens's `step` sparsity loss: c·mean L0, the threshold learnt through
    /// straight-through estimators with a rectangle kernel of width `jumprelu_bandwidth`.
    JumpRelu {
        jumprelu_init_threshold: f64,
        jumprelu_bandwidth: f64,
        l0_coefficient: f64,
        l0_warm_up_steps: usize,
    },
}

impl TrainArch {
    pub fn name(&self) -> &'static str {
        match self {
            TrainArch::Standard { .. } => "standard",
            TrainArch::TopK { .. } => "topk",
            TrainArch::BatchTopK { .. } => "batchtopk",
            TrainArch::JumpRelu { .. } => "jumprelu",
        }
    }
}

/// SAELens's learning-rate schedules (`lr_scheduler_name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrScheduler {
    Constant,
    CosineAnnealing,
}

/// Everything a training run depends on, with SAELens's names and defaults.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub arch: TrainArch,
    pub d_in: usize,
    pub d_sae: usize,
    pub apply_b_dec_to_input: bool,
    /// Decoder rows start at this norm (SAELens's default 0.1; None: as drawn).
    pub decoder_init_norm: Option<f64>,
    pub lr: f64,
    /// Where cosine annealing ends and linear decay starts (default lr / 10).
    pub lr_end: Option<f64>,
    pub lr_scheduler: LrScheduler,
    pub lr_warm_up_steps: usize,
    pub lr_decay_steps: usize,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    /// Activations per step (`train_batch_size_tokens`).
    pub train_batch_size_tokens: usize,
    /// Activations in all (`training_tokens`).
    pub training_tokens: usize,
    pub dead_feature_window: usize,
    /// Steps over which feature firing frequencies are counted before they reset (the last
    /// window's frequencies are saved as `sparsity.safetensors`).
    pub feature_sampling_window: usize,
    pub seed: u64,
    /// SAELens's `normalize_activations: expected_average_only_in`: activations are scaled by
    /// √d_in / (their mean norm over the first `n_batches_for_norm_estimate` batches) while
    /// training, and the scale is folded into the weights of the SAE that is saved.
    pub normalize_activations: bool,
    pub n_batches_for_norm_estimate: usize,
    /// Written into the saved SAE's metadata (hook_name among them).
    pub metadata: Map<String, Value>,
}

impl TrainOptions {
    pub fn total_steps(&self) -> usize {
        self.training_tokens / self.train_batch_size_tokens.max(1)
    }

    /// SAELens's learning rate at step `s` (0-based).
    pub fn lr_at(&self, s: usize) -> f64 {
        let lr = self.lr;
        let lr_end = self.lr_end.unwrap_or(lr / 10.0);
        let (w, d, total) = (
            self.lr_warm_up_steps,
            self.lr_decay_steps,
            self.total_steps(),
        );
        if s < w {
            return if w == 1 {
                lr
            } else {
                lr * (1.0 / w as f64 + (1.0 - 1.0 / w as f64) * s as f64 / (w - 1) as f64)
            };
        }
        let decay_start = total.saturating_sub(d);
        if d > 0 && s >= decay_start {
            let from = match self.lr_scheduler {
                LrScheduler::Constant => lr,
                LrScheduler::CosineAnnealing => lr_end,
            };
            return from * (1.0 - (s - decay_start) as f64 / d as f64);
        }
        match self.lr_scheduler {
            LrScheduler::Constant => lr,
            LrScheduler::CosineAnnealing => {
                let main = total.saturating_sub(w + d).max(1) as f64;
                let t = (s - w) as f64;
                lr_end + (lr - lr_end) * (1.0 + (std::f64::consts::PI * t / main).cos()) / 2.0
            }
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        let bad = |m: String| Err(FeatureError::input(m));
        if self.d_in == 0 || self.d_sae == 0 {
            return bad("d_in and d_sae must be at least 1".into());
        }
        if self.train_batch_size_tokens == 0 || self.total_steps() == 0 {
            return bad(format!(
                "{} training tokens in batches of {} is no step",
                self.training_tokens, self.train_batch_size_tokens
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= f32::MAX as f64) {
            return bad(format!("lr {} must be a positive number", self.lr));
        }
        // Settings outside their domain trained to NaN weights, written with a normal summary.
        let mut settings: Vec<(&str, f64, Domain)> = vec![
            ("adam_beta1", self.adam_beta1, Domain::Fraction),
            ("adam_beta2", self.adam_beta2, Domain::Fraction),
        ];
        if let Some(norm) = self.decoder_init_norm {
            settings.push(("decoder_init_norm", norm, Domain::Positive));
        }
        if let Some(end) = self.lr_end {
            settings.push(("lr_end", end, Domain::AtLeastZero));
        }
        match self.arch {
            TrainArch::Standard {
                l1_coefficient,
                lp_norm,
                ..
            } => {
                settings.push(("l1_coefficient", l1_coefficient, Domain::AtLeastZero));
                settings.push(("lp_norm", lp_norm, Domain::Positive));
            }
            TrainArch::TopK {
                aux_loss_coefficient,
                ..
            } => settings.push((
                "aux_loss_coefficient",
                aux_loss_coefficient,
                Domain::AtLeastZero,
            )),
            TrainArch::BatchTopK {
                aux_loss_coefficient,
                topk_threshold_lr,
                ..
            } => {
                settings.push((
                    "aux_loss_coefficient",
                    aux_loss_coefficient,
                    Domain::AtLeastZero,
                ));
                settings.push(("topk_threshold_lr", topk_threshold_lr, Domain::UnitInterval));
            }
            TrainArch::JumpRelu {
                jumprelu_init_threshold,
                jumprelu_bandwidth,
                l0_coefficient,
                ..
            } => {
                settings.push((
                    "jumprelu_init_threshold",
                    jumprelu_init_threshold,
                    Domain::AtLeastZero,
                ));
                settings.push(("jumprelu_bandwidth", jumprelu_bandwidth, Domain::Positive));
                settings.push(("l0_coefficient", l0_coefficient, Domain::AtLeastZero));
            }
        }
        for (name, value, domain) in settings {
            if !domain.holds(value) {
                return bad(format!("{name} {value}: give {}", domain.words()));
            }
        }
        if self.normalize_activations && self.n_batches_for_norm_estimate == 0 {
            return bad(
                "n_batches_for_norm_estimate must be at least 1 to normalise activations".into(),
            );
        }
        // Weights, their gradients and Adam's two moments (4 copies of W_enc and W_dec), and
        // a batch's pre-activations a few times over (the autograd pass), in f32. Counted in
        // f64: the product of two arbitrary sizes overflows any integer.
        let (d, m, b) = (
            self.d_in as f64,
            self.d_sae as f64,
            self.train_batch_size_tokens as f64,
        );
        let needed = 4.0 * (8.0 * d * m + 6.0 * b * m + 4.0 * b * d);
        let budget = glassbox_models::memory::budget();
        if needed > budget as f64 {
            return bad(format!(
                "an SAE of {} × {} features trained in batches of {} needs about {}; {} is available (GLASSBOX_MEMORY sets the budget)",
                self.d_in,
                self.d_sae,
                self.train_batch_size_tokens,
                glassbox_models::memory::describe(needed.min(u64::MAX as f64) as u64),
                glassbox_models::memory::describe(budget)
            ));
        }
        if self.lr_decay_steps > 0
            && self.lr_end == Some(0.0)
            && self.lr_scheduler == LrScheduler::CosineAnnealing
        {
            return bad("lr_end must not be 0 with decay steps".into());
        }
        match self.arch {
            TrainArch::TopK { k, .. } if k == 0 || k > self.d_sae => {
                bad(format!("k is {k}: give 1..d_sae ({})", self.d_sae))
            }
            TrainArch::BatchTopK { k, .. } if !(k > 0.0 && k <= self.d_sae as f64) => bad(format!(
                "k is {k}: give a number in (0, d_sae = {}]",
                self.d_sae
            )),
            _ => Ok(()),
        }
    }
}

/// Where a training setting makes sense (all of them finite, and within f32's range).
#[derive(Clone, Copy)]
enum Domain {
    Positive,
    AtLeastZero,
    /// [0, 1): Adam's betas (1 divides by zero in the bias correction).
    Fraction,
    /// [0, 1]: a running average's rate.
    UnitInterval,
}

impl Domain {
    fn holds(self, v: f64) -> bool {
        v.is_finite()
            && v.abs() <= f32::MAX as f64
            && match self {
                Domain::Positive => v > 0.0,
                Domain::AtLeastZero => v >= 0.0,
                Domain::Fraction => (0.0..1.0).contains(&v),
                Domain::UnitInterval => (0.0..=1.0).contains(&v),
            }
    }

    fn words(self) -> &'static str {
        match self {
            Domain::Positive => "a finite number above 0",
            Domain::AtLeastZero => "a finite number of at least 0",
            Domain::Fraction => "a number in [0, 1)",
            Domain::UnitInterval => "a number in [0, 1]",
        }
    }
}
