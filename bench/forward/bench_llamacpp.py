#!/usr/bin/env python3
"""Greedy decoding with llama.cpp (llama-cpp-python, built from source, CPU only) on the same
random-weight checkpoints as the rest of bench/forward, converted to GGUF.

usage: bench_llamacpp.py convert MODEL_DIR (f32|f16|q8_0|q4_0|q4_k_m)
           writes MODEL_DIR/gguf/model-<type>.gguf (once) with llama.cpp's convert_hf_to_gguf.py
           (quantized types: the F32 file through llama.cpp's own quantizer)
       bench_llamacpp.py MODEL_DIR NAME (f32|f16|q8_0|q4_0|q4_k_m) N_TOKENS REPS NEW_TOKENS [THREADS=all CPUs]
           prints one JSON line: greedy decode tokens/s, measured as on the glassbox and
           transformers sides: NEW_TOKENS − 1 steps over the time from the first new token (the
           end of the prefill) to the last, within one generation; median of REPS after a
           warm-up; prompt = row 0 of models.token_ids.

The converter is the one vendored in llama-cpp-python's source distribution (its
`vendor/llama.cpp/convert_hf_to_gguf.py`, `conversion/` and `gguf-py/`); it is taken from the
sdist of the installed llama-cpp-python version into bench/out/llama.cpp-convert/ (pip download,
no build). The checkpoints have no tokenizer (token ids are given), but a GGUF must carry a
vocabulary: conversion uses the small byte-level BPE tokenizer of tests/fixtures/parity/gpt2,
padded by the converter to the config's vocab_size with [PAD<i>] tokens, and declares its
pre-tokenizer "gpt-2" (the converter otherwise refuses a tokenizer whose hash it does not
know). The vocabulary only maps ids to strings; the weights and the arithmetic are unchanged."""
import glob, json, os, resource, shutil, statistics, subprocess, sys, tarfile, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CONVERT_DIR = os.path.join(ROOT, "bench", "out", "llama.cpp-convert")
TOOLS_SRC = os.path.join(ROOT, "bench", "out", "llama.cpp-src")
TOOLS_BUILD = os.path.join(ROOT, "bench", "out", "llama.cpp-build")
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "parity", "gpt2", "tokenizer.json")


def converter():
    """The directory holding convert_hf_to_gguf.py (+ conversion/, gguf-py/) from the sdist."""
    script = os.path.join(CONVERT_DIR, "convert_hf_to_gguf.py")
    if os.path.exists(script):
        return CONVERT_DIR
    from importlib.metadata import version
    ver = version("llama_cpp_python")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation",
                        "--no-binary", "llama-cpp-python", f"llama-cpp-python=={ver}", "-d", tmp], check=True)
        sdist = glob.glob(os.path.join(tmp, "llama_cpp_python-*.tar.gz"))[0]
        prefix = f"{os.path.basename(sdist)[:-len('.tar.gz')]}/vendor/llama.cpp/"
        wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
        os.makedirs(CONVERT_DIR + ".tmp", exist_ok=True)
        with tarfile.open(sdist) as tar:
            for m in tar.getmembers():
                if m.name.startswith(prefix) and m.name[len(prefix):].startswith(wanted) and (m.isfile() or m.isdir()):
                    m.name = m.name[len(prefix):]
                    tar.extract(m, CONVERT_DIR + ".tmp", filter="data")
        if not os.path.exists(os.path.join(CONVERT_DIR + ".tmp", "convert_hf_to_gguf.py")):
            raise SystemExit(f"{sdist}: no vendor/llama.cpp/convert_hf_to_gguf.py")
        os.replace(CONVERT_DIR + ".tmp", CONVERT_DIR)
    return CONVERT_DIR


def _sdist():
    """Downloads the installed llama-cpp-python version's source distribution into a temp dir."""
    from importlib.metadata import version
    tmp = tempfile.mkdtemp()
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation",
                    "--no-binary", "llama-cpp-python", f"llama-cpp-python=={version('llama_cpp_python')}", "-d", tmp],
                   check=True)
    return tmp, glob.glob(os.path.join(tmp, "llama_cpp_python-*.tar.gz"))[0]


def llama_tools():
    """The directory holding llama.cpp's own `llama-imatrix` and `llama-quantize`, built (once, CPU,
    Release) from the llama.cpp vendored in the installed llama-cpp-python's sdist, so that the
    tools are the same llama.cpp as the Python binding."""
    bindir = os.path.join(TOOLS_BUILD, "bin")
    if all(os.path.exists(os.path.join(bindir, t)) for t in ("llama-imatrix", "llama-quantize")):
        return bindir
    if not os.path.exists(os.path.join(TOOLS_SRC, "CMakeLists.txt")):
        tmp, sdist = _sdist()
        prefix = f"{os.path.basename(sdist)[:-len('.tar.gz')]}/vendor/llama.cpp/"
        with tarfile.open(sdist) as tar:
            for m in tar.getmembers():
                if m.name.startswith(prefix) and (m.isfile() or m.isdir()):
                    m.name = m.name[len(prefix):]
                    if m.name:
                        tar.extract(m, TOOLS_SRC + ".tmp", filter="data")
        shutil.rmtree(tmp, ignore_errors=True)
        os.replace(TOOLS_SRC + ".tmp", TOOLS_SRC)
    cmake = shutil.which("cmake") or os.path.join(os.path.dirname(sys.executable), "cmake")
    subprocess.run([cmake, "-S", TOOLS_SRC, "-B", TOOLS_BUILD, "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([cmake, "--build", TOOLS_BUILD, "-j", str(os.cpu_count() or 2), "--target", "llama-imatrix",
                    "llama-quantize"], check=True, stdout=subprocess.DEVNULL)
    return bindir


# Runs convert_hf_to_gguf.main() with the pre-tokenizer check answered "gpt-2" (see above).
WRAPPER = """
import sys
sys.path.insert(0, {conv!r})
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
import convert_hf_to_gguf
sys.argv = ["convert_hf_to_gguf.py", {src!r}, "--outtype", {outtype!r}, "--outfile", {out!r}]
convert_hf_to_gguf.main()
"""


# llama.cpp's file types for the quantized outputs, made from the F32 file by its own quantizer.
QUANTIZED = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15}


def quantize(src, out, ftype):
    import ctypes
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    if llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"llama_model_quantize {src} -> {out} failed")


def convert(model_dir, outtype):
    out = os.path.abspath(os.path.join(model_dir, "gguf", f"model-{outtype}.gguf"))
    if os.path.exists(out):
        return out
    if outtype in QUANTIZED:
        quantize(convert(model_dir, "f32"), out + ".tmp", QUANTIZED[outtype])
        os.replace(out + ".tmp", out)
        return out
    conv = converter()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with tempfile.TemporaryDirectory() as src:
        os.symlink(os.path.abspath(os.path.join(model_dir, "model.safetensors")), os.path.join(src, "model.safetensors"))
        config = json.load(open(os.path.join(model_dir, "config.json")))
        if config.get("model_type") == "gpt2":
            config.setdefault("n_ctx", config["n_positions"])  # the converter reads n_ctx (as in the Hub's gpt2 config)
        json.dump(config, open(os.path.join(src, "config.json"), "w"))
        shutil.copy(TOKENIZER, os.path.join(src, "tokenizer.json"))
        code = WRAPPER.format(conv=conv, src=src, outtype=outtype, out=out + ".tmp")
        subprocess.run([sys.executable, "-c", code], check=True, stdout=sys.stderr)
    os.replace(out + ".tmp", out)
    return out


def bench(model_dir, name, outtype, n, reps, new_tokens, threads):
    import numpy as np
    import llama_cpp
    from models import token_ids

    path = convert(model_dir, outtype)
    vocab = json.load(open(os.path.join(model_dir, "config.json")))["vocab_size"]
    prompt = token_ids(n, vocab)
    llm = llama_cpp.Llama(model_path=path, n_ctx=n + new_tokens + 16, n_batch=max(n, 512), n_ubatch=max(n, 512),
                          n_threads=threads, n_threads_batch=threads, logits_all=False, verbose=False)

    n_vocab = llm.n_vocab()
    # Llama.eval keeps no logits unless logits_all; read the last token's row from the context.
    last_logits = lambda: np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))

    def gen(k):
        # Prefill, then k greedy tokens: argmax of the last logits, fed back one at a time
        # (k − 1 single-token forward passes, as transformers' and glassbox's generate).
        # Returns the tokens and the seconds from the first new token to the last.
        llm.reset()
        llm.eval(prompt)
        out = []
        for step in range(k):
            tok = int(np.argmax(last_logits()))
            out.append(tok)
            if step == 0:
                first = time.perf_counter()
            if step + 1 < k:
                llm.eval([tok])
        return out, time.perf_counter() - first

    times, generated = [], []
    for rep in range(reps + 1):
        generated, seconds = gen(new_tokens)
        if rep > 0:
            times.append((new_tokens - 1) / seconds)
    print(json.dumps({"impl": "llamacpp", "mode": f"llamacpp_decode_{outtype}", "tokens": n, "batch": 1,
                      "value": statistics.median(times), "unit": "tok/s",
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "activations_mb": 0.0,
                      "threads": threads, "llama_cpp_python": llama_cpp.__version__,
                      "gguf_mb": os.path.getsize(path) / 2**20, "generated": generated[:8]}))


def main():
    a = sys.argv[1:]
    if a and a[0] == "convert" and len(a) == 3:
        print(convert(a[1], a[2]))
    elif len(a) in (6, 7) and a[2] in ("f32", "f16", *QUANTIZED):
        threads = int(a[6]) if len(a) == 7 else os.cpu_count()
        bench(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]), threads)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
