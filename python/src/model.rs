//! `glassbox._native.Model`: a loaded model and its forward passes — logits, caches by
//! TransformerLens hook name, Python functions at hook points — and generation.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Tensor};
use glassbox_models::{GenerateOptions, HookedModel, Hooks, LoadOptions, NameFilter, Numerics};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{ids_from_u32, tensor_from_f32, Held};
use crate::errors::{call_error, file_error, invalid, invalid_anyhow};
use crate::gradients::{add_leaves, Graph, Leaves};
use crate::work;

#[pyclass(module = "glassbox._native", frozen)]
pub struct Model {
    pub inner: Arc<HookedModel>,
    /// The path it was loaded from, as given (the `model` field of the analyses' documents).
    #[pyo3(get)]
    pub path: String,
}

fn parse_dtype(s: &str) -> PyResult<DType> {
    match s {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(invalid(format!(
            "unknown dtype `{other}` (expected float32, float16 or bfloat16)"
        ))),
    }
}

fn parse_numerics(s: Option<&str>) -> PyResult<Option<Numerics>> {
    match s {
        None => Ok(None),
        Some("llamacpp") => Ok(Some(Numerics::LlamaCpp)),
        Some("f32") => Ok(Some(Numerics::F32)),
        Some(other) => Err(invalid(format!(
            "unknown numerics `{other}` (expected llamacpp or f32)"
        ))),
    }
}

/// Loads a model as the CLI does: a Hub folder, a safetensors checkpoint or a GGUF file
/// (quantized too), with a PEFT adapter applied unmerged and SAEs spliced in.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (path, dtype="float32", numerics=None, adapter=None, saes=Vec::new(), sae_error_term=false, kv_cache=None))]
pub fn load(
    py: Python<'_>,
    path: PathBuf,
    dtype: &str,
    numerics: Option<&str>,
    adapter: Option<PathBuf>,
    saes: Vec<PathBuf>,
    sae_error_term: bool,
    kv_cache: Option<&str>,
) -> PyResult<Model> {
    let dtype = parse_dtype(dtype)?;
    let numerics = parse_numerics(numerics)?;
    let kv_cache = match kv_cache {
        None => None,
        Some("f16") => Some(glassbox_models::KvCacheType::F16),
        Some("f32") => Some(glassbox_models::KvCacheType::F32),
        Some(other) => {
            return Err(invalid(format!(
                "unknown kv_cache `{other}` (expected f16 or f32)"
            )))
        }
    };
    glassbox_formats::input::existing(&path).map_err(|e| file_error(e.into()))?;
    for dir in adapter.iter().chain(&saes) {
        if !dir.is_dir() {
            return Err(pyo3::exceptions::PyFileNotFoundError::new_err(format!(
                "{}: no such folder",
                dir.display()
            )));
        }
    }
    let shown = path.display().to_string();
    let model = work::run(
        py,
        move |_| -> anyhow::Result<HookedModel> {
            let lora = match &adapter {
                Some(dir) => {
                    let a = glassbox_formats::peft::LoraAdapter::open(dir).map_err(|e| {
                        anyhow::Error::from(e)
                            .context(format!("reading the adapter {}", dir.display()))
                    })?;
                    Some(glassbox_models::lora::LoraSource::Apply(Arc::new(a)))
                }
                None => None,
            };
            let opts = LoadOptions {
                dtype,
                numerics,
                kv_cache,
                lora,
                ..LoadOptions::default()
            };
            let model = HookedModel::load(&path, &opts).map_err(|e| {
                anyhow::Error::from(e).context(format!("loading {}", path.display()))
            })?;
            if saes.is_empty() {
                return Ok(model);
            }
            let loaded = saes
                .iter()
                .map(|dir| {
                    glassbox_features::Sae::load(dir).map_err(|e| {
                        anyhow::Error::from(e).context(format!("loading the SAE {}", dir.display()))
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let opts = glassbox_features::SpliceOptions {
                error_term: sae_error_term,
            };
            Ok(glassbox_features::splice(model, loaded, opts)?)
        },
        file_error,
    )?;
    Ok(Model {
        inner: Arc::new(model),
        path: shown,
    })
}

/// A forward pass's hooks as the binding receives them.
type PyHooks = Vec<(Vec<String>, Py<PyAny>)>;

fn filter(patterns: &[String]) -> anyhow::Result<NameFilter> {
    NameFilter::new(patterns).map_err(|e| invalid_anyhow(format!("hook name pattern: {e}")))
}

/// Adds each Python function to `hooks` at the points its patterns match. A function's
/// exception is kept in `raised` (the pass then fails, and the call re-raises it).
///
/// In a pass kept for a backward pass (`replaced` given), a function gets a copy of the
/// activation: an edit in place must not change values the graph's backward passes read (a
/// softmax's backward reads its own output, `hook_pattern`). An edited or returned array that
/// differs from the activation replaces it as a constant, and its point is listed in
/// `replaced`; one that does not leaves the activation, and its gradient, as they were.
fn add_python_hooks(
    hooks: &mut Hooks<'_>,
    fns: PyHooks,
    raised: &Arc<Mutex<Option<PyErr>>>,
    replaced: Option<&Replaced>,
) -> anyhow::Result<()> {
    for (patterns, func) in fns {
        let raised = Arc::clone(raised);
        let replaced = replaced.cloned();
        // a Ctrl-C stops the pass at the hook point itself (`glassbox_models::stop`)
        hooks.add_fn(filter(&patterns)?, move |name: &str, t: &Tensor| {
            Python::attach(|py| {
                let fail = |e: PyErr| {
                    *raised.lock().expect("hook error slot") = Some(e);
                    candle_core::Error::Msg(format!("the Python hook at `{name}` raised"))
                };
                let held = match replaced {
                    Some(_) => Held::copy_of(t)?,
                    None => Held::new(t)?,
                };
                let held = Py::new(py, held).map_err(fail)?;
                let out = func.call1(py, (held, name)).map_err(fail)?;
                if out.is_none(py) {
                    return Ok(None);
                }
                let new = tensor_from_f32(py, out.bind(py), t.dtype()).map_err(fail)?;
                if let Some(replaced) = &replaced {
                    if same_values(&new, t)? {
                        return Ok(None);
                    }
                    replaced
                        .lock()
                        .expect("replaced points")
                        .push(name.to_string());
                }
                Ok(Some(new))
            })
        });
    }
    Ok(())
}

/// The hook points whose activation a Python function replaced in a pass kept for a backward
/// pass.
type Replaced = Arc<Mutex<Vec<String>>>;

/// Whether `a` holds `b`'s values bit for bit.
fn same_values(a: &Tensor, b: &Tensor) -> candle_core::Result<bool> {
    if a.dims() != b.dims() {
        return Ok(false);
    }
    let bits = |t: &Tensor| -> candle_core::Result<Vec<u32>> {
        Ok(t.detach()
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f32::to_bits)
            .collect())
    };
    Ok(bits(a)? == bits(b)?)
}

/// What a forward pass gives back: the logits (none when it stopped early) and the cache.
type Forward = (Option<Held>, Cached);

/// Cached activations by hook name, in the order the pass reached them.
type Cached = Vec<(String, Held)>;

/// A forward pass's inputs, read from Python.
struct Pass {
    model: Arc<HookedModel>,
    start: Start,
    mask: Option<Tensor>,
    cache: Option<Vec<String>>,
    hooks: PyHooks,
}

/// Where a pass starts: token ids, or a residual stream entering a block.
enum Start {
    Ids(Tensor),
    Layer(Tensor, usize),
}

impl Pass {
    /// `input`: token ids (uint32 [batch, pos]), or with `start_at_layer` the residual stream
    /// entering that block (float32 [batch, pos, d_model]).
    fn read(
        py: Python<'_>,
        model: &Arc<HookedModel>,
        input: &Bound<'_, PyAny>,
        start_at_layer: Option<usize>,
        mask: Option<&Bound<'_, PyAny>>,
        cache: Option<Vec<String>>,
        hooks: PyHooks,
    ) -> PyResult<Pass> {
        let start = match start_at_layer {
            None => Start::Ids(ids_from_u32(py, input)?),
            Some(layer) => Start::Layer(tensor_from_f32(py, input, DType::F32)?, layer),
        };
        if mask.is_some() && matches!(start, Start::Layer(..)) {
            return Err(invalid(
                "a pass started at a layer takes no attention mask (its rows are unpadded)",
            ));
        }
        Ok(Pass {
            model: Arc::clone(model),
            start,
            mask: mask.map(|m| ids_from_u32(py, m)).transpose()?,
            cache,
            hooks,
        })
    }

    /// Runs the pass (its Python hooks first at each point, then the gradient leaves):
    /// the logits (None when it stopped after `stop_after`) and the cached activations.
    fn run(
        self,
        cancel: &work::Cancel,
        stop_after: Option<String>,
        leaves: Option<(NameFilter, &Leaves, &Replaced)>,
    ) -> anyhow::Result<(Option<Tensor>, Cached)> {
        let raised = Arc::new(Mutex::new(None));
        let mut h = match &self.cache {
            Some(patterns) => Hooks::caching(filter(patterns)?),
            None => Hooks::none(),
        };
        add_python_hooks(&mut h, self.hooks, &raised, leaves.as_ref().map(|l| l.2))?;
        if let Some((filter, leaves, _)) = leaves {
            add_leaves(&mut h, filter, leaves);
        }
        if let Some(name) = &stop_after {
            h.stop_after(name.clone());
        }
        let result = match (&self.start, &self.mask) {
            (Start::Ids(ids), Some(m)) => self.model.run_masked(ids, m, &mut h),
            (Start::Ids(ids), None) => self.model.run_with_hooks(ids, &mut h),
            (Start::Layer(resid, layer), _) => self.model.run_from_layer(resid, *layer, &mut h),
        };
        if let Some(e) = raised.lock().expect("hook error slot").take() {
            return Err(anyhow::Error::new(e));
        }
        if cancel.is_set() {
            return Err(glassbox_analysis::AnalysisError::Cancelled.into());
        }
        let logits = match result {
            Ok(l) => Some(l),
            Err(_) if h.stopped() => None,
            Err(e) => return Err(e.into()),
        };
        let cached = h
            .take_cache()
            .iter()
            .map(|(name, t)| Ok((name.to_string(), Held::new(t)?)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok((logits, cached))
    }
}

#[pymethods]
impl Model {
    /// The model's dimensions and what it was loaded with, as a dict.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = &self.inner;
        let i = m.info();
        let d = PyDict::new(py);
        d.set_item("architecture", &i.architecture)?;
        d.set_item("n_layers", i.n_layers)?;
        d.set_item("d_model", i.d_model)?;
        d.set_item("n_heads", i.n_heads)?;
        d.set_item("n_key_value_heads", i.n_kv_heads)?;
        d.set_item("d_head", i.d_head)?;
        d.set_item("d_mlp", i.d_mlp)?;
        d.set_item("d_vocab", i.d_vocab)?;
        d.set_item("n_ctx", i.n_ctx)?;
        d.set_item("causal", i.causal)?;
        d.set_item("learned_positions", i.learned_positions)?;
        d.set_item("has_unembedding", m.model.has_unembedding())?;
        d.set_item("has_tokenizer", m.tokenizer.is_some())?;
        d.set_item("numerics", m.numerics.name())?;
        d.set_item("kv_cache", m.kv_cache.name())?;
        d.set_item("normalization_type", m.model.normalization_type())?;
        d.set_item("eos_token_ids", &m.eos_token_ids)?;
        let id = |key: &str| m.config.get(key).and_then(|v| v.as_u64());
        d.set_item("bos_token_id", id("bos_token_id"))?;
        d.set_item("pad_token_id", id("pad_token_id"))?;
        d.set_item("warnings", &m.warnings)?;
        Ok(d)
    }

    /// Token ids of `text`, special tokens included where the tokenizer adds them.
    fn encode(&self, text: &str) -> PyResult<Vec<u32>> {
        self.inner.to_tokens(text).map_err(|e| call_error(e.into()))
    }

    /// The text of `ids`, special tokens skipped unless `skip_special_tokens` is false.
    #[pyo3(signature = (ids, skip_special_tokens = true))]
    fn decode(&self, ids: Vec<u32>, skip_special_tokens: bool) -> PyResult<String> {
        let text = if skip_special_tokens {
            self.inner.decode(&ids)
        } else {
            self.inner.decode_with_special(&ids)
        };
        text.map_err(|e| call_error(e.into()))
    }

    /// The final norm (`ln_final`, with its weight and bias) applied to each row of `resid`
    /// (float32 [.., d_model]).
    fn final_norm(&self, py: Python<'_>, resid: &Bound<'_, PyAny>) -> PyResult<Held> {
        let x = tensor_from_f32(py, resid, DType::F32)?;
        let d_model = self.inner.info().d_model;
        if x.dims().last() != Some(&d_model) {
            return Err(invalid(format!(
                "the final norm takes vectors of d_model = {d_model}; got shape {:?}",
                x.dims()
            )));
        }
        let model = Arc::clone(&self.inner);
        let normed = py
            .detach(move || model.model.final_norm(&x))
            .map_err(|e| call_error(e.into()))?;
        Held::new(&normed).map_err(|e| call_error(e.into()))
    }

    /// TransformerLens' names of the weights `parameter` gives (`blocks.0.attn.W_Q`, …).
    fn parameter_names(&self) -> Vec<String> {
        self.inner.model.parameter_names()
    }

    /// The weight TransformerLens names `name`, float32 in its layout; a `KeyError` where the
    /// model has none.
    fn parameter(&self, py: Python<'_>, name: &str) -> PyResult<Held> {
        let model = Arc::clone(&self.inner);
        let owned = name.to_string();
        let weight = py
            .detach(move || model.model.parameter(&owned))
            .map_err(|e| call_error(e.into()))?;
        match weight {
            Some(w) => Held::new(&w).map_err(|e| call_error(e.into())),
            None => Err(pyo3::exceptions::PyKeyError::new_err(format!(
                "{name}: {} has no such weight (model.weight_names() lists them)",
                self.inner.info().architecture
            ))),
        }
    }

    /// Each of `ids` as its own string.
    fn str_tokens(&self, ids: Vec<u32>) -> PyResult<Vec<String>> {
        self.inner
            .ids_to_str_tokens(&ids)
            .map_err(|e| call_error(e.into()))
    }

    /// One forward pass over `ids` (uint32 [batch, pos]) with an optional attention `mask`
    /// (same shape, 1 = token) — or, with `start_at_layer`, from the residual stream `ids`
    /// (float32 [batch, pos, d_model]) entering that block. `cache`: hook-name patterns whose
    /// activations to keep. `hooks`: (patterns, function) pairs; each function gets
    /// (activation, name) and returns None or a float32 replacement of the same shape.
    /// `stop_after`: end the pass after that hook point (no logits then).
    #[pyo3(signature = (ids, mask=None, cache=None, hooks=Vec::new(), stop_after=None, start_at_layer=None))]
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        mask: Option<&Bound<'_, PyAny>>,
        cache: Option<Vec<String>>,
        hooks: PyHooks,
        stop_after: Option<String>,
        start_at_layer: Option<usize>,
    ) -> PyResult<Forward> {
        let pass = Pass::read(py, &self.inner, ids, start_at_layer, mask, cache, hooks)?;
        work::run(
            py,
            move |cancel| -> anyhow::Result<Forward> {
                let (logits, cached) = pass.run(cancel, stop_after, None)?;
                Ok((logits.map(|l| Held::new(&l)).transpose()?, cached))
            },
            call_error,
        )
    }

    /// [`forward`](Self::forward) kept for a backward pass: returns the logits, the cache and
    /// a `Graph` whose `backward(seed)` gives the gradients at the hook points `grads`
    /// selects. Python hooks get copies; one that changes its activation replaces it with a
    /// constant to the gradient (computed outside the graph), listed in `Graph.replaced`.
    #[pyo3(signature = (ids, grads, mask=None, cache=None, hooks=Vec::new(), start_at_layer=None))]
    #[allow(clippy::too_many_arguments)]
    fn forward_with_graph(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        grads: Vec<String>,
        mask: Option<&Bound<'_, PyAny>>,
        cache: Option<Vec<String>>,
        hooks: PyHooks,
        start_at_layer: Option<usize>,
    ) -> PyResult<(Held, Cached, Graph)> {
        let pass = Pass::read(py, &self.inner, ids, start_at_layer, mask, cache, hooks)?;
        work::run(
            py,
            move |cancel| {
                let (leaves, replaced) = (Leaves::default(), Replaced::default());
                let points = filter(&grads)?;
                let (logits, cached) =
                    pass.run(cancel, None, Some((points, &leaves, &replaced)))?;
                let logits = logits.expect("a pass that does not stop has logits");
                // the array does not hold the graph (the Graph does, until its backward pass)
                let held = Held::new(&logits.detach())?;
                let replaced = std::mem::take(&mut *replaced.lock().expect("replaced points"));
                Ok((held, cached, Graph::new(logits, &leaves, replaced)))
            },
            call_error,
        )
    }

    /// Continues `ids` by up to `max_new_tokens` tokens with a KV cache (greedy when
    /// `temperature` is 0); `hooks` apply at every step. Returns the new tokens.
    #[pyo3(signature = (ids, max_new_tokens, temperature=0.0, top_k=0, top_p=1.0, seed=0, stop_at_eos=true, hooks=Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        ids: Vec<u32>,
        max_new_tokens: usize,
        temperature: f64,
        top_k: usize,
        top_p: f64,
        seed: u64,
        stop_at_eos: bool,
        hooks: PyHooks,
    ) -> PyResult<Vec<u32>> {
        if !(temperature >= 0.0 && temperature.is_finite()) {
            return Err(invalid("temperature must be a finite number ≥ 0"));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(invalid("top_p must be in (0, 1]"));
        }
        if ids.is_empty() {
            return Err(invalid("the prompt has no tokens"));
        }
        let model = Arc::clone(&self.inner);
        work::run(
            py,
            move |cancel| -> anyhow::Result<Vec<u32>> {
                let raised = Arc::new(Mutex::new(None));
                let mut h = Hooks::none();
                add_python_hooks(&mut h, hooks, &raised, None)?;
                let opts = GenerateOptions {
                    max_new_tokens,
                    temperature,
                    top_k,
                    top_p,
                    seed,
                    stop_at_eos,
                };
                let mut step = cancel.progress();
                let result = model.generate_until(&ids, &opts, &mut h, |_| step());
                if let Some(e) = raised.lock().expect("hook error slot").take() {
                    return Err(anyhow::Error::new(e));
                }
                Ok(result?)
            },
            call_error,
        )
    }
}
