"""Shared by the Python package's tests: the repository's fixtures and the CLI to compare with.

Every comparison runs the CLI (`GLASSBOX_BIN`, else the workspace's debug or release build) on
the same fixture with the same request: the Python package must give what the Rust library
gives there, at 1e-6."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import glassbox

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
GPT2 = FIXTURES / "parity" / "gpt2"
LLAMA = FIXTURES / "parity" / "llama"
REFERENCE = ROOT / "models" / "reference"
GPT2_GGUF_Q8 = FIXTURES / "llamacpp" / "gpt2" / "model-Q8_0.gguf"
OLMOE_GGUF = FIXTURES / "llamacpp" / "olmoe" / "model-Q8_0.gguf"
GPT2_PEFT = FIXTURES / "peft" / "gpt2-peft"
SAE = FIXTURES / "saelens" / "jumprelu"
PROMPT = "When Mary and John went to the store, John gave a drink to"


def cli_path() -> Path:
    if os.environ.get("GLASSBOX_BIN"):
        return Path(os.environ["GLASSBOX_BIN"])
    for profile in ("debug", "release"):
        p = ROOT / "target" / profile / "glassbox"
        if p.exists():
            return p
    raise RuntimeError("no glassbox binary: build the workspace (cargo build) or set GLASSBOX_BIN")


def cli(*args: str) -> str:
    """The CLI's stdout; a failure is the test's."""
    out = subprocess.run(
        [str(cli_path()), *map(str, args)], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise AssertionError(f"glassbox {' '.join(map(str, args))} failed: {out.stderr}")
    return out.stdout


def cli_json(*args: str):
    return json.loads(cli(*args))


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file as arrays (the format is 8 bytes of header length, a JSON header,
    then the data)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    kinds = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "U32": np.uint32, "F64": np.float64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=kinds[info["dtype"]]).reshape(info["shape"])
    return out


def close(a, b, tol=1e-6):
    """Equal within `tol`, relative to the values' scale (1e-6 of the largest magnitude, at least
    1e-6 absolute)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shapes {a.shape} vs {b.shape}"
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    assert diff <= tol * scale, f"max |Δ| {diff} > {tol * scale}"


def same_document(a, b, tol=1e-6, path="$"):
    """Two JSON documents equal, numbers within `tol` (relative)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} vs {sorted(b) if isinstance(b, dict) else b}"
        for k in a:
            same_document(a[k], b[k], tol, f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            same_document(x, y, tol, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(b, (int, float)) and abs(a - b) <= tol * max(1.0, abs(b)), f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


@pytest.fixture(scope="session")
def gpt2():
    return glassbox.load(GPT2)


@pytest.fixture(scope="session")
def llama():
    return glassbox.load(LLAMA)


@pytest.fixture(scope="session")
def reference():
    return glassbox.load(REFERENCE)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Writes float32 arrays as a safetensors file."""
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


@pytest.fixture(scope="session")
def bigger_gpt2(tmp_path_factory) -> Path:
    """A GPT-2 with random weights large enough that a patching sweep runs for a minute: the
    parity fixture's config and tokenizer, 6 layers of width 128, 512 positions."""
    out = tmp_path_factory.mktemp("bigger-gpt2")
    config = json.loads((GPT2 / "config.json").read_text())
    config.update(n_layer=6, n_embd=128, n_head=4, n_positions=512, n_ctx=512)
    (out / "config.json").write_text(json.dumps(config))
    (out / "tokenizer.json").write_bytes((GPT2 / "tokenizer.json").read_bytes())
    rng = np.random.default_rng(0)
    d, v = 128, config["vocab_size"]
    w = lambda *shape: rng.normal(0, 0.02, shape).astype(np.float32)  # noqa: E731
    t = {"transformer.wte.weight": w(v, d), "transformer.wpe.weight": w(512, d),
         "transformer.ln_f.weight": np.ones(d), "transformer.ln_f.bias": np.zeros(d)}
    for i in range(6):
        p = f"transformer.h.{i}."
        t.update({
            p + "ln_1.weight": np.ones(d), p + "ln_1.bias": np.zeros(d),
            p + "ln_2.weight": np.ones(d), p + "ln_2.bias": np.zeros(d),
            p + "attn.c_attn.weight": w(d, 3 * d), p + "attn.c_attn.bias": np.zeros(3 * d),
            p + "attn.c_proj.weight": w(d, d), p + "attn.c_proj.bias": np.zeros(d),
            p + "mlp.c_fc.weight": w(d, 4 * d), p + "mlp.c_fc.bias": np.zeros(4 * d),
            p + "mlp.c_proj.weight": w(4 * d, d), p + "mlp.c_proj.bias": np.zeros(d),
        })
    write_safetensors(out / "model.safetensors", t)
    return out
