"""From judgments to values and drift tables, with polars.

judgments:       one row per (question, sample) with p_support, p_neutral, p_oppose.
question values: one row per (step, question) with its mean stance probabilities.
values:          one row per (step, category, stance) with mean, CI half-width, n questions.
drift:           one row per (category, stance) with magnitude and drift time, each with a
                 bootstrap CI over questions.
"""

from __future__ import annotations

import polars as pl

import numpy as np

from value_drifts.metrics import bootstrap_drift, ci_halfwidth, drift_magnitude, drift_time
from value_drifts.stance import STANCES

PROB_COLUMNS = [f"p_{s}" for s in STANCES]


def question_stances(judgments: pl.DataFrame) -> pl.DataFrame:
    """Average each question's stance distribution over its sampled responses."""
    return judgments.group_by(["question_id", "category"], maintain_order=True).agg(
        [pl.col(c).mean() for c in PROB_COLUMNS]
    )


def topic_values(judgments: pl.DataFrame, ci_level: float) -> pl.DataFrame:
    """v(T)_s per category and stance: mean over questions with a Student-t CI."""
    per_question = question_stances(judgments)
    long = per_question.unpivot(
        index=["question_id", "category"], on=PROB_COLUMNS, variable_name="stance",
        value_name="p",
    ).with_columns(pl.col("stance").str.strip_prefix("p_"))
    return (
        long.group_by(["category", "stance"], maintain_order=True)
        .agg(
            pl.col("p").mean().alias("value"),
            pl.col("p").map_batches(
                lambda s: pl.Series([ci_halfwidth(s.to_list(), ci_level)]),
                return_dtype=pl.Float64, returns_scalar=True,
            ).alias("ci_halfwidth"),
            pl.len().alias("n_questions"),
        )
        .sort(["category", "stance"])
    )


def trajectory_values(judgments_by_step: dict[int, pl.DataFrame], ci_level: float) -> pl.DataFrame:
    """Values at every step of a phase, stacked with a ``step`` column."""
    frames = [
        topic_values(frame, ci_level).with_columns(pl.lit(step, dtype=pl.Int64).alias("step"))
        for step, frame in sorted(judgments_by_step.items())
    ]
    return pl.concat(frames).select(
        "step", "category", "stance", "value", "ci_halfwidth", "n_questions"
    )


def trajectory_question_values(judgments_by_step: dict[int, pl.DataFrame]) -> pl.DataFrame:
    """Every question's mean stance probabilities at every step of a phase (what the
    bootstrap resamples)."""
    return pl.concat(
        [
            question_stances(frame).with_columns(pl.lit(step, dtype=pl.Int64).alias("step"))
            for step, frame in sorted(judgments_by_step.items())
        ]
    ).select("step", "question_id", "category", *PROB_COLUMNS)


def question_matrices(
    question_values: pl.DataFrame, category: str
) -> tuple[list[int], list[np.ndarray], int]:
    """(steps, one questions × steps matrix per stance, questions dropped) for a category.

    Only questions judged at every step are kept, so rows stay aligned across steps; the
    number dropped is returned for the log rather than hidden.
    """
    frame = question_values.filter(pl.col("category") == category)
    steps = sorted(frame["step"].unique().to_list())
    matrices = []
    dropped = 0
    for column in PROB_COLUMNS:
        wide = frame.pivot(on="step", index="question_id", values=column, sort_columns=True)
        complete = wide.drop_nulls().sort("question_id")
        dropped = wide.height - complete.height
        matrices.append(complete.select([str(step) for step in steps]).to_numpy())
    return steps, matrices, dropped


def drift_confidence_intervals(
    question_values: pl.DataFrame, ci_level: float, n_resamples: int, seed: int
) -> pl.DataFrame:
    """Bootstrap CIs of drift magnitude and time per category and stance."""
    rows = []
    for category in sorted(question_values["category"].unique().to_list()):
        steps, matrices, dropped = question_matrices(question_values, category)
        if dropped:
            print(f"{category}: {dropped} question(s) missing at some step left out of the bootstrap")
        bounds = bootstrap_drift(steps, matrices, ci_level, n_resamples, seed)
        for stance, (magnitude, time) in zip(STANCES, bounds, strict=True):
            rows.append(
                {
                    "category": category,
                    "stance": stance,
                    "magnitude_low": magnitude[0],
                    "magnitude_high": magnitude[1],
                    "drift_time_low": time[0],
                    "drift_time_high": time[1],
                }
            )
    return pl.DataFrame(rows)


def drift_table(
    values: pl.DataFrame,
    question_values: pl.DataFrame | None = None,
    ci_level: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Drift magnitude and drift time per category and stance from a phase's values, with
    bootstrap CIs when the per-question values are given."""
    rows = []
    for (category, stance), group in values.sort("step").group_by(
        ["category", "stance"], maintain_order=True
    ):
        steps = group["step"].to_list()
        v = group["value"].to_list()
        h = group["ci_halfwidth"].to_list()
        rows.append(
            {
                "category": category,
                "stance": stance,
                "start": v[0],
                "end": v[-1],
                "magnitude": drift_magnitude(v[0], v[-1]),
                "drift_time": drift_time(steps, v, h),
                "n_checkpoints": len(steps),
            }
        )
    table = pl.DataFrame(rows).sort(["category", "stance"])
    if question_values is None:
        return table
    intervals = drift_confidence_intervals(question_values, ci_level, n_resamples, seed)
    return table.join(intervals, on=["category", "stance"], how="left").select(
        "category", "stance", "start", "end",
        "magnitude", "magnitude_low", "magnitude_high",
        "drift_time", "drift_time_low", "drift_time_high", "n_checkpoints",
    )
