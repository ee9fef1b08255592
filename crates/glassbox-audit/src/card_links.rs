//! What the links in a model card declare: a paper, a technical report, a data card, code
//! (training code when the words before a repository link introduce it so), and Hub links to a
//! repository's files.

/// The link starting at the front of `text`: up to white space or what closes it in Markdown
/// or HTML.
pub(crate) fn link_at(text: &str) -> String {
    text.chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, ')' | '>' | ']' | '"' | '\''))
        .collect()
}

/// Where the words introducing a link are read as "training code": a code repository's host.
const CODE_HOSTS: &[&str] = &[
    "github.com/",
    "gitlab.com/",
    "bitbucket.org/",
    "codeberg.org/",
    "git.sr.ht/",
];

/// Words that, after "training", say the link is code for it ("training code", "pre-training
/// scripts", "Core repo (training, inference…)", "Training: "); "training data", "training
/// details" and the like name something else.
const TRAINING_CODE_WORDS: &[&str] = &[
    "code",
    "codebase",
    "script",
    "recipe",
    "repo",
    "framework",
    "library",
    "pipeline",
];

/// True when `introduced` (the lower-cased words before a link) introduces the link as
/// training code: the word "training" (also "pre-training", "pretraining", "post-training"),
/// followed by nothing, punctuation or a word for code.
fn introduced_as_training(introduced: &str) -> bool {
    introduced.match_indices("training").any(|(at, w)| {
        let before = &introduced[..at];
        let word_start = before
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric())
            || ["pre", "post"].iter().any(|p| {
                before.ends_with(p)
                    && before[..before.len() - p.len()]
                        .chars()
                        .next_back()
                        .is_none_or(|c| !c.is_alphanumeric())
            });
        let after = introduced[at + w.len()..].trim_start();
        let next: String = after.chars().take_while(|c| c.is_alphanumeric()).collect();
        word_start
            && (after.is_empty()
                || after.starts_with([',', ')', ':', '/', '&', ']', '*', '(', ';'])
                || TRAINING_CODE_WORDS
                    .iter()
                    .any(|code| next == *code || next == format!("{code}s")))
    })
}

/// Card body links that declare a component: a paper host, a code repository introduced as
/// training code ([`introduced_as_training`]), or a link on a line that names the component
/// outright (a loose word like "train" is not enough).
pub(crate) fn declared_links(body: &str, first_line: usize) -> Vec<(u32, String, String)> {
    const PAPER_HOSTS: &[&str] = &[
        "arxiv.org/",
        "doi.org/",
        "aclanthology.org/",
        "openreview.net/",
    ];
    const NAMED: &[(&str, u32)] = &[
        ("technical report", 11),
        ("training code", 7),
        ("training script", 7),
        ("training recipe", 7),
        ("preprocessing code", 16),
        ("data processing code", 16),
        ("data card", 14),
        ("datasheet", 14),
        ("evaluation code", 18),
    ];
    let mut out = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let lower = line.to_lowercase();
        let mut rest = lower.as_str();
        let mut offset = 0;
        while let Some(start) = rest.find("https://").or_else(|| rest.find("http://")) {
            let link = link_at(&line[offset + start..]);
            // The words introducing the link ("the datasheet](", "technical report: ") say
            // what it is before its host does: an arXiv link can be a datasheet.
            let introduced = &lower[offset..offset + start];
            let named_in = |text: &str| {
                NAMED
                    .iter()
                    .find(|(phrase, _)| text.contains(phrase))
                    .map(|&(_, id)| id)
            };
            let link_lower = link.to_lowercase();
            let training_repo = || {
                (CODE_HOSTS.iter().any(|h| link_lower.contains(h))
                    && introduced_as_training(introduced))
                .then_some(7)
            };
            let id = named_in(introduced).or_else(training_repo).or_else(|| {
                if PAPER_HOSTS.iter().any(|h| link_lower.contains(h)) {
                    Some(21)
                } else {
                    named_in(&lower)
                }
            });
            if let Some(id) = id {
                out.push((
                    id,
                    format!("README.md line {}: {}", first_line + n, link),
                    line.to_string(),
                ));
            }
            let advance = start + link.len().max(1);
            offset += advance;
            rest = &lower[offset.min(lower.len())..];
        }
    }
    out
}

/// A Hub link to a file of a repository: `huggingface.co/ORG/NAME/(resolve|blob|raw)/REV/PATH`
/// → (`ORG/NAME`, `PATH`).
pub(crate) fn hub_file_link(link: &str) -> Option<(String, String)> {
    let rest = link.split_once("huggingface.co/")?.1;
    let mut parts = rest.splitn(5, '/');
    let (org, repo, kind, _rev, path) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if matches!(org, "datasets" | "spaces") || !matches!(kind, "resolve" | "blob" | "raw") {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or(path);
    Some((format!("{org}/{repo}"), path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A code repository introduced as training code declares it ("Core repo (training, …)",
    /// "Pre-training code", "Training:"); training *data*, a paper or fine-tuning code does not.
    #[test]
    fn code_repositories_introduced_as_training_code_declare_it() {
        let body = "- Core repo (training, inference, fine-tuning etc.): https://github.com/allenai/OLMo\n- Evaluation code: https://github.com/allenai/OLMo-Eval\n- Further fine-tuning code: https://github.com/allenai/open-instruct\n- Training data: [OLMo-Mix-1124](https://huggingface.co/datasets/allenai/olmo-mix-1124)\n- Training data: https://github.com/acme/corpus\n- Pretraining: https://gitlab.com/acme/trainer\n- Our retraining notes: https://github.com/acme/notes\n- Training details are in the paper https://arxiv.org/abs/2501.00656\n";
        let found: Vec<(u32, String)> = declared_links(body, 10)
            .into_iter()
            .map(|(id, detail, _)| (id, detail))
            .collect();
        assert_eq!(
            found,
            [
                (
                    7,
                    "README.md line 10: https://github.com/allenai/OLMo".to_string()
                ),
                (
                    18,
                    "README.md line 11: https://github.com/allenai/OLMo-Eval".into()
                ),
                (
                    7,
                    "README.md line 15: https://gitlab.com/acme/trainer".into()
                ),
                (
                    21,
                    "README.md line 17: https://arxiv.org/abs/2501.00656".into()
                ),
            ]
        );
    }
}
