//! Transformer forward passes with a hook at every point.
pub mod hooks;
pub use hooks::{ActivationCache, HookFn, Hooks, Intervention, Layout, NameFilter, Selection};
