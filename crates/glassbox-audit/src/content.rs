//! What a file says or does, read from its text rather than its name.
//!
//! - [`code_role`]: whether source code trains a model (a training loop with an optimiser step
//!   or a backward pass, a trainer's `train()`, or a launcher of one), trains a tokenizer, or
//!   evaluates — so `train_tokenizer.py` is data processing and `train_eval.py` evaluation,
//!   whatever their names say.
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
