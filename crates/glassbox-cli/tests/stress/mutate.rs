//! How inputs are damaged: hostile JSON values, byte damage, text lines, GGUF metadata,
//! special files, torch zips' pickles. Seeded, the same on every machine.

use std::path::Path;

use glassbox_formats::gguf::{GgufArray, GgufValue};
use glassbox_formats::gguf_write::GgufWriter;
use glassbox_formats::Checkpoint;
use serde_json::{json, Value};

/// xorshift64*: small, seeded, the same on every machine.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values that break sizes, types and signs.
pub(crate) fn hostile_value(rng: &mut Rng) -> Value {
    rng.pick(&[
        json!(0),
        json!(-1),
        json!(1),
        json!(3),
        json!(1_000_000_000u64),
        json!(4_294_967_295u64),
        json!(u64::MAX),
        json!(2.5),
        json!(-1e30),
        json!(1e300),
        json!(null),
        json!("x"),
        json!(""),
        json!(true),
        json!([]),
        json!({}),
        json!([1, 2, 3]),
    ])
    .clone()
}

/// Every node of a JSON value, as a path of keys / indices.
pub(crate) fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(json!(k));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            // Long arrays (vocabularies, merges): a few entries stand for the rest.
            for (i, child) in a.iter().enumerate().take(4) {
                prefix.push(json!(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

pub(crate) fn node_mut<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |node, key| match key {
        Value::String(k) => &mut node[k.as_str()],
        Value::Number(i) => &mut node[i.as_u64().unwrap() as usize],
        _ => unreachable!(),
    })
}

/// Replaces one node of `v` (or removes it from its object) and says which.
pub(crate) fn mutate_json(v: &mut Value, rng: &mut Rng) -> String {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = rng.pick(&all).clone();
    let name = path
        .iter()
        .map(|p| p.to_string().trim_matches('"').to_string())
        .collect::<Vec<_>>()
        .join(".");
    if rng.below(5) == 0 && !path.is_empty() {
        let (last, parent) = path.split_last().unwrap();
        if let (Value::Object(m), Value::String(k)) = (node_mut(v, parent), last) {
            m.remove(k);
            return format!("removed `{name}`");
        }
    }
    let value = hostile_value(rng);
    *node_mut(v, &path) = value.clone();
    format!("`{name}` = {value}")
}

/// Byte-level damage: truncation, a flipped byte, a run of zeros.
pub(crate) fn mutate_bytes(bytes: &mut Vec<u8>, rng: &mut Rng) -> String {
    let at = rng.below(bytes.len());
    match rng.below(3) {
        0 => {
            bytes.truncate(at);
            format!("truncated at {at}")
        }
        1 => {
            let b = rng.next() as u8;
            bytes[at] = b;
            format!("byte {at} = {b:#x}")
        }
        _ => {
            let end = (at + 1 + rng.below(64)).min(bytes.len());
            bytes[at..end].iter_mut().for_each(|b| *b = 0);
            format!("zeros at {at}..{end}")
        }
    }
}

/// A llama.cpp-made GGUF rewritten with one metadata value made hostile (or removed), its
/// tensors as they were.
pub(crate) fn mutated_gguf(src: &Path, dst: &Path, rng: &mut Rng) -> String {
    let ck = Checkpoint::open(src).unwrap();
    let meta = ck.gguf().unwrap().metadata().to_vec();
    let (key, _) = rng.pick(&meta).clone();
    let hostile = rng
        .pick(&[
            Some(GgufValue::U32(0)),
            Some(GgufValue::U32(u32::MAX)),
            Some(GgufValue::U64(u64::MAX)),
            Some(GgufValue::I32(-1)),
            Some(GgufValue::F32(f32::NAN)),
            Some(GgufValue::F32(1e30)),
            Some(GgufValue::String("x".into())),
            Some(GgufValue::Bool(true)),
            Some(GgufValue::Array(GgufArray::U32(vec![]))),
            Some(GgufValue::Array(GgufArray::U32(vec![u32::MAX; 3]))),
            None,
        ])
        .clone();
    let mut w = GgufWriter::new();
    for (k, v) in &meta {
        match (k == &key, &hostile) {
            (false, _) => {
                w.set(k, v.clone());
            }
            (true, Some(h)) => {
                w.set(k, h.clone());
            }
            (true, None) => {}
        }
    }
    for t in ck.tensors() {
        let bytes = ck.raw_bytes(&t.name).unwrap().to_vec();
        w.add_raw(&t.name, &t.shape, t.dtype, bytes).unwrap();
    }
    w.write(dst).unwrap();
    match hostile {
        Some(h) => format!("`{key}` = {h:?}"),
        None => format!("removed `{key}`"),
    }
}

/// Text damage for cards, YAML and TOML: one line's value made hostile, or byte damage.
pub(crate) fn mutate_text(text: &str, rng: &mut Rng) -> (String, String) {
    let lines: Vec<&str> = text.lines().collect();
    if rng.below(2) == 0 && !lines.is_empty() {
        let i = rng.below(lines.len());
        let value = *rng.pick(&[
            "0",
            "-1",
            "1000000000",
            "18446744073709551616",
            "2.5",
            "\"x\"",
            "true",
            "[]",
            "{}",
            "",
            ":",
            "- -",
            "\u{0}",
        ]);
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        out[i] = match lines[i].split_once(['=', ':']) {
            Some((key, _)) => format!(
                "{key}{} {value}",
                if lines[i].contains('=') { " =" } else { ":" }
            ),
            None => value.to_string(),
        };
        (out.join("\n"), format!("line {} = {value}", i + 1))
    } else {
        let mut bytes = text.as_bytes().to_vec();
        let what = mutate_bytes(&mut bytes, rng);
        (String::from_utf8_lossy(&bytes).into_owned(), what)
    }
}

/// Replaces `path` by a special file or a directory, and says which.
pub(crate) fn make_special(path: &Path, rng: &mut Rng) -> String {
    let _ = std::fs::remove_file(path);
    let special = *rng.pick(&["/dev/zero", "/dev/null", "/dev/urandom", "directory"]);
    if special == "directory" {
        std::fs::create_dir_all(path).unwrap();
    } else {
        #[cfg(unix)]
        std::os::unix::fs::symlink(special, path).unwrap();
    }
    format!("→ {special}")
}

/// One file of a folder damaged: a JSON node, its bytes, swapped for a special file, or removed.
pub(crate) fn damage_file(path: &Path, rng: &mut Rng) -> String {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let is_json = name.ends_with(".json");
    match rng.below(6) {
        0 | 1 if is_json => {
            let mut v: Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let what = mutate_json(&mut v, rng);
            std::fs::write(path, v.to_string()).unwrap();
            format!("{name} {what}")
        }
        4 => format!("{name} {}", make_special(path, rng)),
        5 => {
            std::fs::remove_file(path).unwrap();
            format!("{name} removed")
        }
        _ => {
            let mut bytes = std::fs::read(path).unwrap();
            let what = mutate_bytes(&mut bytes, rng);
            std::fs::write(path, bytes).unwrap();
            format!("{name} {what}")
        }
    }
}

/// Where a stored zip holds `data.pkl`'s bytes (torch writes its pickle uncompressed). The
/// sizes are read from the central directory: torch's writer leaves them out of the local
/// headers.
pub(crate) fn pickle_range(zip: &[u8]) -> std::ops::Range<usize> {
    let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes(zip[i..i + 4].try_into().unwrap()) as usize;
    // The end-of-central-directory record is the last thing in the file (no comment).
    let eocd = (0..zip.len() - 21)
        .rev()
        .find(|&i| &zip[i..i + 4] == b"PK\x05\x06")
        .expect("an end-of-central-directory record");
    let mut at = u32_at(eocd + 16);
    while at + 46 <= zip.len() {
        if &zip[at..at + 4] == b"PK\x01\x02" {
            let (size, name_len) = (u32_at(at + 20), u16_at(at + 28));
            let (extra_len, comment_len) = (u16_at(at + 30), u16_at(at + 32));
            let local = u32_at(at + 42);
            if zip[at + 46..at + 46 + name_len].ends_with(b"data.pkl") {
                let start = local + 30 + u16_at(local + 26) + u16_at(local + 28);
                assert!(size > 1, "an empty pickle");
                return start..start + size;
            }
            at += 46 + name_len + extra_len + comment_len;
        } else {
            break;
        }
    }
    panic!("no data.pkl in the torch checkpoint");
}
