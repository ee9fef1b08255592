//! Reading Hugging Face `config.json` files: the one config reader of every crate.
//!
//! [`HfConfig`] is a thin typed view over the JSON value with error messages that name the
//! missing or malformed key. Configs come in several generations:
//!
//! - `null` often means "absent" (`head_dim: null`), and is read as absent;
//! - a field may be stored under another name: transformers gives each model type an
//!   `attribute_map` (alias → the name it stores), and which of the two a saved file holds
//!   changed between versions — transformers 5 writes Qwen3-MoE's `num_local_experts` where
//!   the Hub's files say `num_experts`. [`HfConfig::get`] follows the model type's map in both
//!   directions ([`ATTRIBUTE_MAPS`], transformers 5.25's maps for the model types read here);
//! - rotary settings live in `rope_theta` + `rope_scaling` (transformers ≤ 4) or in
//!   `rope_parameters` (transformers 5); the models' `RopeConfig` reads both.

use serde_json::Value;

/// The largest count a config may give (2²⁸: past the longest published context, 10M
/// positions, and any vocabulary, width or expert count by far). Sizes are multiplied
/// together, so an unbounded one would overflow the arithmetic before any allocation could
/// be checked.
pub const MAX_COUNT: usize = 1 << 28;

/// A config field that is missing, of the wrong type or out of range; the message names it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub type Result<T> = std::result::Result<T, ConfigError>;

/// transformers' `attribute_map` per `model_type`: (alias, stored name). Read from
/// transformers 5.25 (`<Config>.attribute_map`); model types not listed have none.
pub const ATTRIBUTE_MAPS: &[(&str, &[(&str, &str)])] = &[
    (
        "gpt2",
        &[
            ("hidden_size", "n_embd"),
            ("max_position_embeddings", "n_positions"),
            ("num_attention_heads", "n_head"),
            ("num_hidden_layers", "n_layer"),
        ],
    ),
    ("deepseek_v2", &[("num_experts", "n_routed_experts")]),
    (
        "deepseek_v3",
        &[
            ("num_local_experts", "n_routed_experts"),
            ("num_mtp_layers", "num_nextn_predict_layers"),
        ],
    ),
    ("mixtral", &[("num_experts", "num_local_experts")]),
    ("qwen3_moe", &[("num_experts", "num_local_experts")]),
];

/// A typed view over a `config.json` value.
#[derive(Clone, Copy)]
pub struct HfConfig<'a>(pub &'a Value);

impl<'a> HfConfig<'a> {
    /// The model type's attribute map (empty when it has none).
    fn attribute_map(&self) -> &'static [(&'static str, &'static str)] {
        let Some(model_type) = self.0.get("model_type").and_then(Value::as_str) else {
            return &[];
        };
        ATTRIBUTE_MAPS
            .iter()
            .find(|(t, _)| *t == model_type)
            .map_or(&[], |(_, map)| *map)
    }

    /// The value stored under exactly `key`, treating JSON `null` as absent.
    fn raw(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// The value of field `key`, under its own name or under the other name transformers'
    /// attribute map gives it for this model type; JSON `null` is absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.raw(key).or_else(|| {
            self.attribute_map().iter().find_map(|&(alias, stored)| {
                if alias == key {
                    self.raw(stored)
                } else if stored == key {
                    self.raw(alias)
                } else {
                    None
                }
            })
        })
    }

    /// The first of `keys` that is present (configs rename fields across families).
    pub fn first<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, &'a Value)> {
        keys.iter().find_map(|k| self.get(k).map(|v| (*k, v)))
    }

    pub fn usize_opt(&self, keys: &[&str]) -> Result<Option<usize>> {
        match self.first(keys) {
            None => Ok(None),
            Some((k, v)) => {
                let n = v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        ConfigError(format!("`{k}` is not a non-negative integer: {v}"))
                    })?;
                if n > MAX_COUNT {
                    return Err(ConfigError(format!(
                        "`{k}` is {n}, larger than any size or count a model has (at most {MAX_COUNT})"
                    )));
                }
                Ok(Some(n))
            }
        }
    }

    /// A required count, under any of `keys`.
    pub fn usize(&self, keys: &[&str]) -> Result<usize> {
        self.usize_opt(keys)?
            .ok_or_else(|| ConfigError(format!("missing `{}`", keys.join("` or `"))))
    }

    /// A number under any of `keys`. A norm's epsilon (a key naming `eps`) must not be
    /// negative: no published config has one, and it made every output NaN.
    pub fn f64_opt(&self, keys: &[&str]) -> Result<Option<f64>> {
        match self.first(keys) {
            None => Ok(None),
            Some((k, v)) => {
                let x = v
                    .as_f64()
                    .ok_or_else(|| ConfigError(format!("`{k}` is not a number: {v}")))?;
                if k.contains("eps") && x < 0.0 {
                    return Err(ConfigError(format!(
                        "`{k}` is {x}: a norm's epsilon is at least 0"
                    )));
                }
                Ok(Some(x))
            }
        }
    }

    pub fn f64_or(&self, keys: &[&str], default: f64) -> Result<f64> {
        Ok(self.f64_opt(keys)?.unwrap_or(default))
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| ConfigError(format!("`{key}` is not a boolean: {v}"))),
        }
    }

    /// A string under `key`; a value of another kind (an activation given as `5`) is an
    /// error, not taken as absent (which chose the default silently).
    pub fn str_opt(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(ConfigError(format!("`{key}` is not a string: {v}"))),
        }
    }

    /// The architecture name: `architectures[0]`, else `model_type`.
    pub fn architecture(&self) -> Result<String> {
        if let Some(a) = self
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
        {
            return Ok(a.to_string());
        }
        self.str_opt("model_type")?
            .map(str::to_string)
            .ok_or_else(|| ConfigError("neither `architectures` nor `model_type` is set".into()))
    }

    /// Token ids listed under `key` (a number or a list of numbers), e.g. `eos_token_id`.
    pub fn token_ids(&self, key: &str) -> Vec<u32> {
        let id = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        match self.get(key) {
            Some(v @ Value::Number(_)) => id(v).into_iter().collect(),
            Some(Value::Array(a)) => a.iter().filter_map(id).collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aliases_follow_the_model_types_attribute_map_both_ways() {
        // transformers 5 writes the stored name, older files the alias, and vice versa.
        let new = json!({"model_type": "qwen3_moe", "num_local_experts": 8});
        let old = json!({"model_type": "qwen3_moe", "num_experts": 8});
        for c in [&new, &old] {
            let c = HfConfig(c);
            assert_eq!(c.usize(&["num_experts"]).unwrap(), 8);
            assert_eq!(c.usize(&["num_local_experts"]).unwrap(), 8);
        }
        let gpt2 = json!({"model_type": "gpt2", "n_embd": 768});
        assert_eq!(HfConfig(&gpt2).usize(&["hidden_size"]).unwrap(), 768);
        // No map, no alias: a dense model's `num_experts` is not invented.
        let llama = json!({"model_type": "llama", "num_local_experts": 8});
        assert_eq!(HfConfig(&llama).usize_opt(&["num_experts"]).unwrap(), None);
    }

    #[test]
    fn null_is_absent_and_errors_name_the_key() {
        let c = json!({"model_type": "llama", "head_dim": null, "num_hidden_layers": "two"});
        let c = HfConfig(&c);
        assert_eq!(c.usize_opt(&["head_dim"]).unwrap(), None);
        let e = c.usize(&["num_hidden_layers"]).unwrap_err();
        assert!(e.0.contains("num_hidden_layers"), "{e}");
        assert!(c
            .usize(&["hidden_size"])
            .unwrap_err()
            .0
            .contains("hidden_size"));
    }
}
