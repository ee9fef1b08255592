//! all-MiniLM-L6-v2 against Hugging Face transformers (tests/fixtures/real/minilm-expected.safetensors):
//! token ids, every encoder layer's output (= `blocks.{i}.hook_normalized_resid_post`) within 1e-4, and
//! the sentence-transformers embedding (cosine ≥ 0.99999).
//!
//! The model is the real artifact fetched by `scripts/fetch-artifacts.sh` into `.artifacts/`.
//! Without it the tests print a notice and pass, unless GLASSBOX_REQUIRE_ARTIFACTS=1 (the test
//! script sets it), where a missing artifact fails.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use glassbox_formats::{Checkpoint, SafetensorsFile};
use glassbox_models::bert::{PoolingMode, SentenceEncoder, SentencePooling};
use glassbox_models::{HookedModel, Hooks, LoadOptions, NameFilter};

const TOLERANCE: f32 = 1e-4;

#[path = "support/artifacts.rs"]
mod artifacts;
#[path = "support/bert_mlm.rs"]
mod bert_mlm;
use artifacts::{artifact, workspace};

struct Expected {
    tensors: Checkpoint,
    sentences: Vec<String>,
}

fn expected() -> Expected {
    let path = workspace().join("tests/fixtures/real/minilm-expected.safetensors");
    let meta = SafetensorsFile::open(&path).unwrap();
    let sentences = meta.metadata["sentences"]
        .split('\n')
        .map(str::to_string)
        .collect();
    Expected {
        tensors: Checkpoint::open(&path).unwrap(),
        sentences,
    }
}

impl Expected {
    fn tensor(&self, name: &str) -> Tensor {
        self.tensors.tensor(name, &Device::Cpu).unwrap()
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn cosine(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// One sentence: ids, each layer's output, and the pooled embedding against the reference.
fn check(encoder: &SentenceEncoder, j: usize, text: &str, expected: &Expected) {
    let ids = encoder.tokenize(text).unwrap();
    let want_ids: Vec<u32> = expected
        .tensor(&format!("s{j}.input_ids"))
        .flatten_all()
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(ids, want_ids, "sentence {j} `{text}`: token ids");

    let input = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut hooks =
        Hooks::caching(NameFilter::new(&["blocks.*.hook_normalized_resid_post"]).unwrap());
    encoder
        .model
        .encode(&input, None, None, &mut hooks)
        .unwrap();
    for layer in 0..encoder.model.config.num_hidden_layers {
        let got = &hooks.cache[format!("blocks.{layer}.hook_normalized_resid_post").as_str()];
        let want = expected.tensor(&format!("s{j}.layer{layer}.output"));
        let diff = max_abs_diff(got, &want);
        eprintln!("sentence {j}, layer {layer}: max |diff| {diff:.2e}");
        assert!(
            diff <= TOLERANCE,
            "sentence {j}, layer {layer}: max |diff| {diff} > {TOLERANCE}"
        );
    }

    let embedding = encoder.embed(&[text]).unwrap();
    let want = expected.tensor(&format!("s{j}.embedding"));
    let cos = cosine(&embedding, &want);
    eprintln!("sentence {j}: embedding cosine {cos}");
    assert!(cos >= 0.99999, "sentence {j}: embedding cosine {cos}");
}

#[test]
fn minilm_matches_transformers() {
    let Some(dir) = artifact("all-minilm-l6-v2") else {
        return;
    };
    let encoder = SentenceEncoder::load(&dir, &LoadOptions::default()).unwrap();
    // modules.json: Transformer, Pooling (mean tokens), Normalize; max_seq_length 256.
    assert_eq!(
        encoder.pooling,
        SentencePooling {
            mode: PoolingMode::Mean,
            normalize: true
        }
    );
    assert_eq!(encoder.max_seq_length, 256);
    let expected = expected();
    assert_eq!(expected.sentences.len(), 3);
    for (j, text) in expected.sentences.iter().enumerate() {
        check(&encoder, j, text, &expected);
    }
}

/// A right-padded batch embeds each sentence as it does alone: the padding mask reaches both
/// attention and pooling.
#[test]
fn padded_batch_embeds_like_single_sentences() {
    let Some(dir) = artifact("all-minilm-l6-v2") else {
        return;
    };
    let encoder = SentenceEncoder::load(&dir, &LoadOptions::default()).unwrap();
    let expected = expected();
    let texts: Vec<&str> = expected.sentences.iter().map(String::as_str).collect();
    let batch = encoder.embed(&texts).unwrap();
    assert_eq!(batch.dims(), &[3, 384]);
    for (j, _) in texts.iter().enumerate() {
        let want = expected.tensor(&format!("s{j}.embedding"));
        let got = batch.get(j).unwrap().unsqueeze(0).unwrap();
        let cos = cosine(&got, &want);
        assert!(
            cos >= 0.99999,
            "batched sentence {j}: embedding cosine {cos}"
        );
    }
}

/// Through the generic loader: the registry builds the encoder from config.json, and the forward
/// pass (no MLM head here) returns the last layer's output, with every hook point cached.
#[test]
fn hooked_model_loads_bert_from_config() {
    let Some(dir) = artifact("all-minilm-l6-v2") else {
        return;
    };
    let model = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
    assert!(!model.info().causal);
    let expected = expected();
    let ids = model.to_tokens(&expected.sentences[0]).unwrap();
    let (out, cache) = model
        .run_with_cache(&model.ids_tensor(&ids).unwrap(), &NameFilter::all())
        .unwrap();
    let want = expected.tensor("s0.layer5.output");
    assert!(max_abs_diff(&out, &want) <= TOLERANCE);
    let t = ids.len();
    for (name, dims) in [
        ("hook_embed", vec![1, t, 384]),
        ("hook_pos_embed", vec![1, t, 384]),
        ("blocks.0.hook_resid_pre", vec![1, t, 384]),
        ("blocks.0.attn.hook_q", vec![1, t, 12, 32]),
        ("blocks.0.attn.hook_pattern", vec![1, 12, t, t]),
        ("blocks.0.attn.hook_z", vec![1, t, 12, 32]),
        ("blocks.0.hook_attn_out", vec![1, t, 384]),
        ("blocks.0.hook_resid_mid", vec![1, t, 384]),
        ("blocks.0.ln1.hook_normalized", vec![1, t, 384]),
        ("blocks.0.mlp.hook_pre", vec![1, t, 1536]),
        ("blocks.0.mlp.hook_post", vec![1, t, 1536]),
        ("blocks.0.hook_mlp_out", vec![1, t, 384]),
        ("blocks.5.hook_resid_post", vec![1, t, 384]),
        ("blocks.5.ln2.hook_normalized", vec![1, t, 384]),
        ("blocks.5.hook_normalized_resid_post", vec![1, t, 384]),
    ] {
        assert_eq!(
            cache.require(name).unwrap().dims(),
            dims.as_slice(),
            "{name}"
        );
    }
    // Bidirectional: the first token attends to later ones.
    let pattern = cache["blocks.0.attn.hook_pattern"].get(0).unwrap();
    let later = pattern
        .narrow(2, 1, t - 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(later > 0.1);
}

/// Gradients flow from the output back to the embeddings (LayerNorm, softmax and GELU are
/// differentiable here), as attribution patching needs: a zero tensor added at `hook_embed`
/// gets a non-zero gradient at every position.
#[test]
fn gradients_reach_the_embeddings() {
    let Some(dir) = artifact("all-minilm-l6-v2") else {
        return;
    };
    let encoder = SentenceEncoder::load(&dir, &LoadOptions::default()).unwrap();
    let ids = encoder
        .tokenize("Gradients flow through every layer.")
        .unwrap();
    let t = ids.len();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let delta = candle_core::Var::zeros((1, t, 384), DType::F32, &Device::Cpu).unwrap();
    let mut hooks = Hooks::none();
    let added = delta.as_tensor().clone();
    hooks.add_fn(NameFilter::new(&["hook_embed"]).unwrap(), move |_, x| {
        Ok(Some(x.broadcast_add(&added)?))
    });
    let hidden = encoder
        .model
        .encode(&input, None, None, &mut hooks)
        .unwrap();
    // Read the last position only, so that the gradient at other positions comes through
    // attention alone.
    let out = hidden
        .narrow(1, t - 1, 1)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = out.backward().unwrap();
    let grad = grads
        .get(delta.as_tensor())
        .expect("no gradient reached hook_embed");
    let per_position = grad
        .abs()
        .unwrap()
        .sum((0, 2))
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(
        per_position.iter().all(|&g| g > 1e-6),
        "gradient per position: {per_position:?}"
    );
}

/// A small random `BertForMaskedLM` checkpoint (`bert.` prefix, tied decoder): the forward pass
/// returns MLM logits, which equal the head computed by hand from the last layer's output.
#[test]
fn masked_lm_head_gives_logits() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bert-mlm-{}", std::process::id()));
    let weights = bert_mlm::write(&dir);
    let (d, vocab) = (bert_mlm::D_MODEL, bert_mlm::VOCAB);
    let dev = Device::Cpu;
    let model = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(model.info().architecture, "BertForMaskedLM");
    let ids = Tensor::new(&[[2u32, 7, 39, 11, 0]], &dev).unwrap();
    let filter = NameFilter::new(&["blocks.1.hook_normalized_resid_post"]).unwrap();
    let (logits, cache) = model.run_with_cache(&ids, &filter).unwrap();
    assert_eq!(logits.dims(), &[1, 5, vocab]);

    // The head by hand: dense, exact GELU, LayerNorm, then the tied word embeddings.
    let w = |name: &str| weights[name].clone();
    let hidden = &cache["blocks.1.hook_normalized_resid_post"];
    let x = hidden
        .broadcast_matmul(&w("cls.predictions.transform.dense.weight").t().unwrap())
        .unwrap()
        .broadcast_add(&w("cls.predictions.transform.dense.bias"))
        .unwrap()
        .gelu_erf()
        .unwrap();
    let centered = x.broadcast_sub(&x.mean_keepdim(2).unwrap()).unwrap();
    let std = (centered.sqr().unwrap().mean_keepdim(2).unwrap() + 1e-12)
        .unwrap()
        .sqrt()
        .unwrap();
    let normed = centered
        .broadcast_div(&std)
        .unwrap()
        .broadcast_mul(&w("cls.predictions.transform.LayerNorm.weight"))
        .unwrap()
        .broadcast_add(&w("cls.predictions.transform.LayerNorm.bias"))
        .unwrap();
    let expected = normed
        .broadcast_matmul(&w("bert.embeddings.word_embeddings.weight").t().unwrap())
        .unwrap()
        .broadcast_add(&w("cls.predictions.bias"))
        .unwrap();
    assert!(max_abs_diff(&logits, &expected) <= TOLERANCE);
    assert_eq!(model.model.w_u().unwrap().dims(), &[d, vocab]);
    assert_eq!(model.model.w_o(1).unwrap().dims(), &[2, 8, d]);
    std::fs::remove_dir_all(&dir).unwrap();
}
