//! The seeded generator training draws from: `glassbox_models::rng`, shared with the crates
//! that sample, split and shuffle (SAE training, the activation store, probes).
pub use glassbox_models::rng::*;
