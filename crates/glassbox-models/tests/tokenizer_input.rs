//! tokenizer.json files that parse but that the tokenizers crate would panic on (issue 19's
//! reproductions): each is refused with an error naming the file and the problem, never a
//! panic; and the input policy holds for the file itself (special files, UTF-8).

use std::path::PathBuf;

use glassbox_models::tokenizer::Tokenizer;
use serde_json::{json, Value};

fn base() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/more/llama3/tokenizer.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write(name: &str, v: &Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string(v).unwrap()).unwrap();
    path
}

/// Loading and then encoding and decoding: an error is fine, a panic is not.
fn outcome(path: &std::path::Path) -> Result<(), String> {
    let t = Tokenizer::from_file(path).map_err(|e| e.to_string())?;
    let ids = t.encode("Hello world, café").map_err(|e| e.to_string())?;
    t.decode(&ids).map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn malformed_components_are_errors_naming_the_file() {
    assert!(outcome(&write("ok.json", &base())).is_ok());
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut t = base();
    t["post_processor"] = json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<missing>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {}
    });
    cases.push(("template.json", t, "special token `<missing>`"));
    let mut t = base();
    t["normalizer"] = json!({"type": "Precompiled", "precompiled_charsmap": "AAAA"});
    cases.push(("charsmap.json", t, "Precompiled"));
    let mut t = base();
    t["normalizer"] = json!({"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"String": ""}, "content": "x"}]});
    cases.push(("replace.json", t, "empty pattern"));
    // Decoders whose keys or values have the wrong type (the `type` a number, a key that is
    // no field): errors from the tokenizers crate's own checks.
    for (i, decoder) in [
        json!({"type": 5}),
        json!({"type": null}),
        json!({"5": 1}),
        json!({"type": "Sequence", "decoders": [{"type": 5}]}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = base();
        t["decoder"] = decoder;
        let name = format!("decoder-{i}.json");
        let path = write(&name, &t);
        let err = outcome(&path).expect_err(&name);
        assert!(err.contains(&name), "{name}: the file is not named: {err}");
    }
    for (name, json, expect) in cases {
        let path = write(name, &json);
        let err = outcome(&path).expect_err(name);
        assert!(err.contains(expect), "{name}: {err}");
        assert!(err.contains(name), "{name}: the file is not named: {err}");
    }
}

#[test]
fn the_file_itself_follows_the_input_policy() {
    let latin1 = write("latin1.json", &base());
    let mut bytes = std::fs::read(&latin1).unwrap();
    bytes.extend_from_slice(b" \xe9");
    std::fs::write(&latin1, bytes).unwrap();
    let err = Tokenizer::from_file(&latin1).err().unwrap();
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    assert!(err.is_invalid_input());
    #[cfg(unix)]
    {
        let err = Tokenizer::from_file(std::path::Path::new("/dev/urandom"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("is a device"), "{err}");
        assert!(err.is_invalid_input());
    }
}

/// A vocabulary whose unknown token is not in it loads, and fails only when a text needs that
/// token: the error then still names the file (it is the user's only lead).
#[test]
fn errors_after_loading_name_the_file() {
    let json = json!({
        "version": "1.0",
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1}, "unk_token": "<absent>"}
    });
    let path = write("no-unk.json", &json);
    let t = Tokenizer::from_file(&path).unwrap();
    assert_eq!(t.encode("a b").unwrap(), vec![0, 1]);
    let err = t.encode("a zzz").unwrap_err().to_string();
    assert!(err.contains("no-unk.json"), "the file is not named: {err}");
}
