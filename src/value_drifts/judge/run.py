"""Judge a table of generations: render prompts, read stances, count what went wrong."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

import polars as pl
from tqdm.auto import tqdm

from value_drifts.judge.prompt import render
from value_drifts.stance import STANCES, read_stance


class JudgeBackend(Protocol):
    def batches(self, prompts: Sequence[str]) -> Iterator[tuple[int, list[dict[str, float]]]]:
        """Yield (number of prompts done, their first-token top log-probabilities)."""


def read_stances(prompts: Sequence[str], backend: JudgeBackend, unit: str = "prompt") -> list:
    """Stance readings for rendered judge prompts, through any backend, with progress."""
    tops: list[dict[str, float]] = []
    with tqdm(total=len(prompts), desc="judging", unit=unit) as progress:
        for done, batch in backend.batches(list(prompts)):
            tops.extend(batch)
            progress.update(done)
    return [read_stance(top) for top in tops]


def judge_generations(
    generations: pl.DataFrame,
    topics: Mapping[str, str],
    template: str,
    backend: JudgeBackend,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """One row per generation with p_support/p_neutral/p_oppose, plus counts of answers
    whose top token was not a label and of labels missing from the top list."""
    prompts = [
        render(template, row["question"], row["response"], topics[row["category"]])
        for row in generations.iter_rows(named=True)
    ]
    readings = read_stances(prompts, backend, unit="response")
    judgments = generations.select("question_id", "category", "sample").with_columns(
        *[
            pl.Series(f"p_{stance}", [r.probabilities[i] for r in readings], dtype=pl.Float64)
            for i, stance in enumerate(STANCES)
        ],
        pl.Series("top_token", [r.top_token for r in readings], dtype=pl.Utf8),
        pl.Series("top_is_label", [r.top_is_label for r in readings], dtype=pl.Boolean),
        pl.Series("missing_labels", [",".join(r.missing_labels) for r in readings], dtype=pl.Utf8),
    )
    counts = {
        "judged": len(readings),
        "off_label_top_token": sum(not r.top_is_label for r in readings),
        "answers_missing_a_label": sum(bool(r.missing_labels) for r in readings),
    }
    return judgments, counts
