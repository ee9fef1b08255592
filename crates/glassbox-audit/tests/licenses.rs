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
    let a = identify_text(common::APACHE_EXCERPT);
    assert_eq!(a.id.as_deref(), Some("Apache-2.0"));
    // Re-wrapping and a different copyright holder give the same fingerprint.
    let rewrapped = common::APACHE_EXCERPT
        .replace("\n      ", " ")
        .replace("Example Authors", "Someone Else");
    assert_eq!(identify_text(&rewrapped).fingerprint, a.fingerprint);
    assert_eq!(
        identify_text(common::LLAMA31_EXCERPT).id.as_deref(),
        Some("LicenseRef-Llama-3.1-Community-License")
    );
    let mit = "MIT License\n\nCopyright (c) 2024 X\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\nof this software ... The above copyright notice and this permission notice shall be included in all\ncopies.";
    assert_eq!(identify_text(mit).id.as_deref(), Some("MIT"));
    assert_eq!(identify_text("All rights reserved. Do not copy.").id, None);
    assert!(
        !a.exact,
        "an excerpt is recognised by its phrases, not as the canonical text"
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
