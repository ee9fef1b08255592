//! Feed-forward blocks: plain (`fc_in → act → fc_out`) and gated (`down(act(gate) ⊙ up)`).
//!
//! Hooks, as TransformerLens names them: `mlp.hook_pre` is the (gate) pre-activation,
//! `mlp.hook_pre_linear` the linear branch of a gated MLP, `mlp.hook_post` what enters the
//! output projection. All are [batch, pos, d_mlp].

use candle_core::{Module, Result, Tensor};

use crate::decoder::FeedForward;
use crate::hooks::Hooks;
use crate::layers::{Activation, Linear};
use crate::weights::linear_in_out;

/// How the input projections are stored.
#[derive(Clone, Debug)]
pub enum MlpProjection {
    /// `act(fc_in x)` (GPT-2, GPT-NeoX).
    Plain { fc_in: Linear },
    /// `act(gate x) ⊙ up x` (Llama and descendants).
    Gated { gate: Linear, up: Linear },
    /// Gated, with gate and up in one matrix whose output is `[gate | up]` (Phi-3).
    GatedFused { gate_up: Linear },
}

#[derive(Clone, Debug)]
pub struct Mlp {
    pub proj: MlpProjection,
    pub act: Activation,
    pub fc_out: Linear,
}

impl FeedForward for Mlp {
    fn forward(&self, x: &Tensor, layer: usize, hooks: &mut Hooks) -> Result<Tensor> {
        let i = layer;
        let post = match &self.proj {
            MlpProjection::Plain { fc_in } => {
                let pre = hooks.point(|| format!("blocks.{i}.mlp.hook_pre"), fc_in.forward(x)?)?;
                self.act.apply(&pre)?
            }
            MlpProjection::Gated { gate, up } => {
                let pre = hooks.point(|| format!("blocks.{i}.mlp.hook_pre"), gate.forward(x)?)?;
                let lin =
                    hooks.point(|| format!("blocks.{i}.mlp.hook_pre_linear"), up.forward(x)?)?;
                (self.act.apply(&pre)? * lin)?
            }
            MlpProjection::GatedFused { gate_up } => {
                let y = gate_up.forward(x)?;
                let half = y.dim(2)? / 2;
                let pre =
                    hooks.point(|| format!("blocks.{i}.mlp.hook_pre"), y.narrow(2, 0, half)?)?;
                let lin = hooks.point(
                    || format!("blocks.{i}.mlp.hook_pre_linear"),
                    y.narrow(2, half, half)?,
                )?;
                (self.act.apply(&pre)? * lin)?
            }
        };
        let post = hooks.point(|| format!("blocks.{i}.mlp.hook_post"), post)?;
        self.fc_out.forward(&post)
    }

    fn parameter_names(&self) -> Vec<&'static str> {
        match self.proj {
            MlpProjection::Plain { .. } => vec!["W_in", "b_in", "W_out", "b_out"],
            _ => vec!["W_gate", "W_in", "b_in", "W_out", "b_out"],
        }
    }

    fn parameter(&self, field: &str) -> Result<Option<Tensor>> {
        let weight = |l: &Linear, bias: bool| -> Result<Option<Tensor>> {
            let (w, b) = linear_in_out(l)?;
            Ok(Some(if bias { b } else { w }))
        };
        // The gate (`W_gate`) and linear branch (`W_in`, `b_in`) of a fused projection, whose
        // output is `[gate | up]`.
        let fused_half = |l: &Linear, second: bool, bias: bool| -> Result<Option<Tensor>> {
            let (w, b) = linear_in_out(l)?;
            let half = w.dim(1)? / 2;
            let start = if second { half } else { 0 };
            Ok(Some(if bias {
                b.narrow(0, start, half)?
            } else {
                w.narrow(1, start, half)?
            }))
        };
        match (&self.proj, field) {
            (_, "W_out") => weight(&self.fc_out, false),
            (_, "b_out") => weight(&self.fc_out, true),
            (MlpProjection::Plain { fc_in }, "W_in" | "b_in") => weight(fc_in, field == "b_in"),
            (MlpProjection::Gated { gate, .. }, "W_gate") => weight(gate, false),
            (MlpProjection::Gated { up, .. }, "W_in" | "b_in") => weight(up, field == "b_in"),
            (MlpProjection::GatedFused { gate_up }, "W_gate") => fused_half(gate_up, false, false),
            (MlpProjection::GatedFused { gate_up }, "W_in" | "b_in") => {
                fused_half(gate_up, true, field == "b_in")
            }
            _ => Ok(None),
        }
    }
}
