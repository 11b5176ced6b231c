"""Stance probabilities from a judge's first-token log-probabilities.

Every judge backend (an OpenAI-compatible API, vLLM, local transformers) returns the
top log-probabilities of the first answer token as ``{token: logprob}``; this module
turns that mapping into p(support), p(neutral), p(oppose) the same way for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

STANCES: tuple[str, ...] = ("support", "neutral", "oppose")

# Whole-word variants a judge may answer with; first tokens of multi-token labels are
# matched as prefixes (at least MIN_PREFIX characters) in ``label_of_token``.
LABEL_VARIANTS: dict[str, frozenset[str]] = {
    "support": frozenset({"support", "supports", "supporting", "supportive", "supported"}),
    "neutral": frozenset({"neutral", "neutrality", "neither"}),
    "oppose": frozenset({"oppose", "opposes", "opposing", "opposed", "opposition"}),
}
MIN_PREFIX = 2
# Log-probability given to a label absent from top_logprobs: below anything a 20-wide
# top list returns in practice, so it reads as "very unlikely", not "impossible".
DEFAULT_FLOOR_LOGPROB = -20.0


def label_of_token(token: str) -> str | None:
    """Map one answer token to a stance label, ignoring case, spaces and punctuation."""
    word = token.strip().strip(".,:;!\"'*`()[]").lower()
    if not word:
        return None
    for label, variants in LABEL_VARIANTS.items():
        if word in variants:
            return label
    if len(word) >= MIN_PREFIX:
        matches = [label for label in STANCES if label.startswith(word)]
        if len(matches) == 1:
            return matches[0]
    return None


@dataclass(frozen=True)
class StanceReading:
    """The stance distribution read from one judge answer, with what was missing."""

    probabilities: tuple[float, float, float]
    missing_labels: tuple[str, ...]
    top_token: str
    top_is_label: bool


def read_stance(
    top_logprobs: Mapping[str, float], floor: float = DEFAULT_FLOOR_LOGPROB
) -> StanceReading:
    """Softmax over the three labels' log-probabilities found among ``top_logprobs``.

    Several tokens can name the same label (" Support", "support"); their probabilities
    add up. A label with no token in the list gets ``floor`` and is reported as missing.
    """
    if not top_logprobs:
        raise ValueError("judge answer has no top_logprobs")
    mass: dict[str, list[float]] = {label: [] for label in STANCES}
    for token, logprob in top_logprobs.items():
        label = label_of_token(token)
        if label is not None:
            mass[label].append(float(logprob))
    label_logprobs = np.array(
        [_logsumexp(mass[label]) if mass[label] else floor for label in STANCES]
    )
    top_token = max(top_logprobs, key=top_logprobs.__getitem__)
    return StanceReading(
        probabilities=tuple(float(p) for p in softmax(label_logprobs)),
        missing_labels=tuple(label for label in STANCES if not mass[label]),
        top_token=top_token,
        top_is_label=label_of_token(top_token) is not None,
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))
