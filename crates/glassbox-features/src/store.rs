//! The activation store: a model's activations at chosen hooks over a corpus, in shards on
//! disk, with a manifest — what SAE training and probes read.
//!
//! ```text
//! DIR/manifest.json         the plan (model, hooks, context, rows, shard size, the token rows'
//!                           hash) and every finished shard: its rows, its tokens, its file's
//!                           SHA-256 and size
//! DIR/shard-00000.safetensors   per hook an f32 [rows · context, d] tensor under the hook's
//!                           name, and `tokens` [rows, context] (I64)
//! ```
//!
//! Memory is bounded by one shard. Each shard is written to a temporary file and renamed, then
//! the manifest is rewritten the same way, so a kill at any moment leaves finished shards and a
//! manifest naming only finished shards. Building again with the same plan keeps every listed
//! shard whose file still has its recorded hash and computes the rest; a different plan in the
//! same folder is refused rather than mixed.
//!
//! [`ShuffledReader`] serves training batches: shards in a seeded random order, rows mixed in a
//! bounded buffer that is refilled and reshuffled whenever it falls below half full (the
//! idea of SAELens's mixing buffer).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use glassbox_formats::input::{self, limit};
use glassbox_models::rng::SplitMix64;
use glassbox_models::{HookedModel, Hooks, NameFilter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{FeatureError, Result};

pub const MANIFEST: &str = "manifest.json";
const FORMAT: &str = "glassbox-activation-store/1";

/// What a store holds: if two builds agree on this, their shards are interchangeable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    /// The model folder or file, and a hash of its config, as given.
    pub model: String,
    pub model_fingerprint: String,
    /// Hook patterns as given, and the hooks they matched with each one's width.
    pub hook_patterns: Vec<String>,
    pub hooks: Vec<HookInfo>,
    pub context: usize,
    pub rows: usize,
    pub rows_per_shard: usize,
    /// SHA-256 of the token rows (u32 little-endian, row after row).
    pub tokens_sha256: String,
}

impl Plan {
    /// What differs between two plans, in words; `None` when their shards are interchangeable.
    pub fn differs_from(&self, other: &Plan) -> Option<&'static str> {
        if self == other {
            return None;
        }
        Some(if self.model_fingerprint != other.model_fingerprint {
            "another model: its weights, adapter, SAE splices, dtype or numerics differ"
        } else if self.hooks != other.hooks || self.hook_patterns != other.hook_patterns {
            "other hooks"
        } else if self.tokens_sha256 != other.tokens_sha256 || self.rows != other.rows {
            "another corpus or tokenization"
        } else if self.context != other.context {
            "another context"
        } else if self.rows_per_shard != other.rows_per_shard {
            "another shard size"
        } else {
            "another model path or format"
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HookInfo {
    pub name: String,
    pub d: usize,
}

/// One finished shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub file: String,
    /// Rows [start, end) of the token rows, and the token positions they hold.
    pub rows: (usize, usize),
    pub tokens: (usize, usize),
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(flatten)]
    pub plan: Plan,
    pub shards: Vec<Shard>,
}

impl Manifest {
    pub fn shard_count(&self) -> usize {
        self.plan.rows.div_ceil(self.plan.rows_per_shard)
    }

    pub fn is_complete(&self) -> bool {
        self.shards.len() == self.shard_count()
    }

    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let value = input::read_json(&path, "activation store manifest", limit::CONFIG)?;
        let m: Manifest = serde_json::from_value(value).map_err(|e| {
            FeatureError::file(&path, format!("not an activation store manifest: {e}"))
        })?;
        if m.plan.format != FORMAT {
            return Err(FeatureError::file(
                &path,
                format!("format `{}`; this glassbox reads `{FORMAT}`", m.plan.format),
            ));
        }
        if m.plan.rows_per_shard == 0 || m.plan.context == 0 {
            return Err(FeatureError::file(
                &path,
                "rows per shard and context must be positive",
            ));
        }
        Ok(m)
    }

    fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        crate::write::atomically(&dir.join(MANIFEST), text.as_bytes())
    }
}

/// Tokens run through the model for its fingerprint.
const FINGERPRINT_TOKENS: usize = 16;

/// What identifies the model a store was built from: its config, and the bits of its
/// activations at `hooks` for a fixed token sequence. A config hash alone called a merged or
/// fine-tuned model, another `--adapter`, SAE splice, dtype or numerics the same model, and a
/// store resumed under one of them mixed two models' activations. The kernels give the same
/// bits on every instruction set and thread count, so the fingerprint does too.
pub fn model_fingerprint(model: &HookedModel, hooks: &[String]) -> Result<String> {
    let info = model.info();
    let n = FINGERPRINT_TOKENS.min(info.n_ctx).max(1);
    let vocab = info.d_vocab.max(1) as u64;
    // Spread over the vocabulary, the same on every build.
    let ids: Vec<u32> = (0..n as u64)
        .map(|i| ((i * 7919 + 1) % vocab) as u32)
        .collect();
    let filter =
        NameFilter::new(hooks).map_err(|e| FeatureError::input(format!("hook names: {e}")))?;
    let (_, cache) = model.run_with_cache(&model.ids_tensor(&ids)?, &filter)?;
    let mut hasher = Sha256::new();
    hasher.update(model.config.to_string().as_bytes());
    for name in hooks {
        let values: Vec<f32> = cache
            .require(name)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        hasher.update(name.as_bytes());
        for v in values {
            hasher.update(v.to_bits().to_le_bytes());
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_sha256(path: &Path) -> Result<(u64, String)> {
    let bytes = std::fs::read(path).map_err(|e| FeatureError::io(path, e))?;
    Ok((bytes.len() as u64, sha256_hex(&bytes)))
}

/// How to build a store.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub hook_patterns: Vec<String>,
    /// Rows per forward pass.
    pub batch_size: usize,
    pub rows_per_shard: usize,
    /// Identifies the model in the plan (its path as given).
    pub model_label: String,
}

/// What a build did.
#[derive(Clone, Debug)]
pub struct BuildReport {
    pub manifest: Manifest,
    /// Shards kept from an earlier build, and computed now.
    pub kept: usize,
    pub computed: usize,
}

/// Builds (or finishes) the store in `dir` from `rows` [n, context], calling `progress` with
/// (shards done, shards in all) after each shard.
pub fn build(
    model: &HookedModel,
    rows: &Tensor,
    dir: &Path,
    opts: &BuildOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<BuildReport> {
    let (n, context) = rows.dims2()?;
    if n == 0 {
        return Err(FeatureError::input("no token rows to cache"));
    }
    if opts.batch_size == 0 || opts.rows_per_shard == 0 {
        return Err(FeatureError::input(
            "batch size and rows per shard must be at least 1",
        ));
    }
    model.check_size(opts.batch_size.min(n), context)?;
    let rows = rows.to_dtype(DType::U32)?;
    let ids: Vec<u32> = rows.flatten_all()?.to_vec1()?;
    let filter = NameFilter::new(&opts.hook_patterns)
        .map_err(|e| FeatureError::input(format!("hook patterns: {e}")))?;

    // Which hooks the patterns match, and their widths: one token through the model.
    let (_, probe) = model.run_with_cache(&model.ids_tensor(&ids[..1])?, &filter)?;
    if probe.is_empty() {
        return Err(FeatureError::input(format!(
            "no hook point of this model matches {}",
            opts.hook_patterns.join(", ")
        )));
    }
    if let Some(name) = probe
        .names()
        .find(|n| glassbox_models::Layout::of(n).pos_dim != Some(1))
    {
        return Err(FeatureError::input(format!(
            "`{name}` is laid out by head and query position, not by token; the store holds activations per token"
        )));
    }
    let hooks: Vec<HookInfo> = probe
        .iter()
        .map(|(name, t)| HookInfo {
            name: name.to_string(),
            // Per-head points are stored with their heads flattened.
            d: t.dims()[2..].iter().product(),
        })
        .collect();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    let names: Vec<String> = hooks.iter().map(|h| h.name.clone()).collect();
    let plan = Plan {
        format: FORMAT.into(),
        model: opts.model_label.clone(),
        model_fingerprint: model_fingerprint(model, &names)?,
        hook_patterns: opts.hook_patterns.clone(),
        hooks,
        context,
        rows: n,
        rows_per_shard: opts.rows_per_shard,
        tokens_sha256: sha256_hex(&bytes),
    };
    std::fs::create_dir_all(dir).map_err(|e| FeatureError::io(dir, e))?;
    remove_temporaries(dir)?;

    // Keep what an earlier build of the same plan finished and is still intact.
    let mut manifest = Manifest {
        plan: plan.clone(),
        shards: Vec::new(),
    };
    if dir.join(MANIFEST).exists() {
        let old = Manifest::read(dir)?;
        if let Some(what) = old.plan.differs_from(&plan) {
            return Err(FeatureError::file(
                dir.join(MANIFEST),
                format!("holds a store built with another plan ({what}); give an empty folder"),
            ));
        }
        for shard in old.shards {
            let path = dir.join(&shard.file);
            if path.exists() && file_sha256(&path)? == (shard.bytes, shard.sha256.clone()) {
                manifest.shards.push(shard);
            }
        }
    }
    let kept = manifest.shards.len();
    let total = manifest.shard_count();
    progress(kept, total);
    let mut computed = 0;
    for index in 0..total {
        if manifest.shards.iter().any(|s| s.index == index) {
            continue;
        }
        let start = index * opts.rows_per_shard;
        let end = (start + opts.rows_per_shard).min(n);
        let shard = write_shard(
            model,
            &rows,
            &filter,
            &plan,
            dir,
            index,
            start,
            end,
            opts.batch_size,
        )?;
        manifest.shards.push(shard);
        manifest.shards.sort_by_key(|s| s.index);
        manifest.write(dir)?;
        computed += 1;
        progress(manifest.shards.len(), total);
    }
    if computed == 0 {
        manifest.write(dir)?;
    }
    Ok(BuildReport {
        manifest,
        kept,
        computed,
    })
}

/// Leftovers of a build that was killed while writing.
fn remove_temporaries(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)
        .map_err(|e| FeatureError::io(dir, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn write_shard(
    model: &HookedModel,
    rows: &Tensor,
    filter: &NameFilter,
    plan: &Plan,
    dir: &Path,
    index: usize,
    start: usize,
    end: usize,
    batch_size: usize,
) -> Result<Shard> {
    let mut parts: HashMap<&str, Vec<Tensor>> = HashMap::new();
    let mut b = start;
    while b < end {
        let e = (b + batch_size).min(end);
        let ids = rows.narrow(0, b, e - b)?;
        let mut hooks = Hooks::caching(filter.clone());
        // Nothing after the last hook stored is computed.
        if let Some(last) = plan.hooks.last() {
            hooks.stop_after(last.name.clone());
        }
        model.run_until(&ids, &mut hooks)?;
        for h in &plan.hooks {
            let t = hooks.cache.require(&h.name)?;
            parts
                .entry(h.name.as_str())
                .or_default()
                .push(t.flatten_from(2)?.flatten_to(1)?.to_dtype(DType::F32)?);
        }
        b = e;
    }
    let mut tensors: Vec<(&str, Tensor)> = Vec::with_capacity(plan.hooks.len() + 1);
    for h in &plan.hooks {
        tensors.push((h.name.as_str(), Tensor::cat(&parts[h.name.as_str()], 0)?));
    }
    tensors.push((
        "tokens",
        rows.narrow(0, start, end - start)?.to_dtype(DType::I64)?,
    ));
    let file = format!("shard-{index:05}.safetensors");
    let path = dir.join(&file);
    crate::write::safetensors(&path, &tensors)?;
    let (bytes, sha256) = file_sha256(&path)?;
    Ok(Shard {
        index,
        file,
        rows: (start, end),
        tokens: (start * plan.context, end * plan.context),
        bytes,
        sha256,
    })
}

/// A finished store, opened for reading.
pub struct ActivationStore {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl ActivationStore {
    /// Opens a complete store (a partial one is an error that says to finish the build).
    pub fn open(dir: &Path) -> Result<ActivationStore> {
        let manifest = Manifest::read(dir)?;
        if !manifest.is_complete() {
            return Err(FeatureError::file(
                dir.join(MANIFEST),
                format!(
                    "{} of {} shards are finished; run `glassbox cache` again with the same arguments to finish it",
                    manifest.shards.len(),
                    manifest.shard_count()
                ),
            ));
        }
        Ok(ActivationStore {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The width of `hook`'s activations, if the store holds it.
    pub fn width(&self, hook: &str) -> Option<usize> {
        self.manifest
            .plan
            .hooks
            .iter()
            .find(|h| h.name == hook)
            .map(|h| h.d)
    }

    /// `hook`'s activations [tokens, d] and the tokens [tokens] of one shard, its hash checked.
    pub fn shard(&self, index: usize, hook: &str) -> Result<(Tensor, Vec<u32>)> {
        let shard = self
            .manifest
            .shards
            .iter()
            .find(|s| s.index == index)
            .ok_or_else(|| FeatureError::input(format!("no shard {index}")))?;
        let path = self.dir.join(&shard.file);
        input::regular_file(&path, "activation shard")?;
        let data = std::fs::read(&path).map_err(|e| FeatureError::io(&path, e))?;
        if (data.len() as u64, sha256_hex(&data)) != (shard.bytes, shard.sha256.clone()) {
            return Err(FeatureError::file(
                &path,
                "does not have the hash the manifest records (changed or damaged since it was written)",
            ));
        }
        // The bytes just hashed are the ones read: no second read, no change in between.
        let mut t = candle_core::safetensors::load_buffer(&data, &Device::Cpu)?;
        let acts = t
            .remove(hook)
            .ok_or_else(|| FeatureError::file(&path, format!("holds no `{hook}`")))?;
        let tokens: Vec<u32> = t
            .remove("tokens")
            .ok_or_else(|| FeatureError::file(&path, "holds no `tokens`"))?
            .flatten_all()?
            .to_dtype(DType::U32)?
            .to_vec1()?;
        Ok((acts, tokens))
    }

    /// Batches of `hook`'s activations for training, shuffled across shards.
    pub fn shuffled(&self, hook: &str, opts: ShuffleOptions) -> Result<ShuffledReader<'_>> {
        let d = self.width(hook).ok_or_else(|| {
            FeatureError::input(format!(
                "the store holds no `{hook}` (it holds {})",
                self.manifest
                    .plan
                    .hooks
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if opts.batch_size == 0 || opts.buffer_rows < opts.batch_size {
            return Err(FeatureError::input(
                "the mixing buffer must hold at least one batch",
            ));
        }
        let mut rng = SplitMix64::keyed(opts.seed, "activation-store/shards");
        let mut order: Vec<usize> = (0..self.manifest.shards.len()).collect();
        rng.shuffle(&mut order);
        Ok(ShuffledReader {
            store: self,
            hook: hook.to_string(),
            d,
            opts,
            order,
            next_shard: 0,
            buffer: Vec::new(),
            rng,
        })
    }
}

/// How [`ShuffledReader`] mixes.
#[derive(Clone, Debug)]
pub struct ShuffleOptions {
    pub batch_size: usize,
    /// Rows held for mixing (SAELens: `n_batches_in_buffer · context_size`).
    pub buffer_rows: usize,
    pub seed: u64,
    /// Leave out rows whose token is one of these (SAELens's `exclude_special_tokens`).
    pub exclude_tokens: Vec<u32>,
}

/// Batches [batch_size, d] of one hook's activations, each row once per pass over the store,
/// in a seeded order: shards in random order, rows mixed in a bounded buffer.
pub struct ShuffledReader<'a> {
    store: &'a ActivationStore,
    hook: String,
    d: usize,
    opts: ShuffleOptions,
    order: Vec<usize>,
    next_shard: usize,
    buffer: Vec<f32>,
    rng: SplitMix64,
}

impl ShuffledReader<'_> {
    fn rows_buffered(&self) -> usize {
        self.buffer.len() / self.d
    }

    /// Loads shards until the buffer is full or none is left.
    fn fill(&mut self) -> Result<()> {
        while self.rows_buffered() < self.opts.buffer_rows && self.next_shard < self.order.len() {
            let index = self.store.manifest.shards[self.order[self.next_shard]].index;
            self.next_shard += 1;
            let (acts, tokens) = self.store.shard(index, &self.hook)?;
            let values: Vec<f32> = acts.flatten_all()?.to_vec1()?;
            for (row, tok) in values.chunks_exact(self.d).zip(&tokens) {
                if !self.opts.exclude_tokens.contains(tok) {
                    self.buffer.extend_from_slice(row);
                }
            }
        }
        Ok(())
    }

    fn shuffle_buffer(&mut self) {
        let n = self.rows_buffered();
        for i in (1..n).rev() {
            let j = self.rng.below(i + 1);
            if i != j {
                for k in 0..self.d {
                    self.buffer.swap(i * self.d + k, j * self.d + k);
                }
            }
        }
    }

    /// The next batch, or None when the store is exhausted (a last partial batch included).
    pub fn next_batch(&mut self) -> Result<Option<Tensor>> {
        // Below half full, refill and mix again: rows left from earlier shards mix with new.
        if self.rows_buffered() < self.opts.batch_size.max(self.opts.buffer_rows / 2)
            && self.next_shard < self.order.len()
        {
            self.fill()?;
            self.shuffle_buffer();
        }
        let n = self.rows_buffered();
        if n == 0 {
            return Ok(None);
        }
        let take = self.opts.batch_size.min(n);
        // Serve from the end; the rest stays to mix with the next shards.
        let at = (n - take) * self.d;
        let batch: Vec<f32> = self.buffer.split_off(at);
        Ok(Some(Tensor::from_vec(batch, (take, self.d), &Device::Cpu)?))
    }
}
