#!/usr/bin/env python3
"""Writes random-weight Hub checkpoints (config.json + model.safetensors, float32) with the
published configs of GPT-2 small and Qwen2.5-0.5B, and the same weights stored in float16
(NAME-f16/, for decoding with half-precision weights).  usage: make_checkpoints.py OUTDIR"""
import os, shutil, sys
import torch
from safetensors.torch import load_file, save_file
import transformers as tf
from models import MODELS

out = sys.argv[1]
torch.manual_seed(0)
for name, cfg in MODELS.items():
    d = os.path.join(out, name)
    if os.path.exists(os.path.join(d, "model.safetensors")):
        continue
    kw = {k: v for k, v in cfg.items() if k not in ("architectures", "model_type")}
    config = tf.AutoConfig.for_model(cfg["model_type"], **kw)
    config.architectures = cfg["architectures"]
    model = tf.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    model.save_pretrained(d, safe_serialization=True)
    print(name, sum(p.numel() for p in model.parameters()), "parameters")
for name in MODELS:
    d, half = os.path.join(out, name), os.path.join(out, name + "-f16")
    if os.path.exists(os.path.join(half, "model.safetensors")):
        continue
    os.makedirs(half, exist_ok=True)
    shutil.copy(os.path.join(d, "config.json"), half)
    tensors = load_file(os.path.join(d, "model.safetensors"))
    save_file({k: v.to(torch.float16).contiguous() for k, v in tensors.items()},
              os.path.join(half, "model.safetensors"), metadata={"format": "pt"})
