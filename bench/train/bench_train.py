"""Training throughput: glassbox vs PyTorch (Hugging Face transformers) on the same config.

Trains the reference recipe's architecture (its `[model]` table, as config.json) with the
same batch, sequence length, AdamW settings and thread count, for the same number of steps,
in PyTorch and with `glassbox train`, one after the other in one run, and prints tokens/s
for each. The PyTorch side trains on random token ids of the same shape (the data does not
change the speed); glassbox trains on its own corpus. Not part of CI.

    bench/.venv/bin/python bench/train/bench_train.py [--steps 200] [--release | --bin PATH] [--json OUT]

`--bin target/release/glassbox` times an already built binary (no cargo involved);
bench/train/run.sh does that after one release build.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def torch_tokens_per_s(recipe, steps):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    threads = recipe["threads"]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = dict(recipe["model"])
    cfg.pop("architectures", None)
    model = LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation="eager"))
    o = recipe["optimizer"]
    opt = torch.optim.AdamW(model.parameters(), lr=o["lr"], betas=(o.get("beta1", 0.9), o.get("beta2", 0.95)),
                            eps=o.get("eps", 1e-8), weight_decay=o.get("weight_decay", 0.0))
    batch, seq = recipe["training"]["batch_size"], recipe["data"]["seq_len"]
    vocab = cfg["vocab_size"]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (steps, batch, seq + 1), generator=g)
    start = time.perf_counter()
    for s in range(steps):
        x, y = ids[s, :, :-1], ids[s, :, 1:]
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - start
    return steps * batch * seq / elapsed, elapsed, torch.__version__


def glassbox_tokens_per_s(recipe_text, steps, release, binary=None):
    text = re.sub(r"(?m)^steps = \d+", f"steps = {steps}", recipe_text)
    text = re.sub(r"(?m)^checkpoints = \[[^\]]*\]", "checkpoints = []", text)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = os.path.join(tmp, "recipe.toml")
        with open(recipe, "w") as f:
            f.write(text)
        profile = ["--release"] if release else []
        cmd = ["cargo", "run", "-q", *profile, "-p", "glassbox-cli", "--"] if binary is None else [binary]
        cmd += ["train", recipe, "--out", os.path.join(tmp, "out")]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        run = json.load(open(os.path.join(tmp, "out", "training_run.json")))
    return run["tokens_per_s"], run["seconds"], out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default=os.path.join(ROOT, "recipes", "reference.toml"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--release", action="store_true", help="time glassbox's release build")
    ap.add_argument("--bin", help="time this glassbox binary (e.g. target/release/glassbox) instead of `cargo run`")
    ap.add_argument("--json", help="append one JSON line with both results to this file")
    args = ap.parse_args()
    recipe_text = open(args.recipe).read()
    recipe = tomllib.loads(recipe_text)
    print(f"config: {args.recipe}, {args.steps} steps, batch {recipe['training']['batch_size']} x "
          f"{recipe['data']['seq_len']} tokens, {recipe['threads']} thread(s), {os.cpu_count()} CPUs")
    tps, secs, version = torch_tokens_per_s(recipe, args.steps)
    print(f"pytorch {version}: {tps:,.0f} tokens/s ({secs:.1f} s)")
    binary = os.path.abspath(args.bin) if args.bin else None
    tps_g, secs_g, _ = glassbox_tokens_per_s(recipe_text, args.steps, args.release, binary)
    build = args.bin if args.bin else ('release' if args.release else 'dev') + " build"
    print(f"glassbox ({build}): {tps_g:,.0f} tokens/s ({secs_g:.1f} s)")
    print(f"ratio glassbox/pytorch: {tps_g / tps:.2f}")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"recipe": os.path.relpath(args.recipe, ROOT), "steps": args.steps,
                                "threads": recipe["threads"], "batch": recipe["training"]["batch_size"],
                                "seq_len": recipe["data"]["seq_len"], "pytorch": version,
                                "pytorch_tokens_per_s": tps, "pytorch_s": secs,
                                "glassbox": build, "glassbox_tokens_per_s": tps_g, "glassbox_s": secs_g,
                                "ratio_glassbox_over_pytorch": tps_g / tps}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
