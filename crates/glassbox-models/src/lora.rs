//! LoRA adapters applied without merging: a targeted linear layer computes
//! `base(x) + s·(x·Aᵀ)·Bᵀ`, as PEFT's `LoraLayer` does (dropout is training-time only).
//!
//! While a model is built ([`while_building`]) every `Linear::load` asks [`find`] for its
//! module's adapter by the module's Hub name (`model.layers.0.self_attn.q_proj`), the name PEFT
//! keys adapters by — for a GGUF model too, whose layers are built under Hub names. A source
//! either applies a PEFT adapter ([`LoraSource::Apply`]) or creates fresh trainable matrices
//! for the targeted modules ([`LoraSource::Create`], `glassbox finetune`). After the build,
//! [`while_building`] fails if the adapter holds a module the model has no linear layer for:
//! an adapter is never applied in part.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use glassbox_formats::peft::{targets, LoraAdapter, LoraConfig, LoraModule};

use crate::error::{ModelError, Result};

/// One layer's adapter.
#[derive(Clone, Debug)]
pub struct Lora {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
    pub scale: f64,
}

/// Fresh trainable adapters for the modules `config.target_modules` names.
#[derive(Clone, Debug)]
pub struct CreateSpec {
    pub config: LoraConfig,
    pub seed: u64,
    /// The trainable matrices made, by module name (filled while building).
    pub made: Arc<Mutex<BTreeMap<String, (Var, Var)>>>,
}

/// What a model being built gets for its linear layers.
#[derive(Clone, Debug)]
pub enum LoraSource {
    Apply(Arc<LoraAdapter>),
    Create(CreateSpec),
}

struct Building {
    source: LoraSource,
    device: Device,
    used: BTreeSet<String>,
}

thread_local! {
    static BUILDING: RefCell<Option<Building>> = const { RefCell::new(None) };
}

/// Runs `build` with `source` offered to the linear layers it loads, then checks that every
/// module of an applied adapter found its layer.
pub fn while_building<R>(
    source: Option<&LoraSource>,
    device: &Device,
    build: impl FnOnce() -> Result<R>,
) -> Result<R> {
    let Some(source) = source else { return build() };
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            BUILDING.with(|b| b.borrow_mut().take());
        }
    }
    BUILDING.with(|b| {
        *b.borrow_mut() = Some(Building {
            source: source.clone(),
            device: device.clone(),
            used: BTreeSet::new(),
        })
    });
    let restore = Restore;
    let built = build()?;
    let used = BUILDING.with(|b| {
        b.borrow()
            .as_ref()
            .map(|b| b.used.clone())
            .unwrap_or_default()
    });
    drop(restore);
    match source {
        LoraSource::Apply(adapter) => {
            let missing: Vec<&str> = adapter
                .modules
                .keys()
                .filter(|m| !used.contains(*m))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(ModelError::Input(format!(
                    "{}: the model has no linear layer {} (an adapter for another model?)",
                    adapter.path.display(),
                    missing.join(", ")
                )));
            }
        }
        LoraSource::Create(spec) => {
            if spec.made.lock().map(|m| m.is_empty()).unwrap_or(true) {
                return Err(ModelError::Input(format!(
                    "--target {}: names no linear layer of this model",
                    spec.config.target_modules.join(",")
                )));
            }
        }
    }
    Ok(built)
}

/// The adapter of the linear layer under `vb` (`[out, in]`), while a model is built with one.
pub fn find(vb: &VarBuilder, in_dim: usize, out_dim: usize) -> Result<Option<Lora>> {
    BUILDING.with(|b| {
        let mut b = b.borrow_mut();
        let Some(building) = b.as_mut() else { return Ok(None) };
        let module = crate::mapped::full_name(vb, "weight");
        let module = module.strip_suffix(".weight").unwrap_or(&module).to_string();
        let device = building.device.clone();
        let lora = match &building.source {
            LoraSource::Apply(adapter) => {
                let Some(m) = adapter.modules.get(&module) else { return Ok(None) };
                if m.in_dim != in_dim || m.out_dim != out_dim {
                    return Err(ModelError::Input(format!(
                        "{}: `{module}` adapts a [{}, {}] layer, the model's is [{out_dim}, {in_dim}]",
                        adapter.path.display(),
                        m.out_dim,
                        m.in_dim
                    )));
                }
                // PEFT loads a saved copy of the layer's own weight over the model's; applied
                // to the model's weight instead, the adapter computes what PEFT does only when
                // the two are the same (the usual case: saved from an unchanged model).
                if let Some(saved) = adapter.saved_base(&module).map_err(ModelError::from)? {
                    let own = vb
                        .get((out_dim, in_dim), "weight")?
                        .to_dtype(DType::F32)?
                        .flatten_all()?
                        .to_vec1::<f32>()?;
                    if own != saved {
                        return Err(ModelError::Input(format!(
                            "{}: the adapter holds its own copy of `{module}`'s weight (PEFT's save_embedding_layers), and it differs from the model's: PEFT would load it over the model's, which is not done here; save the adapter with save_embedding_layers=False from the model it was trained on",
                            adapter.path.display()
                        )));
                    }
                }
                applied(m, &device)?
            }
            LoraSource::Create(spec) => {
                if !targets(&spec.config.target_modules, &module) {
                    return Ok(None);
                }
                let r = spec.config.r;
                // B·A has rank at most min(out, in): a larger r adds nothing but memory.
                if r > in_dim.min(out_dim) {
                    return Err(ModelError::Input(format!(
                        "--lora-r {r}: more than the smaller side of `{module}` ([{out_dim}, {in_dim}]); an update B·A of that layer has rank at most {}",
                        in_dim.min(out_dim)
                    )));
                }
                let a = Var::from_tensor(&kaiming_uniform(spec.seed, &module, r, in_dim, &device)?)?;
                let b = Var::from_tensor(&Tensor::zeros((out_dim, r), DType::F32, &device)?)?;
                let scale = if spec.config.use_rslora {
                    spec.config.lora_alpha / (r as f64).sqrt()
                } else {
                    spec.config.lora_alpha / r as f64
                };
                let lora = Lora {
                    a: a.as_tensor().clone(),
                    b: b.as_tensor().clone(),
                    scale,
                };
                if let Ok(mut made) = spec.made.lock() {
                    made.insert(module.clone(), (a, b));
                }
                lora
            }
        };
        building.used.insert(module);
        Ok(Some(lora))
    })
}

fn applied(m: &LoraModule, device: &Device) -> Result<Lora> {
    Ok(Lora {
        a: Tensor::from_vec(m.a.clone(), (m.rank, m.in_dim), device)?,
        b: Tensor::from_vec(m.b.clone(), (m.out_dim, m.rank), device)?,
        scale: m.scale,
    })
}

/// PEFT's default `lora_A` initialisation (`kaiming_uniform_(a=√5)`: uniform in ±1/√in),
/// drawn from our seeded generator keyed by the module's name (torch's stream is not ours, so
/// the values differ from PEFT's; the distribution is its).
fn kaiming_uniform(
    seed: u64,
    module: &str,
    r: usize,
    in_dim: usize,
    device: &Device,
) -> Result<Tensor> {
    let bound = 1.0 / (in_dim as f64).sqrt();
    let mut rng = crate::rng::SplitMix64::keyed(seed, &format!("lora-A {module}"));
    let values: Vec<f32> = (0..r * in_dim)
        .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
        .collect();
    Ok(Tensor::from_vec(values, (r, in_dim), device)?)
}

/// The trained matrices of a [`CreateSpec`] as a PEFT adapter.
pub fn trained_adapter(spec: &CreateSpec, path: &std::path::Path) -> Result<LoraAdapter> {
    let made = spec
        .made
        .lock()
        .map_err(|_| ModelError::config("the adapter's matrices were poisoned".to_string()))?;
    let mut modules = BTreeMap::new();
    for (name, (a, b)) in made.iter() {
        let (rank, in_dim) = a.as_tensor().dims2()?;
        let (out_dim, _) = b.as_tensor().dims2()?;
        let scale = if spec.config.use_rslora {
            spec.config.lora_alpha / (rank as f64).sqrt()
        } else {
            spec.config.lora_alpha / rank as f64
        };
        modules.insert(
            name.clone(),
            LoraModule {
                a: a.as_tensor().flatten_all()?.to_vec1()?,
                b: b.as_tensor().flatten_all()?.to_vec1()?,
                rank,
                in_dim,
                out_dim,
                scale,
                saved_base: None,
            },
        );
    }
    Ok(LoraAdapter {
        path: path.to_path_buf(),
        config: spec.config.clone(),
        modules,
    })
}
