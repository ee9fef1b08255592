"""Every analysis and the audit return the CLI's `--json` document for the same request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import glassbox
from conftest import GPT2, OLMOE_GGUF, PROMPT, REFERENCE, ROOT, cli_json, same_document


def test_predictions(gpt2):
    same_document(
        glassbox.predictions(gpt2, PROMPT, top_k=3, all_positions=True),
        cli_json("run", GPT2, "--prompt", PROMPT, "--top-k", 3, "--all-positions", "--json"),
    )
    ids = gpt2.to_tokens(PROMPT)[0]
    same_document(glassbox.predictions(gpt2, ids), cli_json("run", GPT2, "--prompt", PROMPT, "--json"))


def test_lens(gpt2):
    same_document(glassbox.lens(gpt2, PROMPT), cli_json("lens", GPT2, "--prompt", PROMPT, "--json"))
    same_document(
        glassbox.lens(gpt2, PROMPT, top_k=2, target=" Mary"),
        cli_json("lens", GPT2, "--prompt", PROMPT, "--top", 2, "--target", " Mary", "--json"),
    )


def test_prompts_may_be_token_ids(gpt2):
    # TransformerLens' tokens, [pos] or [1, pos], give the text's document (the prompt shown is
    # the ids' decoding, which here is the text itself)
    ids = gpt2.to_tokens(PROMPT)
    by_text = glassbox.lens(gpt2, PROMPT, top_k=2)
    same_document(glassbox.lens(gpt2, ids, top_k=2), by_text)
    same_document(glassbox.lens(gpt2, list(ids[0]), top_k=2), by_text)
    same_document(
        glassbox.attribute(gpt2, ids[0], " Mary", versus=" John", position=-2),
        glassbox.attribute(gpt2, PROMPT, " Mary", versus=" John", position=-2),
    )
    # ids the text would not give are used as they are
    shifted = glassbox.lens(gpt2, ids[0][1:], top_k=2)
    assert shifted["input_ids"] == [int(i) for i in ids[0][1:]]
    assert shifted["report"]["prompt_tokens"] == by_text["report"]["prompt_tokens"][1:]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        glassbox.lens(gpt2, [1, gpt2.cfg.d_vocab])
    with pytest.raises(TypeError, match="token ids"):
        glassbox.lens(gpt2, np.array([1.5, 2.0]))
    with pytest.raises(TypeError, match="token ids"):
        glassbox.lens(gpt2, np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="text"):
        glassbox.patch(gpt2, ids, PROMPT, " Mary", " John")


def test_attribute(gpt2):
    same_document(
        glassbox.attribute(gpt2, PROMPT, " Mary", versus=" John"),
        cli_json("attribute", GPT2, "--prompt", PROMPT, "--target", " Mary", "--versus", " John", "--json"),
    )
    same_document(
        glassbox.attribute(gpt2, PROMPT, "#42", position=3),
        cli_json("attribute", GPT2, "--prompt", PROMPT, "--target", "#42", "--position", 3, "--json"),
    )


def test_heads(gpt2):
    same_document(
        glassbox.heads(gpt2, seq_len=12, batch=4, seed=3, top=2),
        cli_json("heads", GPT2, "--seq-len", 12, "--batch", 4, "--seed", 3, "--top", 2, "--json"),
    )
    # what makes the scores weak evidence is a Python warning, as the CLI's is on stderr
    with pytest.warns(UserWarning, match="sequences of 4 random tokens"):
        doc = glassbox.heads(gpt2, seq_len=4, batch=4, top=2)
    assert doc["warnings"] and all("standard_error" in t for t in doc["top"]["induction"])


@pytest.mark.parametrize("what,method", [("resid_pre", "activation"), ("heads", "both")])
def test_patch(gpt2, what, method):
    clean, corrupt = PROMPT, PROMPT.replace("John gave", "Mary gave")
    same_document(
        glassbox.patch(gpt2, clean, corrupt, " Mary", " John", what=what, method=method),
        cli_json("patch", GPT2, "--clean", clean, "--corrupt", corrupt, "--answer", " Mary", "--wrong", " John",
                 "--what", what, "--method", method, "--json"),
    )


def test_ablate(gpt2):
    same_document(
        glassbox.ablate(gpt2, PROMPT, ["L0H1", "L1MLP"], each=True),
        cli_json("ablate", GPT2, "--text", PROMPT, "--target", "L0H1", "--target", "L1MLP", "--each", "--json"),
    )
    refs = ["The cat sat on the mat.", "A quick brown fox jumps."]
    same_document(
        glassbox.ablate(gpt2, PROMPT, "L1H2", method="resample", reference=refs, seed=5),
        cli_json("ablate", GPT2, "--text", PROMPT, "--target", "L1H2", "--method", "resample",
                 "--reference", refs[0], "--reference", refs[1], "--seed", 5, "--json"),
    )


def test_steer(gpt2, tmp_path):
    ours_file, theirs_file = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    ours = glassbox.steer(gpt2, ["I love it", "Wonderful"], ["I hate it", "Awful"], "1-1", out=ours_file)
    theirs = cli_json("steer", GPT2, "--positive", "I love it", "Wonderful", "--negative", "I hate it", "Awful",
                      "--layers", "1-1", "--out", theirs_file, "--json")
    directions = ours.pop("directions")
    theirs["out"] = str(ours_file)
    same_document(ours, theirs)
    assert ours_file.read_bytes() == theirs_file.read_bytes()
    assert abs(float(np.linalg.norm(directions[1])) - 1.0) < 1e-5
    raw = glassbox.steer(gpt2, "I love it", "I hate it", "1", normalize=False)
    assert raw["out"] is None and not raw["normalized"]
    assert abs(float(np.linalg.norm(raw["directions"][1])) - raw["layers"][0]["mean_difference_norm"]) < 1e-4


def test_experts():
    model = glassbox.load(OLMOE_GGUF)
    same_document(glassbox.experts(model, PROMPT), cli_json("experts", OLMOE_GGUF, "--prompt", PROMPT, "--json"))
    same_document(glassbox.experts(model, model.to_tokens(PROMPT)), glassbox.experts(model, PROMPT))
    with pytest.raises(ValueError, match="no mixture-of-experts"):
        glassbox.experts(glassbox.load(GPT2), PROMPT)


def test_audit():
    same_document(glassbox.audit(REFERENCE), cli_json("audit", REFERENCE, "--json"))
    same_document(glassbox.audit("meta-llama/Llama-3.1-8B"), cli_json("audit", "meta-llama/Llama-3.1-8B", "--json"))
    same_document(glassbox.audit_registry(), cli_json("audit", "--list", "--json"))
    with pytest.raises(OSError):
        glassbox.audit(ROOT / "no-such-release")


def test_bad_requests_are_value_errors(gpt2):
    with pytest.raises(ValueError, match="what"):
        glassbox.patch(gpt2, PROMPT, PROMPT, " Mary", " John", what="everything")
    with pytest.raises(ValueError, match="equal token length"):
        glassbox.patch(gpt2, PROMPT, "Short", " Mary", " John")
    with pytest.raises(ValueError):
        glassbox.attribute(gpt2, PROMPT, " Mary went")
    with pytest.raises(ValueError):
        glassbox.ablate(gpt2, PROMPT, ["L9H0"])
    with pytest.raises(ValueError):
        glassbox.steer(gpt2, ["a"], ["b"], "3-1")
    with pytest.raises(TypeError):
        glassbox.lens("not a model", PROMPT)


def interrupt(tmp_path, setup: str, call: str, after: float) -> tuple[str, float]:
    """Runs `setup` then the long `call` (Python) in a process of its own, sends it SIGINT
    `after` seconds into the call, and returns what it printed ('finished' or 'interrupted')
    and how many seconds after the signal."""
    script = tmp_path / "long.py"
    script.write_text(
        f"import time, glassbox\n{setup}\nprint('ready', flush=True)\ntry:\n    {call}\n"
        "    print('finished', flush=True)\nexcept KeyboardInterrupt:\n    print('interrupted', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(after)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().strip()
        return line, time.perf_counter() - sent
    finally:
        proc.kill()
        proc.wait()


def test_ctrl_c_interrupts_a_long_call(tmp_path, bigger_gpt2):
    # Patching the residual stream at every layer and position of a 391-token prompt runs for
    # about 8 s here; SIGINT a second in must end it with KeyboardInterrupt at its next step.
    clean = " ".join(["When Mary and John went to the store, John gave a drink to Mary."] * 17)
    line, seconds = interrupt(
        tmp_path,
        f"m = glassbox.load({str(bigger_gpt2)!r})\nclean = {clean!r}",
        "glassbox.patch(m, clean, clean.replace('John gave', 'Mary gave'), ' Mary', ' John')",
        after=1.0,
    )
    assert line == "interrupted" and seconds < 5.0, (line, seconds)


def test_ctrl_c_interrupts_a_single_forward_pass(tmp_path, bigger_gpt2):
    # One pass over 64 rows of 512 tokens, no hooks and no steps of its own: about 5 s here.
    # The stop is seen at the pass's next hook point.
    line, seconds = interrupt(
        tmp_path,
        f"import numpy as np\nm = glassbox.load({str(bigger_gpt2)!r})\n"
        "tokens = np.random.default_rng(0).integers(0, 384, (64, 512))",
        "m.run_with_cache(tokens, names_filter='blocks.5.hook_resid_post', stop_at_layer=6)",
        after=1.0,
    )
    assert line == "interrupted" and seconds < 2.0, (line, seconds)


def test_ctrl_c_interrupts_generation_with_a_python_hook(tmp_path):
    # 100 steps of 50 ms: uninterrupted it would run 5 s more.
    line, seconds = interrupt(
        tmp_path,
        f"m = glassbox.load({str(GPT2)!r})\nslow = lambda a, h: time.sleep(0.05)",
        "m.generate('Hello', max_new_tokens=100, stop_at_eos=False, fwd_hooks=[('hook_embed', slow)])",
        after=0.5,
    )
    assert line == "interrupted" and seconds < 2.0, (line, seconds)
