//! Snapshot directories written by the tests, from texts kept here.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system temp dir, unique to this test and process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `files` (relative path, contents) under `dir`.
pub fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (rel, contents) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

/// The Apache License 2.0 as a repository ships it: the canonical text with its appendix's
/// copyright line filled in.
pub fn apache_license() -> String {
    include_str!("../../data/license-texts/Apache-2.0.txt").replace(
        "Copyright [yyyy] [name of copyright owner]",
        "Copyright 2026 The Example Authors",
    )
}

/// An excerpt of the Apache License 2.0: the header, the definitions' start, the patent
/// clause (its litigation sentence must not read as a restriction), re-wrapped with odd
/// whitespace and a copyright line, which identification must tolerate.
pub const APACHE_EXCERPT: &str = "
                                 Apache License
                           Version 2.0,   January 2004
                        http://www.apache.org/licenses/

   TERMS AND CONDITIONS FOR USE, REPRODUCTION,
   AND DISTRIBUTION

   1. Definitions.
      \"License\" shall mean the terms and conditions for use, reproduction,
      and distribution as defined by Sections 1 through 9 of this document.

   3. Grant of Patent License. [...] If You institute patent litigation against any entity
      (including a cross-claim or counterclaim in a lawsuit) alleging that the Work
      or a Contribution incorporated within the Work constitutes direct or contributory
      patent infringement, then any patent licenses granted to You under this License
      for that Work shall terminate as of the date such litigation is filed.

   END OF TERMS AND CONDITIONS

   Copyright 2026 The Example Authors
";

/// The clauses of the Llama 3.1 Community License that restrict use, one per line.
pub const LLAMA31_EXCERPT: &str = "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT
Llama 3.1 Version Release Date: July 23, 2024

1. License Rights and Redistribution.
i. If you distribute or make available the Llama Materials (or any derivative works thereof), or a product or service (including another AI model) that contains any of them, you shall (A) provide a copy of this Agreement with any such Llama Materials; and (B) prominently display \u{201c}Built with Llama\u{201d} on a related website, user interface, blogpost, about page, or product documentation.
ii. If you use the Llama Materials or any outputs or results of the Llama Materials to create, train, fine tune, or otherwise improve an AI model, which is distributed or made available, you shall also include \u{201c}Llama\u{201d} at the beginning of any such AI model name.
iv. Your use of the Llama Materials must comply with applicable laws and regulations and adhere to the Acceptable Use Policy for the Llama Materials (available at https://llama.meta.com/llama3_1/use-policy), which is hereby incorporated by reference into this Agreement.
2. Additional Commercial Terms. If, on the Llama 3.1 version release date, the monthly active users of the products or services made available by or for Licensee, or Licensee\u{2019}s affiliates, is greater than 700 million monthly active users in the preceding calendar month, you must request a license from Meta.
5. c. If you institute litigation or other proceedings against Meta or any entity (including a cross-claim or counterclaim in a lawsuit) alleging that the Llama Materials or Llama 3.1 outputs or results, or any portion of any of the foregoing, constitutes infringement of intellectual property or other rights owned or licensable by you, then any licenses granted to you under this Agreement shall terminate as of the date such litigation or claim is filed or instituted.
";

/// A fully documented open release: every MOF component in the directory, listed by a
/// `mof.yml` with local paths, Apache-2.0 code and weights, open data and documents.
/// What each file of the open release holds: code that does what its component says.
fn code_for(path: &str) -> &'static str {
    match path {
        "train.py" => "import torch\nfrom modeling_tiny import Tiny\n\ndef main(loader, steps):\n    model = Tiny()\n    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)\n    for step, batch in zip(range(steps), loader):\n        loss = model(batch).loss\n        loss.backward()\n        optimizer.step()\n        optimizer.zero_grad()\n",
        "data_gen.py" => "import json, random\n\ndef generate(seed, n):\n    rng = random.Random(seed)\n    return [f\"{rng.randint(0, 9)} + {rng.randint(0, 9)}\" for _ in range(n)]\n",
        "eval.py" => "import torch\n\ndef evaluate(model, data):\n    model.eval()\n    with torch.no_grad():\n        return sum(model(x).loss.item() for x in data) / len(data)\n",
        _ => "content\n",
    }
}

pub fn write_open_release(dir: &Path) {
    let components = [
        ("Model architecture", "modeling_tiny.py"),
        ("Data preprocessing code", "data_gen.py"),
        ("Training code", "train.py"),
        ("Inference code", "generate.py"),
        ("Evaluation code", "eval.py"),
        ("Supporting libraries and tools", "requirements.txt"),
        ("Model parameters (Final)", "model.safetensors"),
        (
            "Model parameters (Intermediate)",
            "checkpoints/step100/model.safetensors",
        ),
        ("Datasets", "data/train.jsonl"),
        ("Evaluation data", "eval_data/test.jsonl"),
        ("Model metadata", "trainer_state.json"),
        ("Model card", "README.md"),
        ("Data card", "data_card.md"),
        ("Technical report", "technical_report.md"),
        ("Research paper", "docs/paper.md"),
        ("Evaluation results", "eval_results.json"),
        ("Sample model outputs", "samples.txt"),
    ];
    let mut mof = String::from(
        "framework:\n  name: Model Openness Framework\n  version: '1.0'\n  date: '2024-12-15'\nrelease:\n  name: tiny-open\n  version: '1'\n  producer: glassbox tests\n  license:\n    distribution:\n      name: Apache-2.0\n      path: LICENSE\n    data:\n      name: CDLA-Permissive-2.0\n      path: LICENSE-DATA\n    document:\n      name: CC-BY-4.0\n      path: LICENSE-DOCS\n  components:\n",
    );
    for (name, path) in components {
        mof.push_str(&format!("  - name: {name}\n    component_path: {path}\n"));
        // MOT files weights under `data`; the weights carry their own (code) licence.
        if name.starts_with("Model parameters") {
            mof.push_str("    license: Apache-2.0\n    license_path: LICENSE\n");
        }
        if path != "README.md" {
            write_tree(dir, &[(path, code_for(path))]);
        }
    }
    write_tree(
        dir,
        &[
            ("mof.yml", &mof),
            ("LICENSE", &apache_license()),
            ("config.json", "{\"model_type\": \"llama\"}"),
            ("recipe.toml", "steps = 100\n"),
            (
                "README.md",
                "---\nlicense: apache-2.0\ndatasets:\n- glassbox/tiny-arith\nlibrary_name: glassbox\n---\n# tiny-open\nTrained from scratch by `train.py` with `recipe.toml`; data from `data_gen.py`.\n",
            ),
        ],
    );
}
