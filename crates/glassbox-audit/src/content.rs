//! What a file says or does, read from its text rather than its name.
//!
//! - [`code_role`]: whether source code trains a model (a training loop with an optimiser step
//!   or a backward pass, a trainer's `train()`, or a launcher of one), trains a tokenizer, or
//!   evaluates — so `train_tokenizer.py` is data processing and `train_eval.py` evaluation,
//!   whatever their names say.
//! - [`starts_from_release`]: whether training code starts from the released model itself (it
//!   loads the release's own weights: its repository id, its name, its folder) — then it
//!   fine-tunes this release, an example of use, and did not produce the released parameters.
//! - [`spdx_header`]: an `SPDX-License-Identifier:` line near the top of a file.
//! - [`license_named_in`]: the licence a sentence names ("released under the MIT License").
//! - [`data_statements`]: sentences of a card saying that part of the training data is
//!   proprietary, licensed, internal, undisclosed or unobtainable — evidence against complete
//!   data information — with the negations that say the opposite ("no proprietary data was
//!   used") told apart.

use serde::Serialize;

/// What a piece of code does, as far as its text shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRole {
    /// Runs a training loop (optimiser step, backward pass, a trainer's train()) or launches one.
    Training,
    /// Trains a tokenizer: data processing, not model training.
    TokenizerTraining,
    /// Computes metrics on a model without updating it.
    Evaluation,
    /// Trains, but starts from the released model itself ([`starts_from_release`]): it
    /// fine-tunes this release (a fine-tuning example), so it did not produce the released
    /// parameters and is not its training code. [`code_role`] never says so on its own: what
    /// the release is called is not in the code's text.
    FineTunesRelease,
}

/// Substrings that show a training loop or its launch (lower-cased text).
const TRAINING_SIGNS: &[&str] = &[
    "optimizer.step(",
    "optim.step(",
    "opt.step(",
    "loss.backward(",
    ".backward()",
    "accelerator.backward(",
    "backward_step(",
    "trainer.train(",
    ".fit(",
    "deepspeed.initialize(",
    "zero_grad(",
];
/// Launchers of a training script (shell scripts, configs): a launcher and a script to run.
const LAUNCHERS: &[&str] = &[
    "torchrun",
    "torch.distributed.run",
    "torch.distributed.launch",
    "deepspeed ",
    "accelerate launch",
    "srun python",
    "composer ",
];
const TOKENIZER_SIGNS: &[&str] = &[
    "bpetrainer",
    "wordpiecetrainer",
    "unigramtrainer",
    "sentencepiecetrainer.train",
    "train_new_from_iterator",
    "train_from_iterator",
    "tokenizer.train(",
];
const EVAL_SIGNS: &[&str] = &[
    "lm_eval",
    "evaluate(",
    "accuracy",
    "perplexity",
    "torch.no_grad",
    "model.eval()",
    "benchmark",
];

/// The role of code with this text, or None when it shows none of them.
pub fn code_role(text: &str) -> Option<CodeRole> {
    let lower = text.to_lowercase();
    let has = |signs: &[&str]| signs.iter().any(|s| lower.contains(s));
    let launches = LAUNCHERS.iter().any(|l| {
        lower.lines().any(|line| {
            let line = line.trim_start();
            !line.starts_with('#') && line.contains(l) && line.contains("train")
        })
    });
    if has(TOKENIZER_SIGNS) && !has(TRAINING_SIGNS) {
        return Some(CodeRole::TokenizerTraining);
    }
    if has(TRAINING_SIGNS) || launches {
        return Some(CodeRole::Training);
    }
    if has(EVAL_SIGNS) {
        return Some(CodeRole::Evaluation);
    }
    None
}

/// What a release is called, each with how it is known: Hub repository ids (`org/name`) and
/// bare names (its folder's, its card's), to recognise code that loads the release itself.
#[derive(Debug, Clone, Default)]
pub struct ReleaseNames {
    /// (`org/name`, how it is known), compared case-insensitively.
    pub repo_ids: Vec<(String, String)>,
    /// (name, how it is known), compared with the last part of a path or id.
    pub names: Vec<(String, String)>,
}

impl ReleaseNames {
    /// How `source` (what code loads a model from), for code at folder depth `depth` of the
    /// release, names the release itself; None when it names something else.
    fn names_release(&self, source: &str, depth: usize) -> Option<String> {
        let s = source.trim();
        if s == FILE_DIR {
            return (depth == 0).then(|| "the script's own folder, the release folder".into());
        }
        let t = s.trim_end_matches('/');
        if t == "." {
            return Some("the release folder (the current directory)".into());
        }
        let parts: Vec<&str> = t
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if parts.is_empty() {
            return None;
        }
        if parts.iter().all(|p| *p == "..") {
            return (parts.len() == depth)
                .then(|| "the release folder, relative to the script".into());
        }
        let lower = t.to_lowercase();
        for (id, how) in &self.repo_ids {
            let id = id.to_lowercase();
            if lower == id || lower.ends_with(&format!("/{id}")) {
                return Some(how.clone());
            }
        }
        let last = parts.last()?;
        self.names
            .iter()
            .find(|(n, _)| last.eq_ignore_ascii_case(n))
            .map(|(_, how)| how.clone())
    }
}

/// Stands for a folder computed from `__file__` (the script's own).
const FILE_DIR: &str = "<the script's folder>";

/// Keyword arguments that name the model `from_pretrained` loads.
const MODEL_KEYWORDS: &[&str] = &["pretrained_model_name_or_path", "model_id", "model_name"];
/// Command-line flags that name the model a launched script starts from (`-` read as `_`).
/// (`--model` and `--model_name` are left out: launchers also use them for the name of an
/// architecture preset a model is trained from scratch with, as `litgpt pretrain` does.)
const MODEL_FLAGS: &[&str] = &[
    "model_name_or_path",
    "pretrained_model_name_or_path",
    "model_id",
    "model_path",
    "base_model",
];
/// Receivers of `from_pretrained` that load something other than a model's weights.
const NOT_WEIGHTS: &[&str] = &["tokeniz", "processor", "config", "extractor"];

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The string literal `s` starts with (after spaces), and the rest after it; an f-string with a
/// placeholder is no single name.
fn literal(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    let (s, formatted) = match s.strip_prefix(['r', 'f', 'b']) {
        Some(rest) if rest.starts_with(['"', '\'']) => (rest, s.starts_with('f')),
        _ => (s, false),
    };
    let quote = s.chars().next().filter(|c| matches!(c, '"' | '\''))?;
    let body = &s[1..];
    let end = body.find(quote)?;
    let value = &body[..end];
    if formatted && value.contains('{') {
        return None;
    }
    Some((value.to_string(), &body[end + 1..]))
}

/// The top-level arguments of a call whose text (after its `(`) is `s`.
fn call_args(s: &str) -> Vec<&str> {
    let (mut depth, mut quote, mut start) = (0usize, None::<char>, 0usize);
    let mut out = Vec::new();
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') if depth > 0 => depth -= 1,
            (None, ')' | ']' | '}') => {
                out.push(&s[start..i]);
                return out;
            }
            (None, ',') if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

/// The text without whole-line comments (`#`, `//`): a commented-out checkpoint is not loaded.
fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with('#') && !t.starts_with("//")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The string values `name` is given in `text`: an assignment (`name = "…"`, `name: str =
/// "…"`, a keyword `name="…"`, a dataclass `field(default="…")`, a shell `NAME=…`), a dict
/// key (`"name": "…"`) or a command-line option's default (`"--name", default="…"`).
fn values_of(text: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if name.is_empty() {
        return out;
    }
    let dashed = name.replace('_', "-");
    for (at, _) in text.match_indices(name) {
        let before = text[..at].chars().next_back();
        let after_all = &text[at + name.len()..];
        if before.is_some_and(is_ident_char) || after_all.chars().next().is_some_and(is_ident_char)
        {
            continue;
        }
        let line_end = after_all.find('\n').unwrap_or(after_all.len());
        let line = &after_all[..line_end];
        // `"name": "…"` (a dict or JSON key)
        if matches!(before, Some('"' | '\'')) {
            if let Some(rest) = line.get(1..).map(str::trim_start) {
                if let Some(v) = rest.strip_prefix(':').and_then(|r| literal(r)) {
                    out.push(v.0);
                }
            }
            continue;
        }
        // `name = …` or `name: type = …` (not `==`)
        let rest = line.trim_start();
        let rest = match rest.strip_prefix(':') {
            Some(r) => r.find('=').map(|i| &r[i..]).unwrap_or(""),
            None => rest,
        };
        let Some(value) = rest.strip_prefix('=').filter(|r| !r.starts_with('=')) else {
            continue;
        };
        if let Some((v, _)) = literal(value) {
            out.push(v);
        } else if let Some(i) = value.find("default=") {
            out.extend(literal(&value[i + "default=".len()..]).map(|v| v.0));
        } else if before.is_none_or(|c| c == '\n') && !value.starts_with(' ') {
            // a shell assignment: NAME=value
            let v: String = value.chars().take_while(|c| !c.is_whitespace()).collect();
            if !v.is_empty() {
                out.push(v);
            }
        }
    }
    // `parser.add_argument("--name", …, default="…")`, over as many lines as the call takes
    for flag in [format!("--{name}"), format!("--{dashed}")] {
        for (at, _) in text.match_indices(&flag) {
            let after = &text[at + flag.len()..];
            if !after.starts_with(['"', '\'']) {
                continue;
            }
            // past the option name's closing quote
            for arg in call_args(&after[1..]) {
                if let Some((k, v)) = arg.split_once('=') {
                    if k.trim() == "default" {
                        out.extend(literal(v).map(|v| v.0));
                    }
                }
            }
        }
    }
    out
}

/// The values an expression (an argument of a call) stands for: a string literal, a name or
/// attribute (`checkpoint_path`, `args.model_name_or_path`, `cfg["model"]`) resolved in `text`.
fn resolve(text: &str, expr: &str) -> Vec<String> {
    let expr = expr.trim();
    if let Some((v, rest)) = literal(expr) {
        return if rest.trim().is_empty() {
            vec![v]
        } else {
            vec![]
        };
    }
    if expr.contains("__file__") && !expr.contains(['"', '\'']) {
        return vec![FILE_DIR.into()];
    }
    let expr = expr.trim_start_matches('$').trim_matches(['{', '}']);
    // `cfg["model"]` → `model`; `args.model_name_or_path` → `model_name_or_path`
    if let Some((_, key)) = expr.split_once('[') {
        return literal(key)
            .map(|(k, _)| values_of(text, &k))
            .unwrap_or_default();
    }
    let last = expr.rsplit('.').next().unwrap_or(expr);
    if last.is_empty() || !last.chars().all(is_ident_char) {
        return vec![];
    }
    values_of(text, last)
}

/// The models code starts from, as written: what it loads weights with `from_pretrained`
/// (tokenizers, processors and configs aside), a trainer's `model="…"`, or a launcher's
/// `--model_name_or_path` (and like flags) — each resolved through the variables, option
/// defaults and shell variables that set it. Whole-line comments are not read.
pub fn loaded_models(text: &str) -> Vec<String> {
    loads(&without_comments(text))
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

/// The name of the call whose arguments hold position `at` of `text` (`SFTTrainer` for
/// `SFTTrainer(model=…`), or "" at the top level.
fn enclosing_call(text: &str, at: usize) -> &str {
    let mut depth = 0usize;
    for (i, c) in text[..at].char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' if depth == 0 => {
                let before = &text[..i];
                let start = before
                    .char_indices()
                    .rev()
                    .find(|&(_, c)| !is_ident_char(c))
                    .map_or(0, |(j, c)| j + c.len_utf8());
                return &before[start..];
            }
            '(' => depth -= 1,
            _ => {}
        }
    }
    ""
}

/// [`loaded_models`] of comment-free `text`, each with where in it the load is.
fn loads(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    const CALL: &str = ".from_pretrained(";
    for (at, _) in text.match_indices(CALL) {
        let receiver = &text[..at];
        let start = receiver
            .char_indices()
            .rev()
            .find(|&(_, c)| !(is_ident_char(c) || c == '.'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let receiver = receiver[start..].to_lowercase();
        if NOT_WEIGHTS.iter().any(|w| receiver.contains(w)) {
            continue;
        }
        for arg in call_args(&text[at + CALL.len()..]) {
            let arg = arg.trim();
            let value = match arg.split_once('=') {
                Some((k, v)) if k.trim().chars().all(is_ident_char) && !v.starts_with('=') => {
                    if !MODEL_KEYWORDS.contains(&k.trim()) {
                        continue;
                    }
                    v
                }
                _ => arg,
            };
            if value.trim_start().starts_with('*') {
                continue;
            }
            out.extend(resolve(text, value).into_iter().map(|m| (at, m)));
        }
    }
    // A trainer given the model by name: `SFTTrainer(model="org/name", …)`.
    for (at, _) in text.match_indices("model=") {
        if text[..at].chars().next_back().is_some_and(is_ident_char)
            || !enclosing_call(text, at).to_lowercase().ends_with("trainer")
        {
            continue;
        }
        let value = &text[at + "model=".len()..];
        if value.starts_with('=') {
            continue;
        }
        if let Some((v, _)) = literal(value) {
            out.push((at, v));
        }
    }
    // A launcher's flags: `--model_name_or_path org/name`, `--model_name_or_path=$MODEL`.
    for (at, _) in text.match_indices("--") {
        let after = &text[at + 2..];
        let flag: String = after
            .chars()
            .take_while(|c| is_ident_char(*c) || *c == '-')
            .collect();
        if !MODEL_FLAGS.contains(&flag.replace('-', "_").as_str()) {
            continue;
        }
        let rest = &after[flag.len()..];
        let value = match rest.strip_prefix('=') {
            Some(v) => v,
            None if rest.starts_with([' ', '\t']) => rest.trim_start_matches([' ', '\t']),
            None => continue, // `"--model_name_or_path", default=…`: an option's definition
        };
        let token = match literal(value) {
            Some((v, _)) => v,
            None => value
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '\\')
                .collect(),
        };
        if token.starts_with('$') {
            out.extend(resolve(text, &token).into_iter().map(|m| (at, m)));
        } else if !token.is_empty() && !token.starts_with('-') {
            out.push((at, token));
        }
    }
    out
}

/// What training code (`text`, at folder depth `depth` in the release) loads that is the
/// release itself, and how that is known: a model it starts from ([`loaded_models`]) named by
/// the release's repository id, its name, or its folder (`./`, `..` back to the release's
/// top). Such code fine-tunes this release ([`CodeRole::FineTunesRelease`]); None when every
/// model it starts from is another (a base model) or none is named (it trains from scratch).
/// A load after the training loop's last step (a check of the trained result) is not what it
/// starts from.
pub fn starts_from_release(
    text: &str,
    depth: usize,
    release: &ReleaseNames,
) -> Option<(String, String)> {
    let text = without_comments(text);
    // ASCII lower case keeps the byte positions of the loads.
    let lower = text.to_ascii_lowercase();
    let last_step = TRAINING_SIGNS.iter().filter_map(|s| lower.rfind(s)).max();
    loads(&text)
        .into_iter()
        .filter(|(at, _)| last_step.is_none_or(|last| *at < last))
        .find_map(|(_, m)| release.names_release(&m, depth).map(|how| (m, how)))
}

/// The `SPDX-License-Identifier:` of a file, from its first 30 lines.
pub fn spdx_header(text: &str) -> Option<String> {
    text.lines().take(30).find_map(|line| {
        let (_, rest) = line.split_once("SPDX-License-Identifier:")?;
        let id = rest
            .trim()
            .trim_end_matches("*/")
            .trim_end_matches("-->")
            .trim();
        (!id.is_empty()).then(|| id.to_string())
    })
}

/// Licence names a sentence may use, with the id each stands for (lower-case match).
const NAMED_LICENSES: &[(&str, &str)] = &[
    ("apache license 2.0", "Apache-2.0"),
    ("apache 2.0", "Apache-2.0"),
    ("apache-2.0", "Apache-2.0"),
    ("mit license", "MIT"),
    ("the mit", "MIT"),
    ("bsd-3-clause", "BSD-3-Clause"),
    ("bsd 3-clause", "BSD-3-Clause"),
    ("gpl-3.0", "GPL-3.0-only"),
    ("gplv3", "GPL-3.0-only"),
    ("mpl-2.0", "MPL-2.0"),
    ("cc-by-4.0", "CC-BY-4.0"),
    ("cc by 4.0", "CC-BY-4.0"),
    ("cc-by-sa-4.0", "CC-BY-SA-4.0"),
    ("cc-by-nc-4.0", "CC-BY-NC-4.0"),
    ("odc-by", "ODC-By-1.0"),
    ("cdla-permissive-2.0", "CDLA-Permissive-2.0"),
];

/// The licence a sentence names, if it names exactly one it states something is under
/// ("under", "licensed", "licence"/"license" nearby).
pub fn license_named_in(sentence: &str) -> Option<&'static str> {
    let lower = sentence.to_lowercase();
    if !(lower.contains("under") || lower.contains("licen")) {
        return None;
    }
    let mut found: Vec<&'static str> = NAMED_LICENSES
        .iter()
        .filter(|(name, _)| lower.contains(name))
        .map(|&(_, id)| id)
        .collect();
    found.dedup();
    match found.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// A card's statement about the training data, quoted with where it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataStatement {
    /// `file:line`.
    pub source: String,
    pub quote: String,
    /// What it says is missing: proprietary, licensed, internal, undisclosed, unobtainable.
    pub kind: &'static str,
}

/// Phrases that say part of the data is out of reach (lower-case), and what they say.
const WITHHELD: &[(&str, &str)] = &[
    ("proprietary", "proprietary"),
    ("licensed data", "licensed"),
    ("licensed from", "licensed"),
    ("licensed content", "licensed"),
    ("licensed dataset", "licensed"),
    ("under license from", "licensed"),
    ("purchased", "licensed"),
    ("internal data", "internal"),
    ("internal dataset", "internal"),
    ("internal corpus", "internal"),
    ("internal sources", "internal"),
    ("in-house data", "internal"),
    ("in-house dataset", "internal"),
    ("confidential", "internal"),
    ("undisclosed", "undisclosed"),
    ("not disclosed", "undisclosed"),
    ("cannot disclose", "undisclosed"),
    ("do not disclose", "undisclosed"),
    ("not publicly available", "unobtainable"),
    ("not available to the public", "unobtainable"),
    ("cannot be released", "unobtainable"),
    ("cannot be shared", "unobtainable"),
    ("will not be released", "unobtainable"),
    ("not be made available", "unobtainable"),
    ("unable to release", "unobtainable"),
    ("unable to share", "unobtainable"),
    ("not able to release", "unobtainable"),
    ("not able to share", "unobtainable"),
    ("not obtainable", "unobtainable"),
    ("unobtainable", "unobtainable"),
    ("do not release", "unobtainable"),
    ("does not release", "unobtainable"),
    ("did not release", "unobtainable"),
    ("not be releasing", "unobtainable"),
    ("not released", "unobtainable"),
    ("not publicly released", "unobtainable"),
    ("not made public", "unobtainable"),
    ("not public", "unobtainable"),
    ("not made available", "unobtainable"),
    ("not make available", "unobtainable"),
    ("not open-source", "unobtainable"),
    ("not open source", "unobtainable"),
    ("kept private", "unobtainable"),
    ("keep private", "unobtainable"),
    ("remains private", "unobtainable"),
    ("remain private", "unobtainable"),
    ("is private", "unobtainable"),
    ("are private", "unobtainable"),
    ("cannot redistribute", "unobtainable"),
    ("can not redistribute", "unobtainable"),
    ("can't redistribute", "unobtainable"),
    ("cannot be redistributed", "unobtainable"),
    ("not redistribute", "unobtainable"),
    ("not be redistributed", "unobtainable"),
];

/// Words that, shortly before the phrase ([`NEGATION_WINDOW`] bytes) in the same sentence,
/// turn it into its opposite.
const NEGATIONS: &[&str] = &[
    "is not ",
    "are not ",
    "was not ",
    "were not ",
    "no ",
    "none of",
    "not use",
    "not contain",
    "not include",
    "never",
    "without",
    "free of",
    "does not rely",
    "do not rely",
    "neither",
    "nor ",
    "zero ",
];

const NEGATION_WINDOW: usize = 30;

/// Words that show a sentence is about the *training* data — its subject must be the data the
/// model was trained or tuned on, so "proprietary license terms" of the model, "internal
/// representations", or advice on what data to give the model are not read as data statements.
const DATA_WORDS: &[&str] = &[
    "training data",
    "train data",
    "training set",
    "training corpus",
    "training corpora",
    "training mix",
    "training dataset",
    "training examples",
    "training tokens",
    "training documents",
    "pre-training",
    "pretraining",
    "fine-tuning",
    "finetuning",
    "fine tuning",
    "conversations",
    "fine-tuning data",
    "finetuning data",
    "fine-tuning dataset",
    "tuning data",
    "sft data",
    "post-training",
    "instruction data",
    "preference data",
    "dataset",
    "corpus",
    "corpora",
    "data mixture",
    "mixture",
    "the data",
    "our data",
    "this data",
    "these data",
    "data sources",
    "data used",
];

/// Sentences that advise on using the model (what to give it, what it may produce): not about
/// its training data, whatever words they share.
const USAGE_ADVICE: &[&str] = &[
    "do not use the model",
    "don't use the model",
    "not use this model",
    "not use the model",
    "avoid using",
    "should not be used to",
    "must not be used to",
    "users should",
    "the model may",
    "the model can",
    "the model might",
    "model outputs",
    "may reproduce",
    "may generate",
    "can generate",
    "may output",
    "when prompted",
    "input data",
    "user data",
    "your data",
];

/// Sentences of `text` (a card, file `file`) saying part of the training data is withheld.
pub fn data_statements(file: &str, text: &str) -> Vec<DataStatement> {
    let mut out = Vec::new();
    let mut in_front_matter = text.starts_with("---");
    for (n, line) in text.lines().enumerate() {
        if n > 0 && in_front_matter {
            if line.trim_end() == "---" {
                in_front_matter = false;
            }
            continue;
        }
        if n == 0 && in_front_matter {
            continue;
        }
        for sentence in line.split_inclusive(['.', ';', '!', '?']) {
            let lower = sentence.to_lowercase().replace('\u{2019}', "'");
            let Some(&(phrase, kind)) = WITHHELD.iter().find(|(p, _)| lower.contains(p)) else {
                continue;
            };
            if !DATA_WORDS.iter().any(|w| lower.contains(w))
                || USAGE_ADVICE.iter().any(|w| lower.contains(w))
            {
                continue;
            }
            let at = lower.find(phrase).unwrap_or(0);
            let mut from = at.saturating_sub(NEGATION_WINDOW);
            while !lower.is_char_boundary(from) {
                from -= 1;
            }
            let before = &lower[from..at];
            if NEGATIONS.iter().any(|neg| before.contains(neg)) {
                continue;
            }
            out.push(DataStatement {
                source: format!("{file}:{}", n + 1),
                quote: sentence.trim().to_string(),
                kind,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_roles_come_from_the_text() {
        let loop_py = "for batch in loader:\n    loss = model(batch).loss\n    loss.backward()\n    optimizer.step()\n";
        assert_eq!(code_role(loop_py), Some(CodeRole::Training));
        let tok = "from tokenizers import trainers\ntrainer = trainers.BpeTrainer(vocab_size=32000)\ntok.train_from_iterator(texts, trainer)\n";
        assert_eq!(code_role(tok), Some(CodeRole::TokenizerTraining));
        let launcher = "#!/bin/bash\ntorchrun --nproc_per_node 8 pretrain.py --config c.yaml\n";
        assert_eq!(code_role(launcher), Some(CodeRole::Training));
        let commented = "# torchrun pretrain.py was used upstream\necho done\n";
        assert_eq!(code_role(commented), None);
        let eval = "model.eval()\nwith torch.no_grad():\n    acc = accuracy(model, data)\n";
        assert_eq!(code_role(eval), Some(CodeRole::Evaluation));
    }

    fn names(ids: &[&str], bare: &[&str]) -> ReleaseNames {
        ReleaseNames {
            repo_ids: ids.iter().map(|i| (i.to_string(), "id".into())).collect(),
            names: bare
                .iter()
                .map(|n| (n.to_string(), "name".into()))
                .collect(),
        }
    }

    /// What code starts from is read through the variables, option defaults and shell
    /// variables that name it; tokenizers, configs and commented-out lines are not models.
    #[test]
    fn models_code_starts_from_are_resolved() {
        let phi3 = "checkpoint_path = \"microsoft/Phi-3-mini-4k-instruct\"\n# checkpoint_path = \"microsoft/Phi-3-mini-128k-instruct\"\nmodel = AutoModelForCausalLM.from_pretrained(checkpoint_path, **model_kwargs)\ntokenizer = AutoTokenizer.from_pretrained(\"acme/tok\")\n";
        assert_eq!(loaded_models(phi3), ["microsoft/Phi-3-mini-4k-instruct"]);
        let argparse = "p.add_argument(\n    \"--model_name_or_path\",\n    type=str,\n    default=\"acme/tiny-base\",\n)\nargs = p.parse_args()\nmodel = AutoModelForCausalLM.from_pretrained(args.model_name_or_path)\n";
        assert_eq!(loaded_models(argparse), ["acme/tiny-base"]);
        let dataclass = "@dataclass\nclass Args:\n    model_id: str = field(default=\"acme/tiny-chat\")\nm = AutoModelForCausalLM.from_pretrained(pretrained_model_name_or_path=args.model_id)\n";
        assert_eq!(loaded_models(dataclass), ["acme/tiny-chat"]);
        let shell = "MODEL=acme/tiny-chat\naccelerate launch train_sft.py --model_name_or_path $MODEL --lr 1e-5\n";
        assert_eq!(loaded_models(shell), ["acme/tiny-chat"]);
        let trl =
            "trainer = SFTTrainer(model=\"acme/tiny-chat\", train_dataset=ds)\ntrainer.train()\n";
        assert_eq!(loaded_models(trl), ["acme/tiny-chat"]);
        let scratch = "config = AutoConfig.from_pretrained(\"acme/tiny-chat\")\nmodel = AutoModelForCausalLM.from_config(config)\n";
        assert!(loaded_models(scratch).is_empty());
    }

    #[test]
    fn training_code_that_loads_the_release_itself_fine_tunes_it() {
        let release = names(&["acme/tiny-chat"], &["tiny-chat-v1"]);
        let sft = |source: &str| {
            format!("model = AutoModelForCausalLM.from_pretrained({source})\ntrainer.train()\n")
        };
        for (source, depth) in [
            ("\"acme/tiny-chat\"", 0),
            ("\"ACME/Tiny-Chat\"", 0),
            ("\"./\"", 0),
            ("\".\"", 1),
            ("\"..\"", 1),
            ("\"/models/tiny-chat-v1\"", 0),
            ("os.path.dirname(os.path.abspath(__file__))", 0),
        ] {
            assert!(
                starts_from_release(&sft(source), depth, &release).is_some(),
                "{source} at depth {depth}"
            );
        }
        for (source, depth) in [
            ("\"acme/tiny-base\"", 0),
            ("\"acme/tiny-chat-v2\"", 0),
            ("\"../..\"", 1),
            ("os.path.dirname(__file__)", 1),
            ("\"./checkpoints/step1000\"", 0),
        ] {
            assert!(
                starts_from_release(&sft(source), depth, &release).is_none(),
                "{source} at depth {depth}"
            );
        }
        // a check of the trained result, a pipeline and a preset name are not where it starts
        let after = "model = TinyLM()\ntrainer.train()\ntrainer.push_to_hub(\"acme/tiny-chat\")\nmodel = AutoModelForCausalLM.from_pretrained(\"acme/tiny-chat\")\n";
        assert!(starts_from_release(after, 0, &release).is_none());
        let pipe = "loss.backward()\noptimizer.step()\ngen = pipeline(\"text-generation\", model=\"acme/tiny-chat\")\n";
        assert!(starts_from_release(pipe, 0, &release).is_none());
        let preset = "litgpt pretrain --model_name tiny-chat-v1 --train.max_tokens 1000000\n";
        assert!(starts_from_release(preset, 0, &release).is_none());
        // trained from scratch: nothing loaded, whatever the tokenizer
        let scratch = "tok = AutoTokenizer.from_pretrained(\"acme/tiny-chat\")\nmodel = TinyLM()\nloss.backward()\n";
        assert!(starts_from_release(scratch, 0, &release).is_none());
    }

    #[test]
    fn withheld_data_is_told_apart_from_its_negation() {
        let card = "---\nlicense: apache-2.0\n---\n# Data\nPart of the mixture is proprietary data licensed from publishers.\nNo proprietary data was used for the base corpus.\nThe tokenizer uses internal representations.\nThe corpus is not licensed from any third party.\nIt is not possible to share the data behind the chat set, which is proprietary.\n";
        let found = data_statements("README.md", card);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].source, "README.md:5");
        assert_eq!(found[0].kind, "proprietary");
        assert_eq!(found[1].source, "README.md:9");
    }

    /// A statement is about the training data being withheld: usage advice that mentions
    /// confidential data or proprietary code is not one, and "we do not release the SFT data",
    /// "is kept private", "we cannot redistribute it" are.
    #[test]
    fn withheld_training_data_needs_training_data_as_its_subject() {
        let card = "# Uses\nDo not use the model to process sensitive, personal or confidential data.\nThe model may reproduce snippets of proprietary code.\n# Training\nWe do not release the supervised fine-tuning data.\nThe preference dataset is kept private.\nPart of the pre-training corpus comes from licensed news archives, so we cannot redistribute it.\nThe training data is public.\n";
        let found = data_statements("README.md", card);
        let lines: Vec<&str> = found.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(
            lines,
            ["README.md:5", "README.md:6", "README.md:7"],
            "{found:?}"
        );
    }

    #[test]
    fn spdx_and_named_licences() {
        assert_eq!(
            spdx_header("# Copyright\n# SPDX-License-Identifier: MIT\nimport os\n").as_deref(),
            Some("MIT")
        );
        assert_eq!(
            license_named_in("The training code is released under the MIT License."),
            Some("MIT")
        );
        assert_eq!(license_named_in("See the MIT website."), None);
    }
}
