//! Reading Model Openness Tool model files (`*.yml`, MOT's `mof_schema.json`).
//!
//! Only what the audit needs is read: the release's identity, its release-level licences
//! (`release.license.{distribution,code,data,document}.name`) and each component's name,
//! `license`, `license_path` and `component_path`. The reader is lenient where MOT is
//! (missing optional fields, `license: {}` or empty) and strict where a guess would be
//! wrong: an unknown component name or a field of the wrong type is an error that names
//! the field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_yaml::Value;

use crate::mof::{self, ComponentLicense, MofModel};
use crate::AuditError;

/// One component entry of a MOT file.
#[derive(Debug, Clone, Serialize)]
pub struct MotComponent {
    pub id: u32,
    pub name: String,
    pub license: ComponentLicense,
    pub license_path: Option<String>,
    pub component_path: Option<String>,
}

/// A MOT model file.
#[derive(Debug, Clone, Serialize)]
pub struct MotRelease {
    pub name: String,
    pub version: Option<String>,
    pub date: Option<String>,
    pub producer: Option<String>,
    pub repository: Option<String>,
    pub huggingface: Option<String>,
    /// Release-level licences: key → (name, path).
    pub global: BTreeMap<String, (String, Option<String>)>,
    pub components: Vec<MotComponent>,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl MotRelease {
    /// Parses a MOT file; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, AuditError> {
        let field_err = |field: &str, problem: &str| AuditError::Field {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem: problem.to_string(),
        };
        let doc: Value = serde_yaml::from_str(text).map_err(|e| AuditError::Yaml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let release = doc
            .get("release")
            .ok_or_else(|| field_err("release", "missing"))?;
        if !release.is_mapping() {
            return Err(field_err("release", "must be a mapping"));
        }
        let opt_string = |key: &str| -> Result<Option<String>, AuditError> {
            match release.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => scalar(v)
                    .map(Some)
                    .ok_or_else(|| field_err(&format!("release.{key}"), "must be a string")),
            }
        };
        let name = opt_string("name")?
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| field_err("release.name", "missing or empty"))?;
        let mut global = BTreeMap::new();
        match release.get("license") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let key = scalar(k).unwrap_or_default();
                    let field = format!("release.license.{key}");
                    let entry = match v {
                        Value::Null => continue,
                        Value::Mapping(_) => v,
                        _ => {
                            return Err(field_err(
                                &field,
                                "must be a mapping with `name` and `path`",
                            ))
                        }
                    };
                    let lic_name = match entry.get("name") {
                        None | Some(Value::Null) => continue,
                        Some(n) => scalar(n).ok_or_else(|| {
                            field_err(&format!("{field}.name"), "must be a string")
                        })?,
                    };
                    let lic_path = entry.get("path").and_then(scalar).filter(|p| !p.is_empty());
                    global.insert(key, (lic_name, lic_path));
                }
            }
            Some(_) => return Err(field_err("release.license", "must be a mapping")),
        }
        let mut components = Vec::new();
        match release.get("components") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let field = format!("release.components[{i}]");
                    if !item.is_mapping() {
                        return Err(field_err(&field, "must be a mapping"));
                    }
                    let cname = item
                        .get("name")
                        .and_then(scalar)
                        .ok_or_else(|| field_err(&format!("{field}.name"), "missing"))?;
                    let def = mof::component_by_name(cname.trim()).ok_or_else(|| {
                        field_err(
                            &format!("{field}.name"),
                            &format!("unknown MOF component {cname:?}"),
                        )
                    })?;
                    let license = match item.get("license") {
                        None | Some(Value::Null) => ComponentLicense::Inherit,
                        Some(v) => match scalar(v) {
                            Some(s) if s.is_empty() || s == "unlicensed" => {
                                ComponentLicense::Unlicensed
                            }
                            Some(s) => ComponentLicense::Id(s),
                            None => {
                                return Err(field_err(
                                    &format!("{field}.license"),
                                    "must be a string",
                                ))
                            }
                        },
                    };
                    let text = |k: &str| {
                        item.get(k)
                            .and_then(scalar)
                            .filter(|s| !s.trim().is_empty())
                    };
                    components.push(MotComponent {
                        id: def.id,
                        name: def.name.to_string(),
                        license,
                        license_path: text("license_path"),
                        component_path: text("component_path"),
                    });
                }
            }
            Some(_) => return Err(field_err("release.components", "must be a list")),
        }
        Ok(MotRelease {
            name,
            version: opt_string("version")?,
            date: opt_string("date")?,
            producer: opt_string("producer")?,
            repository: opt_string("repository")?,
            huggingface: opt_string("huggingface")?,
            global,
            components,
        })
    }

    /// Reads and parses a MOT file.
    pub fn read(path: &Path) -> Result<Self, AuditError> {
        use glassbox_formats::input;
        let text = input::read_text(path, "MOT model", input::limit::DOCUMENT)?;
        Self::parse(&text, path)
    }

    /// The MOF view of this file, for scoring exactly as MOT does (ids as written).
    pub fn mof_model(&self) -> MofModel {
        let mut model = MofModel::default();
        for (k, (name, _)) in &self.global {
            model.global.insert(k.clone(), name.clone());
        }
        for c in &self.components {
            // A later entry for the same component replaces an earlier one, as in MOT.
            model.components.insert(c.id, c.license.clone());
        }
        model
    }
}
