"""A second (reference) judge: which stored answers it re-reads, and what its jobs record.

``judge.reference`` is a judge section of its own (``core.config.reference_judge`` builds
it: prompt and cache default to the main judge's) plus ``answers_per_checkpoint``. Its
jobs (rule ``reference_judge``) read stored answers through ``judge.run.judge_generations``
and the same cache, never generating again; docs/judges.md, "A second judge".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import polars as pl

from value_drifts.core.config import reference_judge, section_with_defaults
from value_drifts.judge.run import judge_output_settings

# Key of judge.reference: answers re-read per checkpoint (absent: all).
SAMPLE_KEY = "answers_per_checkpoint"


def answers_per_checkpoint(judge: Mapping[str, Any]) -> int | None:
    """``judge.reference.answers_per_checkpoint``: None for every answer."""
    return (judge.get("reference") or {}).get(SAMPLE_KEY)


def _order_key(seed: int, question_id: Any, sample: Any) -> str:
    return hashlib.sha256(f"{seed}:{question_id}:{sample}".encode()).hexdigest()


def sample_answers(generations: pl.DataFrame, n: int | None, seed: int) -> pl.DataFrame:
    """The answers a reference judge re-reads at one checkpoint: all when ``n`` is None,
    else ``n`` rows (all when there are fewer), kept in their stored order.

    The draw is by a seeded hash of (``question_id``, ``sample``), not of the row's place,
    so every checkpoint of a study gives the same (question, sample) pairs: drift on the
    sample compares the same questions at every step. Categories take turns (each
    category's answers in hash order, one from each in turn) so a small sample spans them.
    """
    if n is None or generations.height <= n:
        return generations
    keys = [
        _order_key(seed, q, s)
        for q, s in zip(generations["question_id"], generations["sample"], strict=True)
    ]
    ranked = (
        generations.with_row_index("_row")
        .with_columns(pl.Series("_key", keys))
        .with_columns(pl.col("_key").rank("ordinal").over("category").alias("_turn"))
        .sort("_turn", "_key")
        .head(n)
        .sort("_row")
    )
    return ranked.drop("_row", "_key", "_turn")


def reference_output_settings(judge: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    """What the reference judge's jobs depend on, for their own settings file
    (``results/settings/judge_reference.json``): its output-affecting judge settings
    (``judge.run.judge_output_settings`` of its section with the schema's defaults), its
    prompt file, the sample size and the seed that draws it. The main judge's settings
    never hold any of it (``JUDGE_OUTPUT_KEYS`` has no ``reference``)."""
    section = reference_judge(judge)
    if section is None:
        return None
    return {
        **judge_output_settings(section_with_defaults("judge", section)),
        "prompt": section["prompt"],
        SAMPLE_KEY: answers_per_checkpoint(judge),
        "seed": seed,
    }
