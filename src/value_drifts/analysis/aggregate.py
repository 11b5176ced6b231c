"""From judgments to values and drift tables, with polars.

judgments:       one row per (question, sample) with p_support, p_neutral, p_oppose; NaN
                 (or null) where the judge's answer was unreadable (``stance.read_stance``).
question values: one row per (step, question) with its mean stance probabilities over its
                 readable answers (null when it has none) and their number.
values:          one row per (step, category, stance) with mean, CI half-width, CI bounds
                 clipped to [0, 1], readable questions and answers, unreadable answers.
drift:           one row per (category, stance) with magnitude and drift time, each with a
                 bootstrap CI over questions, and a note where a number is undefined.

An unreadable answer never becomes a number: it is left out of every mean and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from value_drifts.analysis.metrics import (
    bootstrap_drift_tests,
    ci_halfwidth,
    drift_magnitude,
    drift_time,
    fdr_q_values,
)
from value_drifts.core.io import recorded_value
from value_drifts.core.stances import STANCES
from value_drifts.judge.answer_flags import SHORT_ANSWER_CHARS

PROB_COLUMNS = [f"p_{s}" for s in STANCES]


def judge_fingerprint_of(judgments: pl.DataFrame) -> str | None:
    """The judge fingerprint id a judgments file records (``judge.run.judge_fingerprint``);
    None for a file without one. Raises ValueError when one file holds several."""
    return recorded_value(judgments, "judge_fingerprint", "judge fingerprints")


def readable_answers(columns: Sequence[str] = PROB_COLUMNS) -> pl.Expr:
    """True for a judgment whose three stance probabilities (``columns``) are all numbers
    (not NaN or null): a reading the judge gave, not a gap."""
    return pl.all_horizontal([pl.col(c).is_not_null() & pl.col(c).is_not_nan() for c in columns])


def without_unreadable(frame: pl.DataFrame) -> pl.DataFrame:
    """Probability columns set to null wherever a row is not readable, so polars' means,
    counts and pivots skip them (polars keeps NaN in ``mean`` and ``drop_nulls``)."""
    readable = readable_answers()
    return frame.with_columns(
        [pl.when(readable).then(pl.col(c)).otherwise(None).alias(c) for c in PROB_COLUMNS]
    )


def question_stances(judgments: pl.DataFrame) -> pl.DataFrame:
    """Average each question's stance distribution over its readable sampled responses.

    One row per (question_id, category): p_* means (null when no answer was readable),
    ``n_answers`` readable answers and ``n_unreadable`` unreadable ones.
    """
    return (
        without_unreadable(judgments)
        .group_by(["question_id", "category"], maintain_order=True)
        .agg(
            *[pl.col(c).mean() for c in PROB_COLUMNS],
            pl.col(PROB_COLUMNS[0]).count().alias("n_answers"),
            pl.col(PROB_COLUMNS[0]).null_count().alias("n_unreadable"),
        )
        .with_columns(pl.col("n_answers", "n_unreadable").cast(pl.Int64))
    )


def answer_shares(judgments: pl.DataFrame) -> pl.DataFrame:
    """Per category: ``short_share``, the share of its non-empty answers flagged ``short``
    (at most ``judge.answer_flags.SHORT_ANSWER_CHARS`` characters: a stance, counted in
    values; a high share is a collapsed model), and ``n_empty``, its empty answers (not
    stances, left out). Null for judgments written before answers were flagged."""
    if "answer_flags" not in judgments.columns:
        return judgments.select("category").unique(maintain_order=True).with_columns(
            pl.lit(None, dtype=pl.Float64).alias("short_share"),
            pl.lit(None, dtype=pl.Int64).alias("n_empty"),
        )
    flags = pl.col("answer_flags").fill_null("").str.split(",")
    empty = flags.list.contains("empty")
    return judgments.group_by("category", maintain_order=True).agg(
        (flags.list.contains("short").sum() / (~empty).sum()).cast(pl.Float64)
        .alias("short_share"),
        empty.sum().cast(pl.Int64).alias("n_empty"),
    )


def topic_values(judgments: pl.DataFrame, ci_level: float) -> pl.DataFrame:
    """v(T)_s per category and stance (paper §3): mean over the questions with a readable
    answer, with a Student-t CI.

    Columns: category, stance, value (null when no question of the category had a
    readable answer), ci_halfwidth (unclipped: it is drift time's tolerance, see
    ``metrics.drift_time``), ci_low / ci_high (value ∓ half-width clipped to [0, 1], the
    bounds tables and figures show), n_questions (questions with a readable answer),
    n_answers (readable answers), n_unreadable (unreadable answers), short_share and
    n_empty (``answer_shares``).
    """
    per_question = question_stances(judgments)
    long = per_question.unpivot(
        index=["question_id", "category", "n_answers", "n_unreadable"], on=PROB_COLUMNS,
        variable_name="stance", value_name="p",
    ).with_columns(pl.col("stance").str.strip_prefix("p_"))
    values = (
        long.group_by(["category", "stance"], maintain_order=True)
        .agg(
            pl.col("p").mean().alias("value"),
            pl.col("p").map_batches(
                lambda s: pl.Series([ci_halfwidth(s.drop_nulls().to_list(), ci_level)]),
                return_dtype=pl.Float64, returns_scalar=True,
            ).alias("ci_halfwidth"),
            pl.col("p").count().cast(pl.Int64).alias("n_questions"),
            pl.col("n_answers").sum().cast(pl.Int64),
            pl.col("n_unreadable").sum().cast(pl.Int64),
        )
        .sort(["category", "stance"])
    )
    return values.with_columns(clipped_bounds()).join(
        answer_shares(judgments), on="category", how="left")


def clipped_bounds() -> list[pl.Expr]:
    """ci_low and ci_high: value ∓ ci_halfwidth clipped to [0, 1], where probabilities
    live (a t-interval over few questions reaches past both); null where undefined."""
    half = pl.col("ci_halfwidth").fill_nan(None)
    return [
        (pl.col("value") - half).clip(0.0, 1.0).alias("ci_low"),
        (pl.col("value") + half).clip(0.0, 1.0).alias("ci_high"),
    ]


def trajectory_values(judgments_by_step: dict[int, pl.DataFrame], ci_level: float) -> pl.DataFrame:
    """Values at every step of a phase, stacked with a ``step`` column."""
    frames = [
        topic_values(frame, ci_level).with_columns(pl.lit(step, dtype=pl.Int64).alias("step"))
        for step, frame in sorted(judgments_by_step.items())
    ]
    return pl.concat(frames).select("step", *VALUE_COLUMNS)


VALUE_COLUMNS = (
    "category", "stance", "value", "ci_halfwidth", "ci_low", "ci_high",
    "n_questions", "n_answers", "n_unreadable", "short_share", "n_empty",
)


def trajectory_question_values(judgments_by_step: dict[int, pl.DataFrame]) -> pl.DataFrame:
    """Every question's mean stance probabilities at every step of a phase (what the
    bootstrap resamples)."""
    return pl.concat(
        [
            question_stances(frame).with_columns(pl.lit(step, dtype=pl.Int64).alias("step"))
            for step, frame in sorted(judgments_by_step.items())
        ]
    ).select("step", "question_id", "category", *PROB_COLUMNS, "n_answers", "n_unreadable")


def question_matrices(
    question_values: pl.DataFrame, category: str, steps: Sequence[int] | None = None,
) -> tuple[list[int], list[np.ndarray], int]:
    """(steps, one questions × steps matrix per stance, questions dropped) for a category,
    over ``steps`` (all of the category's steps when None).

    Only questions with a readable answer at every one of those steps are kept (a NaN or
    null value counts as missing), so rows stay aligned across steps and no NaN reaches
    the bootstrap; the number dropped is returned for the log rather than hidden.
    """
    frame = without_unreadable(question_values.filter(pl.col("category") == category))
    if steps is not None:
        frame = frame.filter(pl.col("step").is_in(list(steps)))
    steps = sorted(frame["step"].unique().to_list())
    matrices = []
    dropped = 0
    for column in PROB_COLUMNS:
        wide = frame.pivot(on="step", index="question_id", values=column, sort_columns=True)
        complete = wide.drop_nulls(subset=[str(step) for step in steps]).sort("question_id")
        dropped = wide.height - complete.height
        matrices.append(complete.select([str(step) for step in steps]).to_numpy())
    return steps, matrices, dropped


# Fewer questions than this give no interval (NaN, with the reason in the table's note): a
# percentile bootstrap over 1 or 2 questions has 1 or 3 distinct resample means, no interval.
MIN_INTERVAL_QUESTIONS = 3
MAGNITUDE_QUESTIONS = "questions readable at the first and the last step"
DRIFT_TIME_QUESTIONS = "questions readable at every step"


def _trajectories(steps: Sequence[int], matrices: Sequence[np.ndarray], level: float):
    """Per stance (start, end, magnitude, drift time) of the mean over the matrix rows."""
    out = []
    for m in matrices:
        if m.shape[0] == 0:
            out.append((math.nan, math.nan, math.nan, math.nan))
            continue
        values = m.mean(axis=0)
        halfwidths = ci_halfwidth(m, level, axis=0)
        out.append((float(values[0]), float(values[-1]), drift_magnitude(values[0], values[-1]),
                    drift_time(steps, values, halfwidths)))
    return out


def _intervals(steps, matrices, level, n_resamples, seed) -> tuple[np.ndarray, np.ndarray]:
    """bootstrap_drift_tests' bounds and magnitude p-values, NaN below
    MIN_INTERVAL_QUESTIONS questions."""
    if matrices[0].shape[0] < MIN_INTERVAL_QUESTIONS:
        return np.full((len(matrices), 2, 2), math.nan), np.full(len(matrices), math.nan)
    return bootstrap_drift_tests(steps, matrices, level, n_resamples, seed)


def drift_estimates(
    question_values: pl.DataFrame, ci_level: float, n_resamples: int, seed: int
) -> pl.DataFrame:
    """Drift magnitude and drift time per category and stance from per-question values,
    each estimated on the same questions its percentile bootstrap CI resamples, so a
    magnitude interval contains its estimate.

    Magnitude (and ``start``, ``end``) is the mean over the ``n_magnitude_questions``
    questions readable at the first and the last step; drift time is computed from the
    step means of the ``n_bootstrap_questions`` questions readable at every step. Below
    ``MIN_INTERVAL_QUESTIONS`` questions an interval is NaN and ``interval_note`` says
    why. Drift time is a step function of the resampled questions, so its interval may
    exclude its estimate; ``interval_note`` then says so. Source: paper §3 (values, drift
    magnitude and time); scipy.stats.bootstrap (percentile method).

    ``magnitude_p`` is the two-sided bootstrap p-value of "magnitude ≠ 0" read from the
    resamples its interval comes from (``metrics.bootstrap_p_value``: p = min(1, 2 ·
    min(share of replicates ≤ 0, share ≥ 0)), each share counted as (count + 1) / (B + 1),
    so p is never 0); ``magnitude_q`` its Benjamini–Yekutieli q-value over the table's
    cells (topic × stance; ``metrics.fdr_q_values``). BY, not Benjamini–Hochberg: a
    topic's three stance magnitudes sum to zero, so they are dependent (negatively), and BY
    is valid under any dependence. Both NaN where the interval is, and such cells are left
    out of the family.
    """
    rows = []
    for category in sorted(question_values["category"].unique().to_list()):
        steps, full, dropped = question_matrices(question_values, category)
        if dropped:
            print(f"{category}: {dropped} question(s) without a readable answer at some "
                  "step left out of the drift-time estimate and its bootstrap")
        ends_steps, ends, dropped_ends = (
            (steps, full, dropped) if not dropped or len(steps) < 2
            else question_matrices(question_values, category, (steps[0], steps[-1])))
        time_bounds, time_p = _intervals(steps, full, ci_level, n_resamples, seed)
        magnitude_bounds, magnitude_p = (
            (time_bounds, time_p) if ends is full
            else _intervals(ends_steps, ends, ci_level, n_resamples, seed))
        magnitudes = _trajectories(ends_steps, ends, ci_level)
        times = _trajectories(steps, full, ci_level)
        for index, stance in enumerate(STANCES):
            start, end, magnitude, _ = magnitudes[index]
            drift_time_ = times[index][3]
            low, high = magnitude_bounds[index][0]
            time_low, time_high = time_bounds[index][1]
            notes = []
            if ends[index].shape[0] < MIN_INTERVAL_QUESTIONS:
                notes.append(f"magnitude: {ends[index].shape[0]} {MAGNITUDE_QUESTIONS}, "
                             f"fewer than {MIN_INTERVAL_QUESTIONS}: no interval")
            if len(steps) >= 2 and full[index].shape[0] < MIN_INTERVAL_QUESTIONS:
                notes.append(f"drift time: {full[index].shape[0]} {DRIFT_TIME_QUESTIONS}, "
                             f"fewer than {MIN_INTERVAL_QUESTIONS}: no interval")
            if not math.isnan(time_low) and not time_low <= drift_time_ <= time_high:
                notes.append("drift time outside its interval: a step function of the "
                             "resampled questions")
            rows.append({
                "category": category, "stance": stance, "start": start, "end": end,
                "magnitude": magnitude, "magnitude_low": low, "magnitude_high": high,
                "drift_time": drift_time_, "drift_time_low": time_low,
                "drift_time_high": time_high,
                "n_magnitude_questions": ends[index].shape[0],
                "n_bootstrap_questions": full[index].shape[0],
                "interval_note": "; ".join(notes),
                "magnitude_p": float(magnitude_p[index]),
            })
    q = fdr_q_values([row["magnitude_p"] for row in rows], method="by")
    for row, q_value in zip(rows, q, strict=True):
        row["magnitude_q"] = float(q_value)
    return pl.DataFrame(rows, schema_overrides={
        "interval_note": pl.Utf8, "magnitude_p": pl.Float64, "magnitude_q": pl.Float64})


def undefined_note(steps: Sequence[int], values: Sequence[float | None]) -> str:
    """Why a trajectory's drift is undefined ("" when it is defined): the steps where its
    category had no readable answer, or a single checkpoint."""
    missing = [step for step, v in zip(steps, values, strict=True) if v is None or math.isnan(v)]
    if missing:
        return "no readable answer at step " + ", ".join(str(s) for s in missing)
    if len(steps) < 2:
        return "one checkpoint"
    return ""


def integrity_note(values: pl.DataFrame) -> str:
    """A phase's checkpoint-integrity findings (the ``checkpoint_note`` column ``values``
    writes, see value_drifts.core.integrity), as one note; "" when there are none."""
    if "checkpoint_note" not in values.columns:
        return ""
    notes = (values.filter(pl.col("checkpoint_note") != "").sort("step")
             ["checkpoint_note"].unique(maintain_order=True).to_list())
    return ("checkpoint integrity: " + "; ".join(notes)) if notes else ""


def short_answers_note(values: pl.DataFrame) -> str:
    """Where a phase's answers were short (``answer_shares``): the largest share of a
    category's answers at one step, e.g. "short answers (≤ 3 characters): up to 83% of a
    category's answers (step 4)"; "" when none were, or the values predate the share."""
    if "short_share" not in values.columns:
        return ""
    shares = values.filter(pl.col("short_share").is_not_null() & (pl.col("short_share") > 0))
    if not shares.height:
        return ""
    top = shares.sort(["short_share", "step"], descending=[True, False]).row(0, named=True)
    return (f"short answers (≤ {SHORT_ANSWER_CHARS} characters): up to "
            f"{top['short_share']:.0%} of a category's answers (step {top['step']})")


def drift_table(
    values: pl.DataFrame,
    question_values: pl.DataFrame | None = None,
    ci_level: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Drift magnitude and drift time per category and stance from a phase's values; when
    the per-question values are given, estimated on the questions their bootstrap CIs
    resample (:func:`drift_estimates`: magnitude on ``n_magnitude_questions``, drift time
    on ``n_bootstrap_questions``), so an estimate and its interval describe one question
    set.

    A step whose category had no readable answer makes drift time NaN (and magnitude NaN
    when it is the first or last step), with the reason in ``note``, which also says where
    an interval is missing or a drift time lies outside its interval; checkpoints whose
    weights equal another's are named in ``checkpoint_integrity`` (``integrity_note``);
    ``n_questions`` is the fewest readable questions any step had; ``max_short_share``
    the largest share of the category's answers that were short at any step, and
    ``answers_note`` the phase's ``short_answers_note``. With the per-question values, the
    last two columns are ``magnitude_p`` (two-sided bootstrap p-value of "magnitude ≠ 0")
    and ``magnitude_q`` (its Benjamini–Yekutieli q-value over this table's topic × stance
    cells), as :func:`drift_estimates` computes them.
    """
    integrity = integrity_note(values)
    short_note = short_answers_note(values)
    rows = []
    for (category, stance), group in values.sort("step").group_by(
        ["category", "stance"], maintain_order=True
    ):
        steps = group["step"].to_list()
        v = [math.nan if x is None else x for x in group["value"].to_list()]
        h = [math.nan if x is None else x for x in group["ci_halfwidth"].to_list()]
        rows.append(
            {
                "category": category,
                "stance": stance,
                "start": v[0],
                "end": v[-1],
                "magnitude": drift_magnitude(v[0], v[-1]),
                "drift_time": drift_time(steps, v, h),
                "n_checkpoints": len(steps),
                "n_questions": (
                    int(group["n_questions"].min()) if "n_questions" in group.columns else None
                ),
                "note": undefined_note(steps, v),
                "checkpoint_integrity": integrity,
                "max_short_share": (group["short_share"].max()
                                    if "short_share" in group.columns else None),
                "answers_note": short_note,
            }
        )
    table = pl.DataFrame(rows, schema_overrides={
        "n_questions": pl.Int64, "max_short_share": pl.Float64}).sort(
        ["category", "stance"]
    )
    if question_values is None:
        return table
    estimates = drift_estimates(question_values, ci_level, n_resamples, seed)
    joined = table.drop("start", "end", "magnitude", "drift_time").join(
        estimates, on=["category", "stance"], how="left")
    note = (pl.when((pl.col("note") != "") & (pl.col("interval_note") != ""))
            .then(pl.col("note") + "; " + pl.col("interval_note"))
            .otherwise(pl.col("note") + pl.col("interval_note").fill_null("")))
    return joined.with_columns(note.alias("note")).select(
        "category", "stance", "start", "end",
        "magnitude", "magnitude_low", "magnitude_high",
        "drift_time", "drift_time_low", "drift_time_high", "n_checkpoints",
        "n_questions", "n_magnitude_questions", "n_bootstrap_questions", "note",
        "checkpoint_integrity", "max_short_share", "answers_note",
        "magnitude_p", "magnitude_q",
    )


def question_drifts(question_values: pl.DataFrame, categories: Sequence[str],
                    stance: str) -> pl.DataFrame:
    """Per-question drift of one stance (its probability at the last step minus the first)
    over ``categories``: columns question_id, category, drift. Questions missing at either
    end, or with no readable judge answer there (NaN), are left out: an unreadable answer
    is not a measurement."""
    column = f"p_{stance}"
    rows = question_values.filter(pl.col("category").is_in(list(categories)))
    first, last = rows["step"].min(), rows["step"].max()
    ends = [rows.filter(pl.col("step") == step).select("question_id", "category",
                                                       pl.col(column).alias(name))
            for step, name in ((first, "start"), (last, "end"))]
    return (ends[0].join(ends[1], on=["question_id", "category"])
            .select("question_id", "category", (pl.col("end") - pl.col("start")).alias("drift"))
            .filter(pl.col("drift").is_not_null() & pl.col("drift").is_not_nan())
            .sort("question_id"))


def planted_effect(
    question_values: pl.DataFrame,
    categories: Sequence[str],
    stance: str,
    baseline: pl.DataFrame | None = None,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, low, high): the drift of ``stance`` over ``categories``, as the mean of the
    per-topic mean drifts, with a percentile bootstrap CI that resamples questions within
    each topic (scipy.stats.bootstrap). With ``baseline`` (another run's question values
    on the same questions), the per-question drift is this run's minus the baseline's, so
    the effect is how much more this run moves the stance (questions paired by id).

    Drift is in probability units (support/neutral/oppose shares, -1..1), as the drift
    magnitude of section 3.2 of the paper. Raises ValueError when a category has fewer
    than two questions.
    """
    drifts = question_drifts(question_values, categories, stance)
    if baseline is not None:
        drifts = drifts.join(question_drifts(baseline, categories, stance),
                             on=["question_id", "category"], suffix="_baseline").select(
            "question_id", "category", (pl.col("drift") - pl.col("drift_baseline")).alias("drift"))
    groups = [drifts.filter(pl.col("category") == c)["drift"].to_numpy() for c in categories]
    if min(map(len, groups)) < 2:
        raise ValueError(f"planted effect needs at least two questions per topic: "
                         f"{dict(zip(categories, map(len, groups), strict=True))}")

    def statistic(*samples, axis=-1):
        return np.mean([sample.mean(axis=axis) for sample in samples], axis=0)

    from scipy import stats

    interval = stats.bootstrap(groups, statistic, n_resamples=n_resamples,
                               confidence_level=level, method="percentile",
                               rng=np.random.default_rng(seed)).confidence_interval
    return float(statistic(*groups)), float(interval.low), float(interval.high)
