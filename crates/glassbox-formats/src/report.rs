//! The JSON document `glassbox inspect --json` prints, built here so that every front end
//! (the CLI, the web workbench, Python) reports a checkpoint with the same keys and numbers.
//! The keys are documented on the `inspect` command and in the README.

use serde_json::{json, Value};

use crate::stats::{Histogram, TensorStats};
use crate::summary::{component_of, ArchitectureSummary, ParameterSummary};
use crate::{Checkpoint, GgufArray, GgufValue, TensorInfo};

/// GGUF arrays longer than this are summarised (`{"array_of", "len", "head"}`).
pub const ARRAY_PREVIEW: usize = 16;

/// Statistics of a set of tensors and what computing them cost.
pub struct StatsRun<'a> {
    pub per_tensor: &'a [TensorStats],
    pub bytes: u64,
    pub seconds: f64,
}

impl StatsRun<'_> {
    pub fn gb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e9
        } else {
            0.0
        }
    }
}

/// The whole document: architecture, parameters by component and dtype, GGUF metadata, the
/// table of `tensors`, and where given their statistics and one tensor's histogram.
pub fn inspect_document(
    path: &str,
    ck: &Checkpoint,
    tensors: &[&TensorInfo],
    stats: Option<&StatsRun>,
    histogram: Option<(&str, &Histogram)>,
) -> Value {
    let params = ParameterSummary::of(ck.tensors());
    let mut out = json!({
        "path": path,
        "format": ck.kind,
        "architecture": architecture_of(ck),
        "parameters": params.parameters,
        "bytes": params.bytes,
        "parameters_by_component": params.by_component,
        "dtypes": params.by_dtype,
        "tensors": tensors.iter().map(|t| json!({
            "name": t.name,
            "shape": t.shape,
            "dtype": t.dtype.to_string(),
            "bytes": t.bytes,
            "component": component_of(&t.name).name(),
        })).collect::<Vec<_>>(),
    });
    if let Some(gguf) = ck.gguf() {
        let metadata: serde_json::Map<String, Value> = gguf
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), metadata_json(v, Some(ARRAY_PREVIEW))))
            .collect();
        out["metadata"] = Value::Object(metadata);
    }
    if let Some(s) = stats {
        out["stats"] = json!({
            "bytes": s.bytes,
            "seconds": s.seconds,
            "gb_per_s": s.gb_per_s(),
            "tensors": tensors.iter().zip(s.per_tensor)
                .map(|(t, st)| (t.name.clone(), serde_json::to_value(st).unwrap_or(Value::Null)))
                .collect::<serde_json::Map<_, _>>(),
        });
    }
    if let Some((name, h)) = histogram {
        out["histogram"] = json!({
            "tensor": name,
            "bins": h.counts.len(),
            "edges": h.edges,
            "counts": h.counts,
            "nan": h.nan,
            "inf": h.inf,
        });
    }
    out
}

/// The architecture from `config.json`, else GGUF metadata, completed from the tensors.
pub fn architecture_of(ck: &Checkpoint) -> ArchitectureSummary {
    let mut summary = if let Some(config) = &ck.config {
        ArchitectureSummary::from_config(config)
    } else if let Some(gguf) = ck.gguf() {
        ArchitectureSummary::from_gguf(&|key| gguf.get(key).map(|v| metadata_json(v, None)))
    } else {
        ArchitectureSummary::default()
    };
    summary.complete_from_tensors(ck.tensors());
    summary
}

/// A GGUF metadata value as JSON; arrays longer than `preview` summarised.
pub fn metadata_json(value: &GgufValue, preview: Option<usize>) -> Value {
    match value {
        GgufValue::U8(v) => json!(v),
        GgufValue::I8(v) => json!(v),
        GgufValue::U16(v) => json!(v),
        GgufValue::I16(v) => json!(v),
        GgufValue::U32(v) => json!(v),
        GgufValue::I32(v) => json!(v),
        GgufValue::U64(v) => json!(v),
        GgufValue::I64(v) => json!(v),
        GgufValue::F32(v) => json!(v),
        GgufValue::F64(v) => json!(v),
        GgufValue::Bool(v) => json!(v),
        GgufValue::String(v) => json!(v),
        GgufValue::Array(a) => array_json(a, preview),
    }
}

fn array_json(array: &GgufArray, preview: Option<usize>) -> Value {
    fn take<T: serde::Serialize>(items: &[T], n: usize) -> Value {
        json!(&items[..n.min(items.len())])
    }
    let n = preview.unwrap_or(usize::MAX);
    let head = match array {
        GgufArray::U8(v) => take(v, n),
        GgufArray::I8(v) => take(v, n),
        GgufArray::U16(v) => take(v, n),
        GgufArray::I16(v) => take(v, n),
        GgufArray::U32(v) => take(v, n),
        GgufArray::I32(v) => take(v, n),
        GgufArray::U64(v) => take(v, n),
        GgufArray::I64(v) => take(v, n),
        GgufArray::F32(v) => take(v, n),
        GgufArray::F64(v) => take(v, n),
        GgufArray::Bool(v) => take(v, n),
        GgufArray::String(v) => take(v, n),
        GgufArray::Array(v) => {
            Value::Array(v.iter().take(n).map(|a| array_json(a, preview)).collect())
        }
    };
    if array.len() <= n {
        return head;
    }
    let head = match head {
        Value::Array(items) => Value::Array(items.into_iter().take(3).collect()),
        other => other,
    };
    json!({
        "array_of": type_word(array),
        "len": array.len(),
        "head": head,
    })
}

fn type_word(array: &GgufArray) -> &'static str {
    match array {
        GgufArray::String(_) => "string",
        GgufArray::F32(_) | GgufArray::F64(_) => "float",
        GgufArray::Bool(_) => "bool",
        GgufArray::Array(_) => "array",
        _ => "integer",
    }
}
