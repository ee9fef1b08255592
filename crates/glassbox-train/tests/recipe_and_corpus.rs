//! Recipes are validated with messages that say what is wrong; the corpus is a pure function
//! of its seed, made of the planted segments, and tokenizes one id per word.

use std::path::{Path, PathBuf};

use glassbox_train::corpus::{self, CorpusConfig};
use glassbox_train::{vocab, Recipe};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny() -> Recipe {
    Recipe::load(&fixtures().join("tiny.toml")).expect("tiny recipe loads")
}

/// Each bad recipe's first line is `# expect: <part of the error message>`.
fn check_bad_recipe(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let expected = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{}: no `# expect:` line", path.display()));
    let err = Recipe::load(path).expect_err(&format!("{} should be rejected", path.display()));
    let msg = err.to_string();
    assert!(err.is_invalid_input(), "{msg}");
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name the file: {msg}"
    );
    assert!(
        msg.contains(expected),
        "{}: expected `{expected}` in `{msg}`",
        path.display()
    );
}

#[test]
fn bad_recipes_are_rejected_with_the_reason() {
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures().join("bad-recipes")).unwrap() {
        check_bad_recipe(&entry.unwrap().path());
        n += 1;
    }
    assert!(n >= 7, "only {n} bad-recipe fixtures");
}

#[test]
fn reference_recipe_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes/reference.toml");
    let r = Recipe::load(&path).unwrap();
    assert!(
        r.training.checkpoints.contains(&10),
        "the tour and CI reproduce step 10"
    );
}

#[test]
fn schedule_warms_up_then_decays_to_the_floor() {
    let r = tiny(); // lr 1e-2, warmup 2, 6 steps, floor 0.1
    let lr: Vec<f64> = (1..=6).map(|s| r.learning_rate(s)).collect();
    assert!(
        (lr[0] - 5e-3).abs() < 1e-12 && (lr[1] - 1e-2).abs() < 1e-12,
        "{lr:?}"
    );
    assert!(lr.windows(2).skip(1).all(|w| w[1] < w[0]), "{lr:?}");
    assert!((lr[5] - 1e-3).abs() < 1e-12, "{lr:?}");
}

fn config(seed: u64) -> CorpusConfig {
    CorpusConfig {
        seed,
        ..tiny().data
    }
}

#[test]
fn corpus_is_a_function_of_its_seed() {
    let a = corpus::text(&corpus::generate(&config(3), "train", 50));
    let b = corpus::text(&corpus::generate(&config(3), "train", 50));
    let c = corpus::text(&corpus::generate(&config(4), "train", 50));
    let held = corpus::text(&corpus::generate(&config(3), "held_out", 50));
    assert_eq!(
        corpus::sha256_hex(a.as_bytes()),
        corpus::sha256_hex(b.as_bytes())
    );
    assert_ne!(a, c);
    assert_ne!(a, held, "splits must be independent streams");
}

#[test]
fn documents_are_exact_length_vocabulary_words_with_planted_segments() {
    let cfg = CorpusConfig {
        seq_len: 64,
        ..config(11)
    };
    let vocab = corpus::vocabulary(&cfg);
    let split = corpus::generate(&cfg, "train", 200);
    for doc in &split.documents {
        assert_eq!(doc.len(), 64);
        assert!(doc
            .iter()
            .all(|w| vocab[corpus::SPECIALS..].iter().any(|v| v == w)));
    }
    let c = &split.counts;
    assert!(
        c.sentences > 0 && c.facts > 0 && c.bindings > 0 && c.spans > 0 && c.echoes > 0,
        "{c:?}"
    );
    // Facts follow the table (random spans may form a rare chance `kNN is vMM` too).
    let table = corpus::fact_table(&cfg);
    let (mut agree, mut total) = (0, 0);
    for doc in &split.documents {
        for w in doc.windows(3) {
            let key = w[0].strip_prefix('k').and_then(|k| k.parse::<usize>().ok());
            if let (Some(k), "is", true) = (key, w[1], w[2].starts_with('v')) {
                total += 1;
                agree += usize::from(w[2] == corpus::value_word(table[k]));
            }
        }
    }
    // A fact cut by the end of its document is not counted.
    assert!(
        total * 10 >= c.facts * 9 && agree as f64 >= 0.95 * total as f64,
        "{agree}/{total} facts follow the table"
    );
}

#[test]
fn tokenizer_is_one_id_per_word_after_bos() {
    let cfg = config(5);
    let words = corpus::vocabulary(&cfg);
    let tok = vocab::build(&words).unwrap();
    let ids = vocab::encode(&tok, "the old fox chases a bird . k03 is v07 .").unwrap();
    let expect: Vec<u32> = [
        "<bos>", "the", "old", "fox", "chases", "a", "bird", ".", "k03", "is", "v07", ".",
    ]
    .iter()
    .map(|w| words.iter().position(|v| v == w).unwrap() as u32)
    .collect();
    assert_eq!(ids, expect);
    assert_eq!(tok.get_vocab_size(true), words.len());
}

/// A parse error quotes its line cut short: a 200 KB line was printed whole.
#[test]
fn parse_errors_quote_long_lines_cut_short() {
    let text = format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = glassbox_train::recipe::Recipe::parse(&text).unwrap_err();
    assert!(err.len() < 1_000, "{} characters", err.len());
    assert!(
        err.contains("more characters") && err.contains("line 1"),
        "{err}"
    );
}
