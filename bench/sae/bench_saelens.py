#!/usr/bin/env python3
"""SAELens's training step (its TrainingSAE classes, torch Adam, clipping, as SAETrainer runs
them) on the same activations and hyperparameters as glassbox's `sae_train_speed`; prints one
JSON line (tokens/s over the timed steps, the first is warm-up).
usage: bench_saelens.py ACTS.safetensors ARCH D_SAE K BATCH STEPS LR"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
from safetensors.torch import load_file
from sae_lens import (StandardTrainingSAE, StandardTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig,
                      BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig)
from sae_lens.config import SAETrainerConfig, LoggingConfig
from sae_lens.training.sae_trainer import SAETrainer

path, arch, d_sae, k, batch, steps, lr = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7]), float(sys.argv[7])
acts = load_file(path)["acts"]
rows, d_in = acts.shape
cls, cfg = {
    "standard": (StandardTrainingSAE, StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=1.0)),
    "topk": (TopKTrainingSAE, TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k)),
    "batchtopk": (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k)),
    "jumprelu": (JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae)),
}[arch]
torch.manual_seed(42)
sae = cls(cfg)

def batches():
    s = 0
    while True:
        i = (s * batch) % (rows - batch + 1)
        yield acts[i:i + batch]
        s += 1

trainer = SAETrainer(SAETrainerConfig(total_training_samples=batch * (steps + 1), train_batch_size_samples=batch, lr=lr, lr_end=lr / 10,
                                      logger=LoggingConfig(log_to_wandb=False)), sae, batches())
data = batches()
out = trainer.step(next(data))
start = time.perf_counter()
for _ in range(steps):
    out = trainer.step(next(data))
secs = time.perf_counter() - start
print(json.dumps({"tool": "saelens", "tokens_per_s": round(steps * batch / secs, 1), "seconds": round(secs, 3),
                  "mse_loss": float(out.losses["mse_loss"]), "l0": float((out.feature_acts != 0).float().sum(-1).mean()),
                  "torch_threads": torch.get_num_threads()}))
