//! The model card (`README.md`): its YAML front matter, and the examples it offers.

use std::path::Path;

use serde_yaml::Value;

use crate::AuditError;

/// A prompt a model card offers (a Hub `widget` entry): its text and, where the card gives
/// one, the output it shows for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub text: String,
    pub output: Option<String>,
}

/// The text prompts of the card in `dir` (its front matter's `widget` list, as the Hub reads
/// it: `- text: …` with an optional `output: {text: …}`), in order. None for a folder without
/// a card, a card without them, or one whose front matter does not parse (the audit reports
/// that); entries of other kinds (images, chat messages) are skipped.
pub fn examples(dir: &Path) -> Vec<Example> {
    let Some(card) = card_in(dir) else {
        return Vec::new();
    };
    let Ok(text) = crate::snapshot::read_text(&card) else {
        return Vec::new();
    };
    let Ok((Some(front), _)) = front_matter(&text, &card) else {
        return Vec::new();
    };
    let Some(Value::Sequence(entries)) = front.get("widget") else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let text = entry.get("text")?.as_str()?.to_string();
            let output = entry
                .get("output")
                .and_then(|o| o.get("text"))
                .and_then(Value::as_str)
                .map(String::from);
            Some(Example { text, output })
        })
        .collect()
}

/// `README.md` in `dir`, in any case, as the audit finds it.
fn card_in(dir: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case("README.md"))
        })
}

/// Nesting deeper than any card needs, found before the YAML parser sees it: the parser
/// tokenises the whole input before its own recursion limit applies, in time that grows with
/// the square of the depth (100,000 `[` took 42 s).
const MAX_DEPTH: usize = 64;

/// Why `yaml` nests too deep to parse, if it does: flow collections (`[`, `{`) opened inside
/// one another (quoted text aside), or block nesting (indentation, `- ` items on one line).
fn too_deep(yaml: &str) -> Option<String> {
    let mut depth = 0usize;
    for line in yaml.lines() {
        // quotes are taken line by line: an apostrophe in plain text must not hide the rest
        let mut quote = None::<char>;
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        if indent > 4 * MAX_DEPTH {
            return Some(format!(
                "the front matter nests deeper than {MAX_DEPTH} levels (a line indented {indent} columns)"
            ));
        }
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(format!(
                            "the front matter nests deeper than {MAX_DEPTH} levels of `[` / `{{`"
                        ));
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    None
}

/// Splits a model card into its YAML front matter (if any) and body.
pub(crate) fn front_matter(card: &str, path: &Path) -> Result<(Option<Value>, String), AuditError> {
    let text = card.strip_prefix('\u{feff}').unwrap_or(card);
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Ok((None, text.to_string()));
    }
    let mut yaml = String::new();
    let mut body = String::new();
    let mut closed = false;
    for line in lines.by_ref() {
        if line.trim_end() == "---" {
            closed = true;
            break;
        }
        yaml.push_str(line);
        yaml.push('\n');
    }
    if !closed {
        return Err(AuditError::FrontMatter {
            path: path.to_path_buf(),
            message: "no closing `---` line".into(),
        });
    }
    for line in lines {
        body.push_str(line);
        body.push('\n');
    }
    if let Some(why) = too_deep(&yaml) {
        return Err(AuditError::FrontMatter {
            path: path.to_path_buf(),
            message: why,
        });
    }
    let value: Value = serde_yaml::from_str(&yaml).map_err(|e| AuditError::FrontMatter {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    match value {
        Value::Null => Ok((None, body)),
        Value::Mapping(_) => Ok((Some(value), body)),
        _ => Err(AuditError::FrontMatter {
            path: path.to_path_buf(),
            message: "must be a YAML mapping".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with_card(name: &str, card: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("glassbox-card-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("readme.MD"), card).unwrap();
        dir
    }

    #[test]
    fn front_matter_nested_past_any_card_is_refused_before_parsing() {
        let path = Path::new("README.md");
        let start = std::time::Instant::now();
        for yaml in [
            format!("license: {}{}", "[".repeat(100_000), "]".repeat(100_000)),
            format!("a: {}", "{".repeat(65)),
            format!("{}x: 1", "- ".repeat(300)),
        ] {
            let card = format!("---\n{yaml}\n---\nbody\n");
            let err = front_matter(&card, path).unwrap_err();
            assert!(err.to_string().contains("nests deeper than 64"), "{err}");
        }
        // (the parser alone took 42 s on the first)
        assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
        // real nesting, brackets in quotes and comments, and apostrophes pass
        let fine = format!(
            "---\nlicense: mit\ntags: [a, [b, {{c: d}}]]\nname: \"{}\"\n# {}\ndescription: it's [a model\nmodel-index:\n  - name: x\n    results:\n      - task: {{type: t}}\n---\n",
            "[".repeat(100),
            "{".repeat(100)
        );
        let (value, _) = front_matter(&fine, path).unwrap();
        assert_eq!(value.unwrap()["license"].as_str(), Some("mit"));
    }

    #[test]
    fn examples_are_the_cards_text_widgets_in_order() {
        let dir = folder_with_card(
            "widgets",
            "---\nlicense: mit\nwidget:\n- text: \"a = 1 . a =\"\n  example_title: recall\n  output:\n    text: \" 1\"\n\
             - src: https://example.com/cat.png\n- text: the old\n---\n# Card\n",
        );
        assert_eq!(
            examples(&dir),
            vec![
                Example {
                    text: "a = 1 . a =".into(),
                    output: Some(" 1".into())
                },
                Example {
                    text: "the old".into(),
                    output: None
                },
            ]
        );
    }

    #[test]
    fn no_card_no_widgets_or_a_broken_card_offer_none() {
        let none = std::env::temp_dir().join(format!("glassbox-card-{}-none", std::process::id()));
        std::fs::create_dir_all(&none).unwrap();
        assert!(examples(&none).is_empty());
        assert!(examples(&folder_with_card("plain", "---\nlicense: mit\n---\n")).is_empty());
        assert!(examples(&folder_with_card("open", "---\nwidget:\n- text: x\n")).is_empty());
        assert!(examples(&folder_with_card("scalar", "---\nwidget: hello\n---\n")).is_empty());
    }
}
