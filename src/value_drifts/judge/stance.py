"""Stance probabilities from a judge's first-token log-probabilities.

Every judge backend (an OpenAI-compatible API, vLLM, local transformers) returns the
top log-probabilities of the first answer token as ``{token: logprob}``; this module
turns that mapping into p(support), p(neutral), p(oppose) the same way for all of them
(paper §3: the judge's label log-probabilities, softmaxed).

A reading is a measurement only when the top list puts most of its probability on the
three labels. A reasoning judge (first token ``<think>``), a markdown judge (``**``) or a
broken server (placeholder log-probabilities) puts it elsewhere: such an answer is
*unreadable*, carries NaN probabilities (never a uniform guess) and is counted, so that
values leave it out and the judge job's gate can stop a judge that is mostly unreadable.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from value_drifts.core.config import schema_default
from value_drifts.core.stances import STANCES  # noqa: E402,F401  (re-read by this module)

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
# Servers fill slots they could not compute with a placeholder (OpenAI-style -9999,
# -inf, NaN: ollama#18579, openai-python#2257): such an entry means "absent".
PLACEHOLDER_LOGPROB = -9999.0
# An answer whose top list gives the labels less than this probability is unreadable
# (config judge.min_label_mass); a judge job fails when more than
# DEFAULT_MAX_UNREADABLE_SHARE of a checkpoint's answers are (judge.max_unreadable_share).
# Both defaults are the schema's (config/schema/config.schema.yaml).
DEFAULT_MIN_LABEL_MASS = schema_default("judge", "min_label_mass")
DEFAULT_MAX_UNREADABLE_SHARE = schema_default("judge", "max_unreadable_share")
OFF_LABEL_TOKENS_SHOWN = 5


def _byte_level_decoder() -> dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode`` (byte-level BPE, as in transformers'
    ``tokenization_gpt2``): printable bytes stand for themselves, the other 68 bytes for
    the code points from U+0100 on (``Ġ`` = space, ``Ċ`` = newline, ``ĉ`` = tab)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    shifted = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + i): b for i, b in enumerate(shifted)})
    return table


_BYTE_LEVEL = _byte_level_decoder()
_BYTE_LEVEL_REMAPPED = frozenset(ch for ch, b in _BYTE_LEVEL.items() if ord(ch) != b)
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SENTENCEPIECE_SPACE = "\u2581"  # ▁


def decoded_token(token: str) -> str:
    """The text a token in a tokenizer's raw piece form stands for.

    Some servers return vocabulary pieces instead of decoded text (vllm#19177):
    byte-level BPE (GPT-2, Llama-3, Qwen: ``Ġsupport`` = " support", ``Ċ`` = newline),
    SentencePiece (Llama-2, Gemma: ``▁support``) and byte-fallback tokens (``<0x20>``).
    Text that is already decoded comes back unchanged.
    """
    text = _BYTE_TOKEN.sub(lambda m: chr(int(m.group(1), 16)), token)
    text = text.replace(_SENTENCEPIECE_SPACE, " ")
    if any(ch in _BYTE_LEVEL_REMAPPED for ch in text):
        raw = bytes(_BYTE_LEVEL[ch] if ch in _BYTE_LEVEL else ord("?") for ch in text)
        text = raw.decode("utf-8", errors="replace")
    return text


def label_of_token(token: str) -> str | None:
    """Map one answer token to a stance label, ignoring case, spaces, punctuation and the
    raw piece forms of ``decoded_token``; None for any other token."""
    word = decoded_token(token).strip().strip(".,:;!\"'*`()[]").lower()
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


def is_measured(logprob: Any) -> bool:
    """False for a placeholder log-probability (≤ -9999, -inf, NaN, not a number)."""
    try:
        value = float(logprob)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and value > PLACEHOLDER_LOGPROB


@dataclass(frozen=True)
class StanceReading:
    """The stance distribution read from one judge answer, with what was missing.

    ``probabilities`` is (p_support, p_neutral, p_oppose), summing to 1, or three NaN when
    the answer is unreadable. ``label_mass`` is the probability the top list gives the
    three labels together (0 to 1). ``top_token`` is the answer's most likely first token
    as the backend returned it ("" when the list held no measured entry).
    """

    probabilities: tuple[float, float, float]
    missing_labels: tuple[str, ...]
    top_token: str
    top_is_label: bool
    label_mass: float
    readable: bool


def read_stance(
    top_logprobs: Mapping[str, float],
    floor: float = DEFAULT_FLOOR_LOGPROB,
    min_label_mass: float = DEFAULT_MIN_LABEL_MASS,
) -> StanceReading:
    """Softmax over the three labels' log-probabilities found among ``top_logprobs``.

    Several tokens can name the same label (" Support", "Ġsupport"); their probabilities
    add up. Placeholder entries (``is_measured`` false) are dropped first. A label with no
    token in the list gets ``floor`` and is reported as missing. The answer is unreadable,
    with NaN probabilities, when the labels' total probability is below
    ``min_label_mass`` (none at all included): e.g. ``{"<think>": -0.001, ...}``.
    """
    measured = {token: float(lp) for token, lp in top_logprobs.items() if is_measured(lp)}
    mass: dict[str, list[float]] = {label: [] for label in STANCES}
    for token, logprob in measured.items():
        label = label_of_token(token)
        if label is not None:
            mass[label].append(logprob)
    found = [label for label in STANCES if mass[label]]
    label_mass = min(1.0, sum(math.exp(v) for label in found for v in mass[label]))
    readable = bool(found) and label_mass >= min_label_mass
    if readable:
        label_logprobs = np.array(
            [_logsumexp(mass[label]) if mass[label] else floor for label in STANCES]
        )
        probabilities = tuple(float(p) for p in softmax(label_logprobs))
    else:
        probabilities = (math.nan,) * len(STANCES)
    top_token = max(measured, key=measured.__getitem__) if measured else ""
    return StanceReading(
        probabilities=probabilities,
        missing_labels=tuple(label for label in STANCES if not mass[label]),
        top_token=top_token,
        top_is_label=label_of_token(top_token) is not None,
        label_mass=label_mass,
        readable=readable,
    )


def judge_health(readings: Sequence[StanceReading]) -> dict[str, Any]:
    """How readable a set of judge answers is (one checkpoint's, or a run's).

    Returns answers, readable (count), readable_share, unreadable, mean_label_mass (mean
    over answers of the labels' probability in the top list), missing_label_share (share
    of answers with at least one label absent from the top list) and
    off_label_top_tokens: the most common first tokens that are no label, as
    ``[[token, count], ...]`` (at most OFF_LABEL_TOKENS_SHOWN). Shares are NaN for none.
    """
    n = len(readings)
    readable = sum(r.readable for r in readings)
    off_label = Counter(r.top_token for r in readings if not r.top_is_label)
    return {
        "answers": n,
        "readable": readable,
        "unreadable": n - readable,
        "readable_share": readable / n if n else math.nan,
        "mean_label_mass": float(np.mean([r.label_mass for r in readings])) if n else math.nan,
        "missing_label_share": (
            sum(bool(r.missing_labels) for r in readings) / n if n else math.nan
        ),
        "off_label_top_tokens": [
            [token, count] for token, count in off_label.most_common(OFF_LABEL_TOKENS_SHOWN)
        ],
    }


class UnreadableJudgeError(RuntimeError):
    """More of a checkpoint's judge answers are unreadable than judge.max_unreadable_share."""


def unreadable_problem(
    health: Mapping[str, Any], max_unreadable_share: float, where: str
) -> str | None:
    """The gate's message when ``health`` (from ``judge_health``) has more unreadable
    answers than ``max_unreadable_share`` allows, else None. ``where`` names the
    checkpoint; the message names the share and the most common off-label first tokens.
    """
    n, unreadable = health["answers"], health["unreadable"]
    if n == 0 or unreadable / n <= max_unreadable_share:
        return None
    tokens = ", ".join(f"`{token}` ({count} of {n})" for token, count in
                       health["off_label_top_tokens"])
    if tokens:
        cause = (f"most common off-label first tokens: {tokens}: this judge does not "
                 "answer with a label first")
    else:
        cause = (f"the labels are the first tokens but hold little probability "
                 f"(mean label mass {health['mean_label_mass']:.3f})")
    return (
        f"{where}: {unreadable} of {n} judge answers are unreadable ({unreadable / n:.0%}, "
        f"above judge.max_unreadable_share = {max_unreadable_share:.0%}); {cause}. Use a "
        "judge (or prompt) whose first answer token is the label; the judge cache keeps "
        "the raw answers, so a rerun after a reader fix sends nothing again."
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))
