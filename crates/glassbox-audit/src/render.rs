//! Rendering an audit: terminal text, JSON, Markdown, self-contained HTML, an SVG badge.

use std::fmt::Write as _;

use crate::audit::{Audit, Tier, WeightsTerms};
use crate::mof::round_percent;

fn class_label(class: Option<u8>) -> &'static str {
    match class {
        Some(1) => "Class I (open science)",
        Some(2) => "Class II (open tooling)",
        Some(3) => "Class III (open model)",
        _ => "unclassified",
    }
}

fn terms_label(a: &Audit) -> String {
    let lic = a
        .weights_license
        .as_ref()
        .map(|l| l.display())
        .unwrap_or_else(|| "no licence found".into());
    match a.weights_terms {
        WeightsTerms::Permissive => format!("permissive (OSI-approved: {lic})"),
        WeightsTerms::Restricted if a.restrictions.is_empty() => {
            format!("restricted ({lic}: not OSI-approved; no use restrictions identified)")
        }
        WeightsTerms::Restricted => {
            let kinds: Vec<&str> = a
                .restrictions
                .iter()
                .map(|r| r.kind.describe())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            format!("restricted ({lic}: not OSI-approved; {})", kinds.join(", "))
        }
        WeightsTerms::Unknown => format!("unknown ({lic})"),
        WeightsTerms::NotApplicable => "no downloadable weights".into(),
    }
}

fn eu_line(a: &Audit) -> &'static str {
    match a.eu_ai_act.open_source_exception_conditions_met {
        Some(true) => "conditions of the Art. 53(2) open-source exception appear met",
        Some(false) => "conditions of the Art. 53(2) open-source exception not met",
        None => "unknown whether the Art. 53(2) conditions are met",
    }
}

fn component_rows(a: &Audit) -> Vec<[String; 5]> {
    a.components
        .iter()
        .map(|c| {
            let score = a.mof.detail.components.iter().find(|s| s.id == c.id);
            let class = score.map(|s| {
                format!(
                    "{}{}",
                    roman(s.class),
                    if s.required { "" } else { " (opt.)" }
                )
            });
            // Registry details say how each fact is known (verified or recalled) themselves.
            let evidence = c.evidence.detail.clone();
            [
                c.name.to_string(),
                class.unwrap_or_default(),
                c.evidence.kind.label().to_string(),
                if c.evidence.is_available() {
                    let none = if a.input == "registry" {
                        "not recorded"
                    } else {
                        "unlicensed"
                    };
                    c.license
                        .as_ref()
                        .map(|l| l.display())
                        .unwrap_or_else(|| none.into())
                } else {
                    "-".into()
                },
                evidence,
            ]
        })
        .collect()
}

fn roman(class: u8) -> &'static str {
    match class {
        1 => "I",
        2 => "II",
        _ => "III",
    }
}

/// The terminal report.
pub fn text(a: &Audit) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Release: {}{}  [{}]",
        a.release,
        a.version
            .as_ref()
            .map(|v| format!(" ({v})"))
            .unwrap_or_default(),
        a.input
    );
    let _ = writeln!(s, "Tier:    {}", a.tier.label());
    let _ = writeln!(s, "Weights: {}", terms_label(a));
    let c = &a.mof.completeness;
    let _ = writeln!(
        s,
        "MOF:     {}; completeness I {}%, II {}%, III {}% (from {})",
        class_label(a.mof.class),
        round_percent(c.class_1),
        round_percent(c.class_2),
        round_percent(c.class_3),
        a.mof.computed_from
    );
    let _ = writeln!(s, "EU AI Act: {}", eu_line(a));
    let rows = component_rows(a);
    let headers = ["Component", "Class", "Evidence", "Licence", "Where"];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let _ = writeln!(s);
    let line = |cols: [&str; 5]| {
        let mut l = String::new();
        for i in 0..4 {
            let _ = write!(l, "{:<w$}  ", cols[i], w = widths[i]);
        }
        l.push_str(cols[4]);
        l
    };
    let _ = writeln!(s, "{}", line(headers));
    for r in &rows {
        let _ = writeln!(s, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    if !a.restrictions.is_empty() {
        let _ = writeln!(s, "\nRestrictions on the weights:");
        for r in &a.restrictions {
            match &r.quote {
                Some(q) => {
                    let _ = writeln!(s, "  - {} — {}: \"{}\"", r.description, r.source, q);
                }
                None => {
                    let _ = writeln!(s, "  - {} — {}", r.description, r.source);
                }
            }
        }
    }
    if !a.license_files.is_empty() {
        let _ = writeln!(s, "\nLicence files:");
        for f in &a.license_files {
            let _ = writeln!(s, "  - {}", license_file_line(f));
        }
    }
    let _ = writeln!(s, "\nOpen Source AI Definition 1.0:");
    for i in &a.osaid {
        let _ = writeln!(
            s,
            "  [{}] {} — {}",
            if i.met { "x" } else { " " },
            i.requirement,
            i.why
        );
    }
    if !a.missing_for_next_tier.is_empty() {
        let next = if a.tier == Tier::Closed {
            "open-weights"
        } else {
            "open-source"
        };
        let _ = writeln!(s, "\nMissing for {next}:");
        for m in &a.missing_for_next_tier {
            let _ = writeln!(s, "  - {m}");
        }
    }
    let _ = writeln!(s, "\nEU AI Act Art. 53(2):");
    for r in &a.eu_ai_act.reasons {
        let _ = writeln!(s, "  - {r}");
    }
    for c in &a.eu_ai_act.caveats {
        let _ = writeln!(s, "  ! {c}");
    }
    if !a.notes.is_empty() {
        let _ = writeln!(s, "\nNotes:");
        for n in &a.notes {
            let _ = writeln!(s, "  - {n}");
        }
    }
    let _ = writeln!(s, "\n{EVIDENCE_LEGEND}");
    let _ = writeln!(s, "{}", a.disclaimer);
    s
}

/// The JSON report.
pub fn json(a: &Audit) -> String {
    serde_json::to_string_pretty(a).expect("the audit serialises")
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown report.
pub fn markdown(a: &Audit) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Openness audit: {}\n", md_escape(&a.release));
    if let Some(v) = &a.version {
        let _ = writeln!(s, "Version: {}  ", md_escape(v));
    }
    let _ = writeln!(s, "**Tier: {}**  ", a.tier.label());
    let _ = writeln!(s, "Weights: {}  ", md_escape(&terms_label(a)));
    let c = &a.mof.completeness;
    let _ = writeln!(
        s,
        "Model Openness Framework: {} — I {}%, II {}%, III {}%  ",
        class_label(a.mof.class),
        round_percent(c.class_1),
        round_percent(c.class_2),
        round_percent(c.class_3)
    );
    let _ = writeln!(s, "EU AI Act: {}\n", eu_line(a));
    let _ = writeln!(
        s,
        "| Component | Class | Evidence | Licence | Where |\n|---|---|---|---|---|"
    );
    for r in component_rows(a) {
        let _ = writeln!(
            s,
            "| {} |",
            r.iter()
                .map(|c| md_escape(c))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    if !a.restrictions.is_empty() {
        let _ = writeln!(s, "\n## Restrictions\n");
        for r in &a.restrictions {
            let quote = r
                .quote
                .as_ref()
                .map(|q| format!(": “{}”", md_escape(q)))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "- {} — `{}`{}",
                r.description,
                md_escape(&r.source),
                quote
            );
        }
    }
    let _ = writeln!(s, "\n## Open Source AI Definition 1.0\n");
    for i in &a.osaid {
        let _ = writeln!(
            s,
            "- [{}] {} — {}",
            if i.met { "x" } else { " " },
            i.requirement,
            md_escape(&i.why)
        );
    }
    if !a.missing_for_next_tier.is_empty() {
        let _ = writeln!(s, "\n## Missing for the next tier\n");
        for m in &a.missing_for_next_tier {
            let _ = writeln!(s, "- {}", md_escape(m));
        }
    }
    let _ = writeln!(s, "\n## EU AI Act, Article 53(2)\n");
    for r in &a.eu_ai_act.reasons {
        let _ = writeln!(s, "- {}", md_escape(r));
    }
    for c in &a.eu_ai_act.caveats {
        let _ = writeln!(s, "- *{}*", c);
    }
    if !a.notes.is_empty() {
        let _ = writeln!(s, "\n## Notes\n");
        for n in &a.notes {
            let _ = writeln!(s, "- {}", md_escape(n));
        }
    }
    let _ = writeln!(s, "\n_{}_", a.disclaimer);
    s
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn tier_color(t: Tier) -> &'static str {
    match t {
        Tier::Closed => "#9f1d1d",
        Tier::OpenWeights => "#b26b00",
        Tier::OpenSource => "#2e7d32",
    }
}

/// A self-contained HTML page (inline CSS, no scripts, no external resources).
pub fn html(a: &Audit) -> String {
    let mut s = String::new();
    let title = format!("Openness audit: {}", a.release);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
body{{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}}\
table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}}\
th{{background:#f3f3f3}}.tier{{display:inline-block;color:#fff;padding:.2rem .6rem;border-radius:.3rem;background:{}}}\
.present{{color:#2e7d32}}.declared{{color:#b26b00}}.registry{{color:#1f4e99}}.absent{{color:#999}}small{{color:#555}}\
.warning{{color:#b00000}}\
</style></head><body>\n",
        html_escape(&title),
        tier_color(a.tier)
    );
    let _ = writeln!(s, "<h1>{}</h1>", html_escape(&title));
    let _ = writeln!(
        s,
        "<p>Tier: <span class=\"tier\">{}</span></p>",
        a.tier.label()
    );
    let _ = writeln!(s, "<p>Weights: {}</p>", html_escape(&terms_label(a)));
    let c = &a.mof.completeness;
    let _ = writeln!(
        s,
        "<p>Model Openness Framework: {} — I {}%, II {}%, III {}%</p>",
        class_label(a.mof.class),
        round_percent(c.class_1),
        round_percent(c.class_2),
        round_percent(c.class_3)
    );
    let _ = writeln!(s, "<p>EU AI Act: {}</p>", eu_line(a));
    let _ = writeln!(s, "<table><tr><th>Component</th><th>Class</th><th>Evidence</th><th>Licence</th><th>Where</th></tr>");
    for r in component_rows(a) {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&r[0]),
            html_escape(&r[1]),
            html_escape(&r[2]),
            html_escape(&r[2]),
            html_escape(&r[3]),
            html_escape(&r[4])
        );
    }
    let _ = writeln!(s, "</table>");
    let list = |s: &mut String, title: &str, items: Vec<String>| {
        if items.is_empty() {
            return;
        }
        let _ = writeln!(s, "<h2>{}</h2><ul>", html_escape(title));
        for i in items {
            let _ = writeln!(s, "<li>{}</li>", html_escape(&i));
        }
        let _ = writeln!(s, "</ul>");
    };
    list(
        &mut s,
        "Restrictions",
        a.restrictions
            .iter()
            .map(|r| match &r.quote {
                Some(q) => format!("{} — {}: “{}”", r.description, r.source, q),
                None => format!("{} — {}", r.description, r.source),
            })
            .collect(),
    );
    list(
        &mut s,
        "Open Source AI Definition 1.0",
        a.osaid
            .iter()
            .map(|i| {
                format!(
                    "{} {} — {}",
                    if i.met { "✔" } else { "✘" },
                    i.requirement,
                    i.why
                )
            })
            .collect(),
    );
    list(
        &mut s,
        "Missing for the next tier",
        a.missing_for_next_tier.clone(),
    );
    list(
        &mut s,
        "EU AI Act, Article 53(2)",
        a.eu_ai_act
            .reasons
            .iter()
            .cloned()
            .chain(a.eu_ai_act.caveats.iter().map(|c| c.to_string()))
            .collect(),
    );
    list(
        &mut s,
        "What the cards say about withheld training data",
        a.data_statements
            .iter()
            .map(|d| format!("{} ({}): “{}”", d.kind, d.source, d.quote))
            .collect(),
    );
    list(
        &mut s,
        "Licence files",
        a.license_files.iter().map(license_file_line).collect(),
    );
    list(&mut s, "Notes", a.notes.clone());
    if !a.eu_ai_act.caveats.is_empty() {
        let _ = writeln!(s, "<h2>Warnings</h2><ul>");
        for c in &a.eu_ai_act.caveats {
            let _ = writeln!(s, "<li class=\"warning\">⚠ {}</li>", html_escape(c));
        }
        let _ = writeln!(s, "</ul>");
    }
    let _ = writeln!(s, "<p><small>{}</small></p>", html_escape(EVIDENCE_LEGEND));
    let _ = writeln!(
        s,
        "<p><small>{} {}</small></p></body></html>",
        html_escape(a.disclaimer),
        html_escape(&generated_by())
    );
    s
}

/// What the evidence kinds mean, as every report states it.
pub const EVIDENCE_LEGEND: &str = "Evidence: present = file in the directory; declared = claimed by the card or MOT file, not verified; registry = built-in fact with its source and date.";

/// "Generated by glassbox 0.1.0 on 2026-12-04 (UTC)."
pub fn generated_by() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let (y, m, d) = civil_from_days(days);
    format!(
        "Generated by glassbox {} on {y:04}-{m:02}-{d:02} (UTC).",
        env!("CARGO_PKG_VERSION")
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn license_file_line(f: &crate::audit::LicenseFile) -> String {
    format!(
        "{}: {}{} (normalised sha256 {})",
        f.path,
        f.identified_as.as_deref().unwrap_or("not identified"),
        if f.exact {
            ", canonical text"
        } else if f.identified_as.is_some() {
            ", by its phrases"
        } else {
            ""
        },
        &f.fingerprint[..16.min(f.fingerprint.len())]
    )
}

/// A small flat SVG badge: `openness | <tier> · MOF <class>`.
pub fn badge(a: &Audit) -> String {
    let label = "openness";
    let value = &format!(
        "{} · {}",
        a.tier.label(),
        a.mof
            .class
            .map_or("no MOF class".to_string(), |c| format!("MOF {}", roman(c)))
    );
    // Approximate text widths (6.5 px per character at 11 px Verdana) keep the badge tidy.
    let lw = 10 + (label.len() as f64 * 6.5) as usize;
    let vw = 10 + (value.len() as f64 * 6.5) as usize;
    let w = lw + vw;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"20\" role=\"img\" aria-label=\"{label}: {value}\">\
<title>{label}: {value}</title><rect width=\"{lw}\" height=\"20\" fill=\"#555\"/>\
<rect x=\"{lw}\" width=\"{vw}\" height=\"20\" fill=\"{color}\"/>\
<g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\">\
<text x=\"{lx}\" y=\"14\">{label}</text><text x=\"{vx}\" y=\"14\">{value}</text></g></svg>\n",
        color = tier_color(a.tier),
        lx = lw / 2,
        vx = lw + vw / 2,
    )
}
