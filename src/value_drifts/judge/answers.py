"""What every judge backend shares: top lists, run counts, and cache-first ordering.

Pure Python (no torch, no openai, no vllm), so each backend's environment can import it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def logaddexp(a: float, b: float) -> float:
    top = max(a, b)
    if top == -math.inf:
        return top
    return top + math.log(math.exp(a - top) + math.exp(b - top))


def merged_top(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """``{token text: logprob}`` from (text, logprob) pairs.

    Distinct token ids can decode to the same text (byte-level pieces); their
    probabilities add up rather than one silently replacing the other. Placeholder
    log-probabilities (-9999, -inf, NaN: ``stance.is_measured``) are kept as they came
    (the cache stores raw answers) but never added: two -9999 would make a -9998.3.
    """
    from value_drifts.judge.stance import is_measured

    top: dict[str, float] = {}
    for token, logprob in pairs:
        if token not in top:
            top[token] = logprob
        elif is_measured(top[token]) and is_measured(logprob):
            top[token] = logaddexp(top[token], logprob)
        elif is_measured(logprob):
            top[token] = logprob
    return top


def distinct_missing(
    keys: Sequence[str], prompts: Sequence[str], answered: Mapping[str, Any]
) -> dict[str, str]:
    """Key -> prompt for each distinct request not yet answered, in first-use order.

    Sending in prompt order lets the in-order prefix, and so the progress bar, advance
    early; a prompt repeated within a run is sent once.
    """
    missing: dict[str, str] = {}
    for key, prompt in zip(keys, prompts, strict=True):
        if key not in answered and key not in missing:
            missing[key] = prompt
    return missing


def length_sorted_windows(
    requests: Sequence[tuple[str, str]], window: int
) -> list[tuple[str, str]]:
    """``(key, prompt)`` requests, longest prompt first within each run of ``window``.

    A local model pads a batch to its longest prompt; batching prompts of similar length
    wastes less. Sorting window by window, not all at once, keeps the in-order prefix (and
    so the progress bar) advancing; the sort is stable, so the batches are reproducible.
    """
    return [
        request
        for start in range(0, len(requests), window)
        for request in sorted(requests[start : start + window], key=lambda kv: -len(kv[1]))
    ]


def ready_prefix_end(keys: Sequence[str], answered: Mapping[str, Any], start: int) -> int:
    """Index just past the longest run of answered keys from ``start``."""
    end = start
    while end < len(keys) and keys[end] in answered:
        end += 1
    return end
