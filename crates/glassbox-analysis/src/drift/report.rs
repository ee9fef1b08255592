//! What [`super::compare`] is asked and what it reports.

use candle_core::Tensor;
use serde::Serialize;

use crate::attribution::Component;
use crate::error::Result;
use crate::heads::HeadScores;

/// What a run of [`compare`] does besides the token sequences.
#[derive(Clone, Debug)]
pub struct DriftOptions {
    /// Head-role probe: length of the random half of each repeated sequence (0: no probe).
    pub head_seq_len: usize,
    /// Head-role probe: sequences in the batch.
    pub head_batch: usize,
    /// Seed of the head-role probe's random tokens.
    pub seed: u64,
    /// How many features each list of the feature report keeps.
    pub top_features: usize,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            head_seq_len: 20,
            head_batch: 4,
            seed: 0,
            top_features: 20,
        }
    }
}

/// Maps activations [n, d] to feature activations [n, d_features].
pub type Encoder<'a> = Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>;

/// A feature dictionary read at one hook point of both models (a sparse autoencoder's
/// encoder).
pub struct FeatureDictionary<'a> {
    pub hook: String,
    pub encode: Encoder<'a>,
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct DriftReport {
    pub sequences: usize,
    /// Positions read, over all sequences.
    pub tokens: usize,
    pub outputs: OutputDrift,
    /// One row per block, in order.
    pub layers: Vec<LayerDrift>,
    /// Ranked: largest local change first.
    pub components: Vec<ComponentDrift>,
    pub head_roles: Option<HeadRoleDrift>,
    pub features: Option<FeatureDrift>,
    /// What could not be measured on these models, and why.
    pub notes: Vec<String>,
}

/// How the next-token distributions differ.
#[derive(Clone, Debug, Serialize)]
pub struct OutputDrift {
    /// Mean over positions of KL(A‖B) in nats.
    pub kl_mean: f64,
    pub kl_max: f64,
    /// Share of positions where both models' most likely next token is the same.
    pub top1_agreement: f64,
    /// Mean cross-entropy of the next token of each sequence (nats), and its exponential.
    pub cross_entropy_a: f64,
    pub cross_entropy_b: f64,
    pub perplexity_a: f64,
    pub perplexity_b: f64,
    /// Positions with a next token in the sequence (what the perplexities average).
    pub predicted_tokens: usize,
}

/// One block's residual stream after it, and the logit lens read there.
#[derive(Clone, Debug, Serialize)]
pub struct LayerDrift {
    pub layer: usize,
    /// Mean over positions of the cosine between A's and B's `hook_resid_post`.
    pub resid_cosine: f64,
    /// ‖B − A‖ / ‖A‖ of `hook_resid_post` over every position.
    pub resid_relative_error: f64,
    /// Share of positions where the logit lens of A and of B have the same top token.
    pub lens_top1_agreement: f64,
    /// Mean over positions of KL(A‖B) between the two lenses.
    pub lens_kl: f64,
    /// Local change of the block's attention (whole) and MLP (see the module docs).
    pub attn_local_change: Option<f64>,
    pub mlp_local_change: Option<f64>,
}

/// One component's change.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentDrift {
    pub component: Component,
    pub label: String,
    /// ‖B(A's inputs) − A‖ / ‖residual stream‖.
    pub local_change: f64,
    /// ‖B − A‖ / ‖residual stream‖.
    pub end_to_end_change: f64,
    /// ‖B(A's inputs) − A‖ / ‖A‖: the change against the component's own output.
    pub relative_error: f64,
    /// Mean direct logit attribution over the sequences, in A and in B, and the mean of
    /// |B − A| (absent where attribution does not split the model this way).
    pub dla_a: Option<f64>,
    pub dla_b: Option<f64>,
    pub dla_change: Option<f64>,
}

/// Head-role scores side by side.
#[derive(Clone, Debug, Serialize)]
pub struct HeadRoleDrift {
    pub a: HeadScores,
    pub b: HeadScores,
    /// Every head, ranked by the largest change of any role's score.
    pub ranked: Vec<HeadRoleChange>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HeadRoleChange {
    pub layer: usize,
    pub head: usize,
    /// The role whose score changed most.
    pub role: String,
    pub a: f32,
    pub b: f32,
    pub change: f32,
}

/// Feature activations of one dictionary in both models.
#[derive(Clone, Debug, Serialize)]
pub struct FeatureDrift {
    pub hook: String,
    pub d_features: usize,
    pub positions: usize,
    /// Features that fired at least once.
    pub alive_a: usize,
    pub alive_b: usize,
    pub died_count: usize,
    pub appeared_count: usize,
    /// Fired in A, never in B: most frequent in A first.
    pub died: Vec<FeatureChange>,
    /// Fired in B, never in A: most frequent in B first.
    pub appeared: Vec<FeatureChange>,
    /// Largest mean |B − A| activation per position first.
    pub moved: Vec<FeatureChange>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FeatureChange {
    pub feature: usize,
    /// Share of positions where it fires (activation > 0).
    pub frequency_a: f64,
    pub frequency_b: f64,
    pub mean_a: f64,
    pub mean_b: f64,
    /// Mean over positions of |B − A|.
    pub mean_abs_change: f64,
}
