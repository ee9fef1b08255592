#!/usr/bin/env python3
"""SAELens's own pipeline (LanguageModelSAETrainingRunner: activations generated from the
model as it trains, mixing buffer, TopK SAE) on a local GPT-2 checkpoint and pretokenized
rows; prints its wall time as JSON.
usage: pipeline_saelens.py MODEL_DIR TOKENS.safetensors HOOK BATCH D_SAE K TOKENS"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
import transformers as tf
from datasets import Dataset
from safetensors.torch import load_file
from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, TopKTrainingSAEConfig
from sae_lens.config import LoggingConfig
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

model_dir, tok_path, hook, batch, d_sae, k, tokens = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:8])
start = time.perf_counter()
hf = tf.GPT2LMHeadModel.from_pretrained(model_dir).eval()
c = hf.config
cfg = HookedTransformerConfig(n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, d_head=c.n_embd // c.n_head,
                              n_heads=c.n_head, d_mlp=4 * c.n_embd, d_vocab=c.vocab_size, act_fn="gelu_new",
                              normalization_type="LN", default_prepend_bos=False)
model = HookedTransformer(cfg)
model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                  center_unembed=False, fold_value_biases=False)
rows = load_file(tok_path)["tokens"]
dataset = Dataset.from_dict({"input_ids": rows.tolist()})
runner_cfg = LanguageModelSAERunnerConfig(
    sae=TopKTrainingSAEConfig(d_in=c.n_embd, d_sae=d_sae, k=k),
    model_name="gpt2", hook_name=hook, dataset_path="local", is_dataset_tokenized=True, streaming=False,
    context_size=rows.shape[1], training_tokens=tokens, train_batch_size_tokens=batch, store_batch_size_prompts=8,
    n_batches_in_buffer=64, prepend_bos=False, lr=3e-4, device="cpu", seed=42,
    logger=LoggingConfig(log_to_wandb=False), n_checkpoints=0, output_path=None)
LanguageModelSAETrainingRunner(runner_cfg, override_dataset=dataset, override_model=model).run()
print(json.dumps({"tool": "saelens", "seconds": time.perf_counter() - start, "torch_threads": torch.get_num_threads()}))
