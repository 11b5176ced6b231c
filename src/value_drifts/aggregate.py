"""From judgments to values and drift tables, with polars.

judgments: one row per (question, sample) with p_support, p_neutral, p_oppose.
values:    one row per (step, category, stance) with mean, CI half-width and n questions.
drift:     one row per (category, stance) with magnitude and drift time.
"""

from __future__ import annotations

import polars as pl

from value_drifts.metrics import ci_halfwidth, drift_magnitude, drift_time
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


def drift_table(values: pl.DataFrame) -> pl.DataFrame:
    """Drift magnitude and drift time per category and stance from a phase's values."""
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
    return pl.DataFrame(rows).sort(["category", "stance"])
