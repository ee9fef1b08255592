"""Published configs of the benchmark models (weights are random, generated here, never committed)."""

GPT2_SMALL = dict(  # openai-community/gpt2
    architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=768,
    n_layer=12, n_head=12, n_inner=None, activation_function="gelu_new", layer_norm_epsilon=1e-5,
    tie_word_embeddings=True)

QWEN25_05B = dict(  # Qwen/Qwen2.5-0.5B
    architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=151936, hidden_size=896,
    intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
    max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0, hidden_act="silu",
    tie_word_embeddings=True, use_sliding_window=False, sliding_window=None)

MODELS = {"gpt2-small": GPT2_SMALL, "qwen2.5-0.5b": QWEN25_05B}


def token_ids(n, vocab, row=0):
    """Prompt token ids of batch row `row` (row 0 is the single-sequence prompt); the same
    formula as crates/glassbox-models/examples/forward_bench.rs."""
    return [(i * 7919 + 13 + 31 * row) % vocab for i in range(n)]
