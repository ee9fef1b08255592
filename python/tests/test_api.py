"""The package's surface: docstrings everywhere, stubs that match the extension module, and
arrays that reach NumPy and torch through DLPack without a copy."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import numpy as np
import pytest

import glassbox
from glassbox import _native
from conftest import PROMPT

PACKAGE = Path(glassbox.__file__).parent


def test_every_public_function_has_a_docstring():
    missing = []
    for name in glassbox.__all__:
        obj = getattr(glassbox, name)
        if callable(obj) and not (obj.__doc__ or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if callable(member) and not attr.startswith("_") and not (member.__doc__ or "").strip():
                    missing.append(f"{name}.{attr}")
    assert not missing, f"no docstring: {missing}"


def _stub_names(text: str, indent: str) -> set[str]:
    return set(re.findall(rf"^{indent}def (\w+)\(", text, re.M)) | set(
        re.findall(rf"^{indent}class (\w+)", text, re.M)
    )


def test_the_stubs_match_the_extension_module():
    stub = (PACKAGE / "_native.pyi").read_text()
    top = _stub_names(stub, "")
    real = {n for n in dir(_native) if not n.startswith("_")}
    assert top == real, f"stubs {sorted(top ^ real)} differ"
    # Each function's parameters, in order, as the module declares them.
    for name in top:
        obj = getattr(_native, name)
        if inspect.isclass(obj):
            continue
        declared = list(inspect.signature(obj).parameters)
        m = re.search(rf"^def {name}\((.*?)\) ->", stub, re.M | re.S)
        stubbed = [p.split(":")[0].split("=")[0].strip() for p in m.group(1).split(",") if p.strip()]
        assert stubbed == declared, f"{name}: stub {stubbed}, module {declared}"
    methods = set(re.findall(r"^    def (\w+)\(", stub.split("class Model:")[1], re.M))
    real = {m for m in dir(_native.Model) if not m.startswith("_") and callable(getattr(_native.Model, m))}
    assert methods == real, f"stubs {sorted(methods ^ real)} differ"
    assert {"forward", "generate", "parameter"} <= methods
    assert (PACKAGE / "py.typed").exists()


def test_arrays_reach_dlpack_consumers_without_a_copy(gpt2):
    _, cache = gpt2.run_with_cache(PROMPT, names_filter="blocks.0.hook_resid_post")
    a = cache["resid_post", 0]
    b = np.from_dlpack(a)
    assert np.shares_memory(a, b)


def test_torch_tensors_share_the_arrays_memory(gpt2):
    # The test command installs torch and requires this test (GLASSBOX_REQUIRE_TORCH=1); elsewhere
    # a missing torch skips it, said in pytest's summary (glassbox itself does not need torch).
    if os.environ.get("GLASSBOX_REQUIRE_TORCH") == "1":
        import torch
    else:
        torch = pytest.importorskip("torch", reason="torch is not installed here (glassbox does not need it)")
    import glassbox.torch as gt

    logits, cache = gt.run_with_cache(gpt2, PROMPT, names_filter="blocks.*.attn.hook_pattern")
    assert isinstance(logits, torch.Tensor) and logits.dtype == torch.float32
    pattern = cache["blocks.0.attn.hook_pattern"]
    np_logits = gpt2(PROMPT)
    assert torch.equal(logits, torch.from_numpy(np_logits))
    assert torch.equal(gt.forward(gpt2, PROMPT), logits)
    assert gt.forward(gpt2, PROMPT, return_type="loss") == gpt2(PROMPT, return_type="loss")
    _, np_cache = gpt2.run_with_cache(PROMPT, names_filter="blocks.0.attn.hook_pattern")
    arr = np_cache["pattern", 0]
    t = gt.tensor(arr)
    t[0, 0, 0, 0] = 42.0
    assert arr[0, 0, 0, 0] == 42.0  # one memory
    assert torch.allclose(pattern.sum(-1), torch.ones_like(pattern.sum(-1)), atol=1e-5)
