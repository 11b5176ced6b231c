"""A fixed CPU reference workload, to compare timings taken on machines of different speed.

Five forward and backward passes (fp32, batch 4 x 128 tokens) of a randomly initialised
model of SmolLM2-135M's shape (LlamaConfig: 30 layers, hidden 576, 9 heads, 3 KV heads,
vocabulary 49,152), on 2 threads, after one untimed warm-up pass. It needs no download.
On a 2-core CPU (2026-12-01) it takes the seconds docs/benchmarks.md states next to the small
default's time.
Usage: .venv/bin/python benchmarks/cpu_reference.py
"""

import time

PASSES = 5
BATCH, TOKENS, THREADS = 4, 128, 2


def reference_seconds() -> float:
    """Wall seconds of PASSES forward+backward passes of the 135M-shaped model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, config.vocab_size, (BATCH, TOKENS))

    def one_pass():
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()

    one_pass()
    start = time.perf_counter()
    for _ in range(PASSES):
        one_pass()
    return time.perf_counter() - start


if __name__ == "__main__":
    print(f"CPU reference workload ({PASSES} fwd+bwd passes, 135M shape, batch {BATCH}x{TOKENS},"
          f" {THREADS} threads): {reference_seconds():.1f} s")
