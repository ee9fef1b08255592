//! Issue 19's reproductions beyond the file parsers, each through the binary under a time limit
//! — the files and paths a command is given: special files where a file is expected (a FIFO
//! used to hang the command, `/dev/zero` or `/dev/urandom` to grow until memory ran out), a
//! directory where a weights file is expected, text that is not UTF-8, links that loop or point
//! at nothing, outputs that cannot be files or would be written over the command's inputs.
//! Each must end with exit code 2 and a message that says what is wrong in words — no hang, no
//! panic, no OS error number. The values inside inputs are `input_values.rs`'s.

mod support;

use std::path::Path;

use support::policy::*;

#[cfg(unix)]
#[test]
fn special_files_are_refused_by_kind() {
    use std::os::unix::fs::symlink;
    let prompt = ["--prompt", "Hello"];
    for (file, what) in [
        ("config.json", "FIFO"),
        ("tokenizer.json", "FIFO"),
        ("model.safetensors", "FIFO"),
    ] {
        let dir = gpt2_copy(&format!("fifo-{file}"));
        std::fs::remove_file(dir.join(file)).unwrap();
        mkfifo(&dir.join(file));
        let d = dir.to_str().unwrap();
        refused(&[&["run", d][..], &prompt[..]].concat(), what);
    }
    for (file, device) in [
        ("config.json", "/dev/zero"),
        ("model.safetensors", "/dev/urandom"),
    ] {
        let dir = gpt2_copy(&format!("device-{file}"));
        std::fs::remove_file(dir.join(file)).unwrap();
        symlink(device, dir.join(file)).unwrap();
        refused(
            &[&["run", dir.to_str().unwrap()][..], &prompt[..]].concat(),
            "is a device",
        );
    }
    // A /proc file that claims to be empty and that the kernel will not read in the pieces
    // asked for: an input error naming it (it was exit 1).
    #[cfg(target_os = "linux")]
    {
        let dir = gpt2_copy("proc-config");
        std::fs::remove_file(dir.join("config.json")).unwrap();
        symlink("/proc/self/pagemap", dir.join("config.json")).unwrap();
        refused(
            &[&["run", dir.to_str().unwrap()][..], &prompt[..]].concat(),
            "config.json",
        );
    }
    // A shard a Hub index names.
    let dir = gpt2_copy("fifo-shard");
    let names: Vec<String> = {
        let ck = glassbox_formats::Checkpoint::open(&dir.join("model.safetensors")).unwrap();
        ck.tensors().iter().map(|t| t.name.clone()).collect()
    };
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let shard = "model-00001-of-00001.safetensors";
    let map: serde_json::Map<String, serde_json::Value> =
        names.into_iter().map(|n| (n, shard.into())).collect();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    mkfifo(&dir.join(shard));
    refused(&["run", dir.to_str().unwrap(), "--prompt", "Hello"], "FIFO");
    // A GGUF named directly, and a recipe.
    let dir = scratch("fifo-files");
    let gguf = dir.join("model.gguf");
    mkfifo(&gguf);
    refused(&["inspect", gguf.to_str().unwrap()], "FIFO");
    let recipe = dir.join("recipe.toml");
    mkfifo(&recipe);
    let out = dir.join("out");
    refused(
        &[
            "train",
            recipe.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        "FIFO",
    );
}

#[test]
fn a_directory_where_weights_belong_is_named() {
    let dir = gpt2_copy("dir-weights");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::create_dir(dir.join("model.safetensors")).unwrap();
    refused(
        &["run", dir.to_str().unwrap(), "--prompt", "Hello"],
        "is a directory",
    );
}

#[test]
fn text_that_is_not_utf8_is_an_input_error() {
    let dir = gpt2_copy("latin1-config");
    let mut config = std::fs::read(dir.join("config.json")).unwrap();
    config.extend_from_slice(b"\n\xe9");
    std::fs::write(dir.join("config.json"), config).unwrap();
    refused(
        &["run", dir.to_str().unwrap(), "--prompt", "Hello"],
        "not UTF-8",
    );
}

/// Output paths onto a directory or inside a missing folder were exit 1 with an OS error
/// after the work was done; they are refused first, with exit 2, and nothing is written.
#[test]
fn output_paths_that_cannot_be_files_are_refused_first() {
    let model = root().join("tests/fixtures/parity/gpt2");
    let m = model.to_str().unwrap();
    let dir = scratch("outputs");
    let d = dir.to_str().unwrap();
    let missing = dir.join("no/such/folder/out.svg");
    let missing = missing.to_str().unwrap();
    let onto_dir = dir.join("a.svg");
    std::fs::create_dir_all(&onto_dir).unwrap();
    let onto_dir = onto_dir.to_str().unwrap();
    let lens = |plot: &str| {
        [
            "lens",
            m,
            "--prompt",
            "The Eiffel Tower is in",
            "--plot",
            plot,
        ]
        .map(String::from)
    };
    for args in [lens(missing), lens(onto_dir)] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, "--plot");
    }
    let trace =
        |out: &str| ["trace", m, "--prompt", "Hi", "--hooks", "*", "--out", out].map(String::from);
    for (out, expect) in [(d, "is a directory"), (missing, "does not exist")] {
        let args = trace(out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, expect);
    }
    let release = root().join("models/reference");
    refused(
        &["audit", release.to_str().unwrap(), "--html", d],
        "is a directory",
    );
    assert!(!dir.join("no").exists());
    // A device or a FIFO is not replaced by a regular file (`--out /dev/null` as root
    // replaced the device for the whole system).
    let fifo = dir.join("pipe");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    for out in [fifo, "/dev/null"] {
        let args = trace(out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, "not a regular file");
        refused(
            &["audit", release.to_str().unwrap(), "--html", out],
            "not a regular file",
        );
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(fifo).unwrap().file_type().is_fifo());
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

/// Commands wrote their output over what they read with exit 0: `trace --out` onto the model's
/// weights, `audit --badge` onto them, `finetune --out` into the release (its training log
/// replaced), `train --out` onto its recipe after training. Every output path is checked
/// against the command's inputs first: exit 2, the input named, nothing written.
#[test]
fn outputs_are_never_written_over_the_commands_inputs() {
    let dir = scratch("over-inputs");
    let release = dir.join("release");
    copy_tree(&root().join("models/reference"), &release);
    let r = release.to_str().unwrap().to_string();
    let at = |name: &str| release.join(name).to_str().unwrap().to_string();
    let data = dir.join("probe.jsonl");
    let lines: Vec<String> = (0..20)
        .map(|i| match i % 2 {
            0 => r#"{"text":"the old bird finds a fish","label":1}"#.to_string(),
            _ => r#"{"text":"the big cat chases a bear","label":0}"#.to_string(),
        })
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let data = data.to_str().unwrap().to_string();
    let ft_data = root().join("tests/fixtures/peft/train.jsonl");
    let ft_data = ft_data.to_str().unwrap().to_string();
    let text = at("samples.txt");
    let weights = at("model.safetensors");
    let before = snapshot(&release);
    let hooks = "blocks.*.hook_resid_post";
    let cases: Vec<Vec<String>> = [
        vec![
            "trace",
            &r,
            "--prompt",
            "the old bird",
            "--hooks",
            hooks,
            "--out",
            &weights,
        ],
        vec![
            "probe", &r, "--hooks", hooks, "--data", &data, "--out", &weights,
        ],
        vec![
            "steer",
            &r,
            "--positive",
            "the old bird",
            "--negative",
            "the big cat",
            "--layers",
            "1-2",
            "--out",
            &weights,
        ],
        vec!["quantize", &r, "--to", "q8_0", "--out", &weights],
        vec!["audit", &r, "--badge", &weights],
        vec!["audit", &r, "--html", &at("config.json")],
        vec![
            "lens",
            &r,
            "--prompt",
            "the old bird",
            "--plot",
            &at("figure.svg"),
        ],
        vec![
            "finetune", &r, "--data", &ft_data, "--out", &r, "--steps", "1",
        ],
        vec![
            "cache",
            &r,
            "--hooks",
            "blocks.0.hook_resid_post",
            "--text",
            &text,
            "--out",
            &r,
        ],
        vec![
            "sae",
            "train",
            &r,
            "--hook",
            "blocks.0.hook_resid_post",
            "--arch",
            "standard",
            "--d-sae",
            "8",
            "--text",
            &text,
            "--out",
            &at("sae"),
        ],
        vec![
            "train",
            &at("recipe.toml"),
            "--out",
            &at("recipe.toml"),
            "--force",
        ],
    ]
    .iter()
    .map(|c| c.iter().map(|s| s.to_string()).collect())
    .collect();
    for case in &cases {
        let args: Vec<&str> = case.iter().map(String::as_str).collect();
        refused(&args, "which this command reads");
    }
    assert_eq!(snapshot(&release), before, "an input was written");
    // Beside the release, the same outputs are written.
    let (code, err) = glassbox(&[
        "trace",
        &r,
        "--prompt",
        "the old bird",
        "--hooks",
        hooks,
        "--out",
        dir.join("trace.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
}

/// Links that loop or point at nothing were taken as absent: a looping model path read "no such
/// file or directory", a looping or dangling `model.safetensors` was skipped and the load failed
/// on a "missing tensor". Each is named for what it is. `/proc/self/mem` (a "regular file" of
/// size 0 whose reading fails with EIO) was exit 1.
#[cfg(unix)]
#[test]
fn links_that_loop_or_dangle_are_named_for_what_they_are() {
    use std::os::unix::fs::symlink;
    let dir = scratch("links");
    let (a, b) = (dir.join("a"), dir.join("b"));
    symlink(&b, &a).unwrap();
    symlink(&a, &b).unwrap();
    let a = a.to_str().unwrap();
    refused(&["inspect", a], "a symbolic link that loops");
    refused(&["run", a, "--tokens", "1"], "a symbolic link that loops");
    for (name, target) in [("loop", None), ("dangling", Some("nothing.safetensors"))] {
        let model = gpt2_copy(&format!("link-{name}"));
        let weights = model.join("model.safetensors");
        std::fs::remove_file(&weights).unwrap();
        match target {
            None => symlink(&weights, &weights).unwrap(),
            Some(t) => symlink(model.join(t), &weights).unwrap(),
        }
        let expect = if target.is_none() {
            "loops"
        } else {
            "a symbolic link to nothing"
        };
        refused(&["run", model.to_str().unwrap(), "--tokens", "1"], expect);
    }
    refused(&["inspect", "/proc/self/mem"], "the file is empty");
    refused(
        &["run", dir.join("absent").to_str().unwrap(), "--tokens", "1"],
        "does not exist",
    );
}

/// Files written through the safetensors crate got its temporary file's mode (0600) while every
/// other output got the umask's; and an output where no file can be made (`/proc`) was exit 1
/// naming the safetensors crate's temporary path.
#[cfg(unix)]
#[test]
fn outputs_get_the_usual_permissions_and_errors_name_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("modes");
    let reference = root().join("models/reference");
    let reference = reference.to_str().unwrap();
    let plain = dir.join("plain");
    std::fs::write(&plain, "x").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let usual = mode(&plain);
    let trace = dir.join("trace.safetensors");
    let hooks = ["--hooks", "blocks.0.hook_resid_post", "--prompt", "the cat"];
    let (code, err) = glassbox(
        &[
            &["trace", reference, "--out", trace.to_str().unwrap()][..],
            &hooks[..],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        mode(&trace),
        usual,
        "trace --out: {:o} vs {usual:o}",
        mode(&trace)
    );
    let nowhere = "/proc/glassbox-trace.safetensors";
    let args = [&["trace", reference, "--out", nowhere][..], &hooks[..]].concat();
    refused(
        &args,
        "/proc/glassbox-trace.safetensors: no file can be written in /proc",
    );
    let (_, err) = glassbox(&args);
    assert!(!err.contains(".tmp"), "the temporary file is named: {err}");
}
