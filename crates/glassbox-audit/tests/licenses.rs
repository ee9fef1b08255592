//! Licence ids, expressions and texts.

mod common;

use glassbox_audit::licenses::{classify, identify_text, RestrictionKind};

/// (as written, canonical id, OSI-approved, open data)
fn check(written: &str, id: Option<&str>, osi: Option<bool>, open_data: bool) {
    let info = classify(written);
    assert_eq!(info.id.as_deref(), id, "{written}: id");
    assert_eq!(info.osi_approved, osi, "{written}: osi");
    assert_eq!(info.open_data, open_data, "{written}: open data");
}

#[test]
fn ids_and_expressions() {
    check("apache-2.0", Some("Apache-2.0"), Some(true), false);
    check("MIT", Some("MIT"), Some(true), false);
    check(
        "mit OR apache-2.0",
        Some("MIT OR Apache-2.0"),
        Some(true),
        false,
    );
    check(
        "MIT AND CC-BY-NC-4.0",
        Some("MIT AND CC-BY-NC-4.0"),
        Some(false),
        false,
    );
    check("cc-by-4.0", Some("CC-BY-4.0"), Some(false), true);
    check("odc-by", Some("ODC-By-1.0"), Some(false), true);
    check(
        "llama3.1",
        Some("LicenseRef-Llama-3.1-Community-License"),
        Some(false),
        false,
    );
    check(
        "Llama 3.1 Community License Agreement",
        Some("LicenseRef-Llama-3.1-Community-License"),
        Some(false),
        false,
    );
    check(
        "gemma",
        Some("LicenseRef-Gemma-Terms-of-Use"),
        Some(false),
        false,
    );
    // The 2023 Tongyi Qianwen licence is its own entry, apart from the 2024 Qwen licence.
    check(
        "tongyi-qianwen",
        Some("LicenseRef-Tongyi-Qianwen-License"),
        Some(false),
        false,
    );
    check("qwen", Some("LicenseRef-Qwen-License"), Some(false), false);
    check("openrail", Some("LicenseRef-OpenRAIL"), Some(false), false);
    // Unknowns stay unknown: never a guess.
    check("other", Some("LicenseRef-other"), None, false);
    check("unknown", Some("LicenseRef-unknown"), None, false);
    check("frobnicate-1.0", None, None, false);
    check("Apache 2.0 with extra terms", None, None, false);
    check("", None, None, false);
}

#[test]
fn known_restrictions_come_with_the_id() {
    let llama = classify("llama3.1");
    for kind in [
        RestrictionKind::UserThreshold,
        RestrictionKind::AcceptableUse,
        RestrictionKind::Naming,
        RestrictionKind::OutputUse,
        RestrictionKind::LitigationTermination,
    ] {
        assert!(llama.restrictions.contains(&kind), "{kind:?}");
    }
    assert_eq!(
        classify("cc-by-nc-sa-4.0").restrictions,
        vec![RestrictionKind::NonCommercial]
    );
    assert!(classify("apache-2.0").restrictions.is_empty());
}

#[test]
fn texts_are_identified_despite_whitespace_and_copyright_lines() {
    let full = common::apache_license();
    let a = identify_text(&full);
    assert_eq!(a.id.as_deref(), Some("Apache-2.0"));
    // Re-wrapping, odd whitespace and a different copyright holder give the same fingerprint.
    let rewrapped = full
        .replace("\n      ", " ")
        .replace(". ", ".   ")
        .replace("Example Authors", "Someone Else");
    let b = identify_text(&rewrapped);
    assert_eq!(b.id.as_deref(), Some("Apache-2.0"));
    assert_eq!(b.fingerprint, a.fingerprint);
    assert_eq!(
        identify_text(common::LLAMA31_EXCERPT).id.as_deref(),
        Some("LicenseRef-Llama-3.1-Community-License")
    );
    assert_eq!(identify_text("All rights reserved. Do not copy.").id, None);
    // An excerpt is not the licence: it has the phrases but lacks most of the terms.
    let excerpt = identify_text(common::APACHE_EXCERPT);
    assert_eq!(excerpt.id, None);
    assert_eq!(excerpt.variant_of.as_deref(), Some("Apache-2.0"));
    assert!(excerpt.missing_words > 100, "{}", excerpt.missing_words);
    let mit = "MIT License\n\nCopyright (c) 2024 X\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\nof this software ... The above copyright notice and this permission notice shall be included in all\ncopies.";
    assert_eq!(identify_text(mit).id, None);
    assert_eq!(identify_text(mit).variant_of.as_deref(), Some("MIT"));
}

fn texts(kind: &str) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/audit/licence-texts")
        .join(kind);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            (stem, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// The canonical texts, as the FSF, Apache, Mozilla and SPDX publish them and repositories ship
/// them (`licence-texts/is/<id>[__variant].txt`), are identified — the short Apache notice too —
/// and impose no use restriction.
#[test]
fn canonical_licence_texts_are_identified() {
    let all = texts("is");
    assert!(all.len() >= 12, "{} texts", all.len());
    let mut wrong = Vec::new();
    for (name, text) in &all {
        let want = name.split("__").next().unwrap();
        let got = identify_text(text);
        if got.id.as_deref() != Some(want) {
            wrong.push(format!(
                "{name}: {:?} (variant of {:?}, added {:?}, {} missing)",
                got.id, got.variant_of, got.additional_text, got.missing_words
            ));
        }
        let binding: Vec<_> = got
            .restrictions
            .iter()
            .filter(|r| r.kind.restricts_use())
            .collect();
        if !binding.is_empty() {
            wrong.push(format!("{name}: restrictions {binding:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Texts that carry an OSI licence's phrases but add terms to it (Kimi K2's "Modified MIT"
/// with its MAU attribution clause, JSON's "Good, not Evil", FSL-1.1-MIT, the No-Military and
/// No-Nuclear BSD, BSD-4-Clause's advertising clause, Apache-1.0) or lack part of it (an
/// excerpt, BSD-1-Clause) are not that licence (`licence-texts/not/`).
#[test]
fn licences_with_additional_terms_are_not_the_licence() {
    let all = texts("not");
    assert!(all.len() >= 15, "{} texts", all.len());
    let mut wrong = Vec::new();
    for (name, text) in &all {
        let got = identify_text(text);
        if got.id.is_some() {
            wrong.push(format!("{name}: identified as {:?}", got.id));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // What was added is quoted, with its line, and the licence it departs from named.
    let kimi = &all
        .iter()
        .find(|(n, _)| n == "Kimi-K2-Modified-MIT")
        .unwrap()
        .1;
    let got = identify_text(kimi);
    assert_eq!(got.variant_of.as_deref(), Some("MIT"));
    assert!(
        got.additional_text
            .iter()
            .any(|l| l.quote.contains("monthly active users")),
        "{:?}",
        got.additional_text
    );
    let json = &all.iter().find(|(n, _)| n == "JSON").unwrap().1;
    let got = identify_text(json);
    assert_eq!(got.variant_of.as_deref(), Some("MIT"));
    assert!(
        got.additional_text
            .iter()
            .any(|l| l.quote.contains("Good, not Evil")),
        "{:?}",
        got.additional_text
    );
    // LGPL-3.0 names the GPL and shares its date, but is not the GPL.
    let lgpl = &texts("is")
        .into_iter()
        .find(|(n, _)| n == "LGPL-3.0-only")
        .unwrap()
        .1;
    assert_ne!(identify_text(lgpl).id.as_deref(), Some("GPL-3.0-only"));
}

/// "Non-commercial" only where it restricts: not the GPL's "only occasionally and
/// noncommercially" (a condition on conveying), GPL-2.0's "noncommercial distribution", the
/// Unlicense's "commercial or non-commercial".
#[test]
fn non_commercial_needs_a_restricting_context() {
    let mut texts_to_check = texts("unrestricted");
    texts_to_check.extend(texts("is"));
    for (name, text) in &texts_to_check {
        let got = identify_text(text);
        assert!(
            !got.restrictions
                .iter()
                .any(|r| r.kind == RestrictionKind::NonCommercial),
            "{name}: {:?}",
            got.restrictions
        );
    }
    for restricting in [
        "You may use the Model for non-commercial purposes only.",
        "The weights are licensed for non-commercial use.",
        "The Model may not be used for commercial purposes.",
        "Use is permitted for research purposes only.",
    ] {
        let got = identify_text(restricting);
        assert!(
            got.restrictions
                .iter()
                .any(|r| r.kind == RestrictionKind::NonCommercial),
            "{restricting}"
        );
    }
}

/// Gemma's terms let Google restrict use remotely (§3.2), as DeepSeek's do (§7).
#[test]
fn gemma_terms_include_the_licensors_remote_restriction() {
    let gemma = glassbox_audit::licenses::license_ref("LicenseRef-Gemma-Terms-of-Use").unwrap();
    assert!(gemma
        .restrictions
        .contains(&RestrictionKind::LicensorControl));
    let clause = gemma
        .clauses
        .iter()
        .find(|c| c.kind == RestrictionKind::LicensorControl)
        .expect("quoted");
    assert!(
        clause.quote.contains("restrict (remotely or otherwise)"),
        "{}",
        clause.quote
    );
}

#[test]
fn canonical_texts_match_exactly_whatever_the_copyright_holder() {
    // The SPDX MIT text, as a repository would ship it (holder filled in, re-wrapped).
    let mit = "MIT License\n\nCopyright (c) 2026 Glassbox Authors\n\nPermission is hereby granted, free of charge, to any person obtaining a copy of this software and\nassociated documentation files (the \"Software\"), to deal in the Software without restriction, including\nwithout limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the following conditions:\n\nThe above copyright notice and this permission notice shall be included in all copies or substantial portions of the Software.\n\nTHE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.\n";
    let id = identify_text(mit);
    assert_eq!(id.id.as_deref(), Some("MIT"));
    assert!(id.exact, "fingerprint {}", id.fingerprint);
    let edited = mit.replace("NONINFRINGEMENT", "NON-INFRINGEMENT OR FITNESS");
    assert!(!identify_text(&edited).exact);
}

/// Catalogued restrictions come with their clause, quoted from the licence text.
#[test]
fn catalogue_restrictions_are_quoted() {
    use glassbox_audit::licenses::{license_ref, RestrictionKind};
    let deepseek = license_ref("LicenseRef-DeepSeek-License").unwrap();
    for kind in [
        RestrictionKind::FieldOfUse,
        RestrictionKind::OutputUse,
        RestrictionKind::LicensorControl,
        RestrictionKind::LitigationTermination,
    ] {
        assert!(deepseek.restrictions.contains(&kind), "{kind:?}");
    }
    let tongyi = license_ref("LicenseRef-Tongyi-Qianwen-License").unwrap();
    assert!(tongyi.restrictions.contains(&RestrictionKind::OutputUse));
    let nvidia = license_ref("LicenseRef-NVIDIA-Open-Model-License").unwrap();
    assert!(nvidia
        .restrictions
        .contains(&RestrictionKind::LicensorControl));
    for r in [deepseek, tongyi, nvidia] {
        for kind in &r.restrictions {
            let c = r.clauses.iter().find(|c| c.kind == *kind);
            assert!(
                c.is_some_and(|c| c.quote.len() > 40),
                "{}: {kind:?} unquoted",
                r.id
            );
        }
    }
    // The audit shows the quote with its section.
    let a = glassbox_audit::registry::lookup("deepseek-ai/DeepSeek-V3")
        .unwrap()
        .release()
        .audit();
    let remote = a
        .restrictions
        .iter()
        .find(|r| r.kind == RestrictionKind::LicensorControl)
        .unwrap();
    assert!(remote.source.contains("§7"), "{}", remote.source);
    assert!(remote.quote.as_deref().unwrap().contains("remotely"));
}
