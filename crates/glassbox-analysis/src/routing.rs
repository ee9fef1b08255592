//! Mixture-of-experts routing of a prompt: which experts each token goes to, with their
//! weights, per MoE layer (read from the `mlp.hook_expert_indices` / `hook_expert_weights`
//! hooks). What `glassbox experts --prompt … --json` prints and the workbench shows.

use glassbox_models::moe::{routing_from_cache, ROUTING_HOOKS};
use glassbox_models::{HookedModel, NameFilter};
use serde::Serialize;

use crate::{AnalysisError, Result};

#[derive(Clone, Debug, Serialize)]
pub struct PromptRouting {
    pub tokens: Vec<String>,
    pub layers: Vec<LayerRoutes>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerRoutes {
    pub layer: usize,
    pub n_experts: usize,
    /// `routes[position]`: (expert, weight) of each chosen expert.
    pub routes: Vec<Vec<(u32, f32)>>,
}

/// Routes `ids` through the model; an error for a model without MoE layers.
pub fn prompt_routing(model: &HookedModel, ids: &[u32]) -> Result<PromptRouting> {
    let filter =
        NameFilter::new(&ROUTING_HOOKS).map_err(|e| AnalysisError::Input(e.to_string()))?;
    let (_, cache) = model.run_with_cache(&model.ids_tensor(ids)?, &filter)?;
    let routing = routing_from_cache(&cache, model.info().n_layers, 0)?;
    if routing.is_empty() {
        return Err(AnalysisError::Input(format!(
            "{} has no mixture-of-experts layers",
            model.info().architecture
        )));
    }
    Ok(PromptRouting {
        tokens: model
            .ids_to_str_tokens(ids)
            .unwrap_or_else(|_| ids.iter().map(|i| i.to_string()).collect()),
        layers: routing
            .into_iter()
            .map(|r| LayerRoutes {
                layer: r.layer,
                n_experts: r.n_experts,
                routes: r
                    .experts
                    .iter()
                    .zip(&r.weights)
                    .map(|(e, w)| e.iter().copied().zip(w.iter().copied()).collect())
                    .collect(),
            })
            .collect(),
    })
}
