#!/usr/bin/env python3
"""One reference measurement per process (so peak RSS is that measurement's own).
usage: bench_ref.py MODEL_DIR NAME (hf_logits|hf_decode|tl_cache|tl_logits) N_TOKENS REPS [NEW_TOKENS] [BATCH]
BATCH rows of N_TOKENS each (row b: `(i·7919 + 13 + 31·b) mod vocab`, as forward_bench.rs);
decoding always runs one row."""
import json, resource, statistics, sys, time
import torch
from models import token_ids

model_dir, name, mode, n, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
new_tokens = int(sys.argv[6]) if len(sys.argv) > 6 else 32
batch = int(sys.argv[7]) if len(sys.argv) > 7 else 1
torch.set_grad_enabled(False)
import transformers as tf
model = tf.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager").eval()
vocab = model.config.vocab_size
if mode.startswith("tl"):
    # TransformerLens 4 wraps the Hugging Face model (same weights) in its hook bridge; its
    # tokenizer is not used (token ids are given), any tokenizer.json satisfies the constructor.
    from transformer_lens.model_bridge import TransformerBridge
    here = __import__("os").path.dirname(__import__("os").path.abspath(__file__))
    tok = tf.PreTrainedTokenizerFast(tokenizer_file=f"{here}/../../tests/fixtures/parity/gpt2/tokenizer.json")
    model = TransformerBridge.boot_transformers(model_dir, hf_model=model, tokenizer=tok)
ids = torch.tensor([token_ids(n, vocab, b) for b in range(batch)])
if mode == "hf_decode":
    ids = ids[:1]
times, act_mb = [], 0.0
for rep in range(reps + 1):
    t = time.perf_counter()
    if mode == "hf_logits":
        model(input_ids=ids, use_cache=False)
    elif mode == "tl_logits":
        model(ids)
    elif mode == "tl_cache":
        _, cache = model.run_with_cache(ids)
        act_mb = sum(v.numel() * v.element_size() for v in cache.values()) / 1048576
        del cache
    elif mode == "hf_decode":
        # As on the glassbox side: the NEW_TOKENS − 1 steps from the first new token (the end
        # of the prefill) to the last, timed by a streamer, which generate hands the prompt
        # first and then each new token as it is chosen.
        stamps = []
        class Stamps:
            def put(self, value):
                stamps.append(time.perf_counter())
            def end(self):
                pass
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, streamer=Stamps())
        first, last = stamps[1], stamps[-1]
        times.append((new_tokens - 1) / (last - first))
        continue
    if rep > 0:
        times.append((time.perf_counter() - t) * 1000)
if mode == "hf_decode":
    times = times[1:]
print(json.dumps({"impl": mode.split("_")[0], "mode": mode, "tokens": n, "batch": int(ids.shape[0]), "value": statistics.median(times),
                  "unit": "tok/s" if mode == "hf_decode" else "ms",
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "activations_mb": act_mb}))
