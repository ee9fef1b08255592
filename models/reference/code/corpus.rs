//! The synthetic corpus: text with mechanisms known in advance.
//!
//! Every document is exactly `seq_len` words, drawn from a fixed vocabulary by a seeded
//! generator (see [`crate::rng`]), as a mix of four kinds of segment. Each kind plants one
//! mechanism that an interpretability analysis should find in the trained model:
//!
//! | segment | example | mechanism it needs |
//! | --- | --- | --- |
//! | sentence | `the old fox chases a bird .` | a simple grammar (determiner, adjective, noun, verb) |
//! | fact | `k07 is v19 .` | key → value recalled *from the weights*: one fixed table per seed |
//! | bindings | `x3 = v02 , x9 = v11 .` … later `x9 = v11 .` | key → value recalled *from context* |
//! | span | `cat v04 sees x1 …` … later the same words | induction: copy what followed last time (any words but `is` and `=`) |
//!
//! A fraction of documents (`repeat_documents`) is instead one random span repeated end to
//! end, the densest induction signal. A span or binding is echoed after 0–2 further segments, so earlier context predicts the
//! echo. The fact table is a pure function of the seed, so the same keys always map to the
//! same values across the whole corpus and only the weights can hold it.
//!
//! The generator's output is identified by sha256 over its text and over its token ids; the
//! release's data manifest records both, and `reproduce` regenerates and checks them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rng::SplitMix64;

/// Name and version of this generator, recorded in the manifest. Bump on any output change.
pub const GENERATOR: &str = "glassbox-synthetic-v2";

pub const BOS: &str = "<bos>";
pub const UNK: &str = "<unk>";
pub const PAD: &str = "<pad>";

const DETERMINERS: &[&str] = &["the", "a"];
const ADJECTIVES: &[&str] = &[
    "big", "small", "red", "blue", "old", "new", "happy", "quiet",
];
const NOUNS: &[&str] = &["cat", "dog", "bird", "fish", "fox", "bear", "child", "king"];
const VERBS: &[&str] = &["sees", "likes", "chases", "finds", "helps", "calls"];
const PUNCTUATION: &[&str] = &[".", ",", "=", "is"];
/// Words that only ever relate a key to its value.
const RELATIONS: &[&str] = &["=", "is"];

/// The generator's settings, from the recipe's `[data]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusConfig {
    /// Seed of the corpus (independent of the weight-initialisation seed).
    pub seed: u64,
    /// Words per document; the model sees `<bos>` plus these.
    pub seq_len: usize,
    pub train_documents: usize,
    pub held_out_documents: usize,
    /// Keys `k00…` of the fact table recalled from the weights.
    #[serde(default = "default_keys")]
    pub fact_keys: usize,
    /// Values `v00…`, shared by facts and bindings.
    #[serde(default = "default_values")]
    pub values: usize,
    /// Context variables `x0…` of the in-context bindings.
    #[serde(default = "default_variables")]
    pub variables: usize,
    /// Relative weights of sentence, fact, bindings and span segments.
    #[serde(default = "default_mix")]
    pub mix: [f64; 4],
    /// Shortest and longest repeated span, in words.
    #[serde(default = "default_span")]
    pub span_len: [usize; 2],
    /// Fraction of documents that are one random span repeated end to end (`r r r …`):
    /// the densest induction signal, and the form the head-role probes use.
    #[serde(default)]
    pub repeat_documents: f64,
}

fn default_keys() -> usize {
    24
}
fn default_values() -> usize {
    24
}
fn default_variables() -> usize {
    10
}
fn default_mix() -> [f64; 4] {
    [0.3, 0.2, 0.2, 0.3]
}
fn default_span() -> [usize; 2] {
    [5, 10]
}

/// Why a corpus configuration cannot be used.
pub fn validate(c: &CorpusConfig) -> Result<(), String> {
    let checks = [
        (
            c.seq_len >= 16 && c.seq_len <= 4096,
            "seq_len must be in 16..=4096",
        ),
        (c.train_documents >= 1, "train_documents must be at least 1"),
        (
            c.held_out_documents >= 1,
            "held_out_documents must be at least 1",
        ),
        (
            c.train_documents <= 10_000_000,
            "train_documents must be at most 10 000 000",
        ),
        (
            c.held_out_documents <= 1_000_000,
            "held_out_documents must be at most 1 000 000",
        ),
        (
            c.fact_keys >= 1 && c.fact_keys <= 100,
            "fact_keys must be in 1..=100",
        ),
        (
            c.values >= 2 && c.values <= 100,
            "values must be in 2..=100",
        ),
        (
            c.variables >= 2 && c.variables <= 100,
            "variables must be in 2..=100",
        ),
        (
            c.mix.iter().all(|w| w.is_finite() && *w >= 0.0) && c.mix.iter().sum::<f64>() > 0.0,
            "mix weights must be non-negative with a positive sum",
        ),
        (
            (0.0..=1.0).contains(&c.repeat_documents),
            "repeat_documents must be in [0, 1]",
        ),
        (
            c.span_len[0] >= 2 && c.span_len[0] <= c.span_len[1] && c.span_len[1] <= c.seq_len / 2,
            "span_len must be [lo, hi] with 2 <= lo <= hi <= seq_len/2",
        ),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, why)) => Err(why.to_string()),
        None => Ok(()),
    }
}

/// The words of the vocabulary, in id order: special tokens first.
pub fn vocabulary(c: &CorpusConfig) -> Vec<String> {
    let mut v: Vec<String> = [BOS, UNK, PAD].iter().map(|s| s.to_string()).collect();
    for group in [PUNCTUATION, DETERMINERS, ADJECTIVES, NOUNS, VERBS] {
        v.extend(group.iter().map(|s| s.to_string()));
    }
    v.extend((0..c.fact_keys).map(key_word));
    v.extend((0..c.values).map(value_word));
    v.extend((0..c.variables).map(|i| format!("x{i}")));
    v
}

/// Number of special tokens at the start of the vocabulary (never generated).
pub const SPECIALS: usize = 3;

pub fn key_word(i: usize) -> String {
    format!("k{i:02}")
}
pub fn value_word(i: usize) -> String {
    format!("v{i:02}")
}

/// The fact table: value index of each key, a pure function of the corpus seed.
pub fn fact_table(c: &CorpusConfig) -> Vec<usize> {
    let mut rng = SplitMix64::keyed(c.seed, "fact-table");
    (0..c.fact_keys).map(|_| rng.below(c.values)).collect()
}

/// How many segments of each kind a split holds: the ground truth the card reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentCounts {
    pub sentences: usize,
    pub facts: usize,
    pub bindings: usize,
    pub spans: usize,
    pub echoes: usize,
    pub repeat_documents: usize,
}

/// One generated split: documents as words.
pub struct Split {
    pub documents: Vec<Vec<&'static str>>,
    pub counts: SegmentCounts,
}

/// Generates a split. `label` ("train", "held_out") keys an independent stream.
pub fn generate(c: &CorpusConfig, label: &str, n_docs: usize) -> Split {
    let words = Words::new(c);
    let table = fact_table(c);
    let mut rng = SplitMix64::keyed(c.seed, label);
    let mut counts = SegmentCounts::default();
    let documents = (0..n_docs)
        .map(|_| document(c, &words, &table, &mut rng, &mut counts))
        .collect();
    Split { documents, counts }
}

/// Interned words, so that documents borrow `'static` strings instead of allocating.
struct Words {
    /// Words random spans are drawn from: every ordinary word but the relation words `is`
    /// and `=`, so that `kNN is` and `xN =` only ever introduce a fact or a binding.
    random: Vec<&'static str>,
    keys: Vec<&'static str>,
    values: Vec<&'static str>,
    variables: Vec<&'static str>,
}

impl Words {
    fn new(c: &CorpusConfig) -> Words {
        // A few hundred short strings leaked once per process: the vocabulary is tiny and
        // interning keeps a million-word corpus allocation-free.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let vocab = vocabulary(c);
        let random = vocab[SPECIALS..]
            .iter()
            .filter(|w| !RELATIONS.contains(&w.as_str()))
            .map(|w| leak(w.clone()))
            .collect();
        Words {
            random,
            keys: (0..c.fact_keys).map(|i| leak(key_word(i))).collect(),
            values: (0..c.values).map(|i| leak(value_word(i))).collect(),
            variables: (0..c.variables).map(|i| leak(format!("x{i}"))).collect(),
        }
    }
}

fn document(
    c: &CorpusConfig,
    w: &Words,
    table: &[usize],
    rng: &mut SplitMix64,
    counts: &mut SegmentCounts,
) -> Vec<&'static str> {
    let mut doc: Vec<&'static str> = Vec::with_capacity(c.seq_len + 16);
    if c.repeat_documents > 0.0 && rng.chance(c.repeat_documents) {
        let len = rng.range(c.span_len[0], c.span_len[1]);
        let span: Vec<&'static str> = (0..len).map(|_| *rng.pick(&w.random)).collect();
        while doc.len() < c.seq_len {
            doc.extend(span.iter().copied());
        }
        doc.truncate(c.seq_len);
        counts.repeat_documents += 1;
        return doc;
    }
    // Echoes waiting to be repeated: (segments still to wait, words).
    let mut pending: Vec<(usize, Vec<&'static str>)> = Vec::new();
    let total: f64 = c.mix.iter().sum();
    while doc.len() < c.seq_len {
        if let Some(i) = pending.iter().position(|(wait, _)| *wait == 0) {
            let (_, echo) = pending.remove(i);
            doc.extend(echo);
            counts.echoes += 1;
            continue;
        }
        for p in pending.iter_mut() {
            p.0 -= 1;
        }
        let mut r = rng.unit() * total;
        let mut kind = 0;
        while kind < 3 && r >= c.mix[kind] {
            r -= c.mix[kind];
            kind += 1;
        }
        match kind {
            0 => {
                sentence(rng, &mut doc);
                counts.sentences += 1;
            }
            1 => {
                let k = rng.below(table.len());
                doc.extend([w.keys[k], "is", w.values[table[k]], "."]);
                counts.facts += 1;
            }
            2 => {
                let n = rng.range(2, 3);
                let mut vars: Vec<usize> = (0..w.variables.len()).collect();
                rng.shuffle(&mut vars);
                let mut bound = Vec::new();
                for (j, &x) in vars[..n].iter().enumerate() {
                    let v = w.values[rng.below(w.values.len())];
                    doc.extend([w.variables[x], "=", v, if j + 1 == n { "." } else { "," }]);
                    bound.push((w.variables[x], v));
                }
                let (x, v) = *rng.pick(&bound);
                pending.push((rng.range(0, 2), vec![x, "=", v, "."]));
                counts.bindings += 1;
            }
            _ => {
                let len = rng.range(c.span_len[0], c.span_len[1]);
                let span: Vec<&'static str> = (0..len).map(|_| *rng.pick(&w.random)).collect();
                doc.extend(span.iter().copied());
                pending.push((rng.range(0, 2), span));
                counts.spans += 1;
            }
        }
    }
    doc.truncate(c.seq_len);
    doc
}

/// `det [adj] noun verb det [adj] noun .`
fn sentence(rng: &mut SplitMix64, out: &mut Vec<&'static str>) {
    noun_phrase(rng, out);
    out.push(*rng.pick(VERBS));
    noun_phrase(rng, out);
    out.push(".");
}

fn noun_phrase(rng: &mut SplitMix64, out: &mut Vec<&'static str>) {
    out.push(*rng.pick(DETERMINERS));
    if rng.chance(0.5) {
        out.push(*rng.pick(ADJECTIVES));
    }
    out.push(*rng.pick(NOUNS));
}

/// Text of a split: one document per line, words separated by single spaces.
pub fn text(split: &Split) -> String {
    let mut s = String::new();
    for d in &split.documents {
        s.push_str(&d.join(" "));
        s.push('\n');
    }
    s
}

/// Lowercase hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of token ids as little-endian u32, the exact stream the model trains on.
pub fn sha256_ids(ids: &[u32]) -> String {
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
