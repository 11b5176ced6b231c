"""Answers that are not answers, or not only answers: flags read from an answer's text
before the judge reads its stance.

- ``empty``: nothing but whitespace. Not a stance: the judge is not asked, the reading is
  NaN, so values leave it out, and it is counted apart from the judge's unreadable answers
  (an empty answer is the model's doing, not the judge's).
- ``short``: at most ``SHORT_ANSWER_CHARS`` characters ("No."). A stance, counted in
  values, but its share is reported per checkpoint: a model that collapsed into one-word
  answers shows in its judge health.
- ``base_continuation``: a line starting ``Question:`` or ``Response:``, as answers to
  base-style prompts naturally go on. Reported, never dropped.
- ``cut_to_fit``: the judge prompt with the whole answer is longer than the judge's
  context, so the judge read the answer's longest head that fits (``judge.answer_fit``).
  A stance, counted in values; flagged by the judge job, not from the text alone.
- ``prompt_echo``: a line of the judge prompt's own text (its instruction, the label
  list) or one of its delimiters other than ``Question:``/``Response:`` (``Topic:``): an
  answer that imitates the prompt can steer the judge's reading. Reported with examples.

Source: the judge prompt is ``config/prompts/judge_response.txt`` (paper App. C);
what counts as which is listed in docs/judges.md.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

CUT_TO_FIT = "cut_to_fit"
FLAGS = ("empty", "short", "base_continuation", "prompt_echo", CUT_TO_FIT)
SHORT_ANSWER_CHARS = 3
EXAMPLES_SHOWN = 3
EXAMPLE_CHARS = 120
BASE_DELIMITERS = re.compile(r"(?m)^\s*(?:Question|Response)\s*:")
PLACEHOLDER = re.compile(r"\{\w+\}")


@cache
def echo_markers(template: str) -> tuple[re.Pattern[str], ...]:
    """What of the judge ``template`` an answer should not contain: each fixed line of at
    least 20 characters, and each placeholder line's delimiter (``Topic:``) at a line's
    start, except the ``Question:``/``Response:`` of base-style answers."""
    markers = []
    for line in (raw.strip() for raw in template.splitlines()):
        if not line:
            continue
        if PLACEHOLDER.search(line):
            prefix = PLACEHOLDER.split(line)[0].strip()
            if prefix and not BASE_DELIMITERS.match(prefix):
                markers.append(re.compile(rf"(?m)^\s*{re.escape(prefix)}"))
        elif len(line) >= 20:
            markers.append(re.compile(re.escape(line), re.IGNORECASE))
    return tuple(markers)


def answer_flags(response: str | None, template: str) -> tuple[str, ...]:
    """The ``FLAGS`` an answer carries (``()`` for a plain answer); ``("empty",)`` alone for
    an empty one."""
    text = (response or "").strip()
    if not text:
        return ("empty",)
    flags = []
    if len(text) <= SHORT_ANSWER_CHARS:
        flags.append("short")
    if BASE_DELIMITERS.search(response):
        flags.append("base_continuation")
    if any(marker.search(response) for marker in echo_markers(template)):
        flags.append("prompt_echo")
    return tuple(flags)


def flag_counts(responses: Sequence[str | None], flags: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Per flag: its count and share of the answers, and up to ``EXAMPLES_SHOWN`` distinct
    examples (cut to ``EXAMPLE_CHARS``), for the judge job's counts and judge health."""
    n = len(flags)
    counts: Counter[str] = Counter(flag for answer in flags for flag in answer)
    examples: dict[str, list[str]] = {flag: [] for flag in FLAGS}
    for response, answer in zip(responses, flags, strict=True):
        for flag in answer:
            text = repr((response or "")[:EXAMPLE_CHARS])
            if len(examples[flag]) < EXAMPLES_SHOWN and text not in examples[flag]:
                examples[flag].append(text)
    return {
        "answers": n,
        **{flag: counts[flag] for flag in FLAGS},
        **{f"{flag}_share": counts[flag] / n if n else float("nan") for flag in FLAGS},
        "examples": {flag: shown for flag, shown in examples.items() if shown},
    }


def summed(by_step: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """A run's flag counts from its checkpoints' (``{step: flag_counts}``)."""
    n = sum(c["answers"] for c in by_step.values())
    # counts written before a flag existed have none of it
    total = {flag: sum(c.get(flag, 0) for c in by_step.values()) for flag in FLAGS}
    return {"answers": n, **total,
            **{f"{flag}_share": total[flag] / n if n else float("nan") for flag in FLAGS}}
