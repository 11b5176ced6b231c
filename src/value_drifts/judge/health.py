"""Judge health of a training run: how readable the judge's answers were, checkpoint by
checkpoint, from the ``health`` each judge job writes to its ``judge_counts.json``
(``stance.judge_health``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from value_drifts.judge.answer_flags import SHORT_ANSWER_CHARS, summed
from value_drifts.judge.stance import OFF_LABEL_TOKENS_SHOWN

FLAG_COLUMNS = ("empty", "short_share", "base_continuation", "prompt_echo", "cut_to_fit")

HEALTH_COLUMNS = (
    "step", "answers", "readable", "unreadable", "readable_share", "mean_label_mass",
    "missing_label_share", "off_label_top_tokens",
)


def _tokens_text(tokens: Sequence[Sequence[Any]]) -> str:
    return ", ".join(f"{token!r} ({count})" for token, count in tokens)


def run_health(by_step: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """One run's health from its checkpoints' (``{step: health}``): counts summed, shares
    and mean label mass weighted by answers, off-label tokens counted over all steps."""
    answers = sum(h["answers"] for h in by_step.values())
    readable = sum(h["readable"] for h in by_step.values())
    tokens: Counter[str] = Counter()
    for health in by_step.values():
        tokens.update({token: count for token, count in health["off_label_top_tokens"]})

    def weighted(key: str) -> float:
        if not answers:
            return math.nan
        return sum(h[key] * h["answers"] for h in by_step.values() if h["answers"]) / answers

    return {
        "answers": answers,
        "readable": readable,
        "unreadable": answers - readable,
        "readable_share": readable / answers if answers else math.nan,
        "mean_label_mass": weighted("mean_label_mass"),
        "missing_label_share": weighted("missing_label_share"),
        "off_label_top_tokens": [list(pair) for pair in tokens.most_common(OFF_LABEL_TOKENS_SHOWN)],
    }


def flag_columns(flags_by_step: Mapping[int, Mapping[str, Any] | None]) -> pl.DataFrame:
    """The answer-flag columns of the health table (``FLAG_COLUMNS``), one row per step
    and the run's last; null where a checkpoint's counts predate the flags."""
    present = {step: flags for step, flags in flags_by_step.items() if flags}
    run = summed(present) if len(present) == len(flags_by_step) else None
    rows = [flags_by_step[step] for step in sorted(flags_by_step)] + [run]
    return pl.DataFrame(
        [{column: (flags or {}).get(column) for column in FLAG_COLUMNS} for flags in rows],
        schema={"empty": pl.Int64, "short_share": pl.Float64,
                "base_continuation": pl.Int64, "prompt_echo": pl.Int64,
                "cut_to_fit": pl.Int64},
    )


def health_table(
    by_step: Mapping[int, Mapping[str, Any]],
    flags_by_step: Mapping[int, Mapping[str, Any] | None] | None = None,
) -> pl.DataFrame:
    """One row per checkpoint step and a last row ``step = null`` for the whole run;
    columns ``HEALTH_COLUMNS`` (off-label tokens as text: ``'<think>' (44), ...``), then
    with ``flags_by_step`` (each judge job's ``answer_flags`` counts) ``FLAG_COLUMNS``:
    empty answers (not judged), the share of short ones, base-style continuations,
    answers echoing the judge prompt and answers cut to fit the judge's context
    (``judge.answer_flags``)."""
    table = _health_only(by_step)
    if flags_by_step is None:
        return table
    return pl.concat([table, flag_columns(flags_by_step)], how="horizontal")


def _health_only(by_step: Mapping[int, Mapping[str, Any]]) -> pl.DataFrame:
    rows = [(step, by_step[step]) for step in sorted(by_step)] + [(None, run_health(by_step))]
    return pl.DataFrame(
        [
            {
                "step": step,
                **{key: health[key] for key in HEALTH_COLUMNS[1:-1]},
                "off_label_top_tokens": _tokens_text(health["off_label_top_tokens"]),
            }
            for step, health in rows
        ],
        schema={
            "step": pl.Int64, "answers": pl.Int64, "readable": pl.Int64, "unreadable": pl.Int64,
            "readable_share": pl.Float64, "mean_label_mass": pl.Float64,
            "missing_label_share": pl.Float64, "off_label_top_tokens": pl.Utf8,
        },
    )


def health_markdown(table: pl.DataFrame, title: str) -> str:
    """The health table as markdown; the run's row is labelled 'all'."""
    flagged = "empty" in table.columns
    lines = [
        f"### {title}",
        "",
        "Readable: the top list gives the three labels at least judge.min_label_mass of "
        "probability. Label mass: that probability, averaged over answers. Missing label: "
        "an answer whose top list lacks one of the labels (it gets a floor)."
        + (" Empty: answers with no text, not judged and left out of values. Short: answers "
           f"of at most {SHORT_ANSWER_CHARS} characters, judged and counted (a high share is a "
           "collapsed model). Continued: answers going on with Question:/Response: lines. "
           "Echo: answers holding the judge prompt's own text. Cut: answers longer than the "
           "judge's context, judged on their longest head that fits." if flagged else ""),
        "",
        "| step | answers | readable | readable share | mean label mass | missing label share "
        "| most common off-label first tokens |"
        + (" empty | short share | continued | echo | cut |" if flagged else ""),
        "|---:|---:|---:|---:|---:|---:|---|" + ("---:|---:|---:|---:|---:|" if flagged else ""),
    ]
    for row in table.iter_rows(named=True):
        step = "all" if row["step"] is None else str(row["step"])
        lines.append(
            f"| {step} | {row['answers']} | {row['readable']} | {_share(row['readable_share'])} "
            f"| {_share(row['mean_label_mass'])} | {_share(row['missing_label_share'])} "
            f"| {row['off_label_top_tokens'] or '–'} |"
            + (f" {_count(row['empty'])} | {_share(row['short_share'])} "
               f"| {_count(row['base_continuation'])} | {_count(row['prompt_echo'])} "
               f"| {_count(row.get('cut_to_fit'))} |"
               if flagged else "")
        )
    return "\n".join(lines) + "\n"


def _count(value: int | None) -> str:
    return "–" if value is None else str(value)


def _share(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"
