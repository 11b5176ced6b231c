"""Unreadable judge answers (NaN) never become numbers: values, drift magnitude, drift time
and the bootstrap leave them out, count them and say where a number is undefined."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from value_drifts.analysis.aggregate import (
    drift_table,
    judge_fingerprint_of,
    question_matrices,
    question_stances,
    topic_values,
    trajectory_question_values,
    trajectory_values,
)
from value_drifts.analysis.metrics import drift_time, extremum_index

NAN = math.nan
COLUMNS = ["question_id", "category", "sample", "p_support", "p_neutral", "p_oppose"]


def frame(rows):
    return pl.DataFrame(rows, schema=COLUMNS, orient="row")


def row(question, p_support, sample, category="A"):
    if p_support is None or math.isnan(p_support):
        return (question, category, sample, NAN, NAN, NAN)
    return (question, category, sample, p_support, 1 - p_support, 0.0)


# The issue's example: 3 questions x 2 samples at steps 0, 2, 4, 6 with p(support) about
# 0.25, 0.65, 0.9, 0.5, and one sample at step 4 unreadable.
LEVELS = {0: 0.25, 2: 0.65, 4: 0.9, 6: 0.5}
SPREAD = {"q1": -0.01, "q2": 0.0, "q3": 0.01}


def example_by_step(nan_at=((4, "q2", 1),)):
    by_step = {}
    for step, level in LEVELS.items():
        rows = []
        for question, offset in SPREAD.items():
            for sample in (0, 1):
                unreadable = (step, question, sample) in nan_at
                rows.append(row(question, NAN if unreadable else level + offset, sample))
        by_step[step] = frame(rows)
    return by_step


def support(table):
    return table.filter(pl.col("stance") == "support").row(0, named=True)


def test_the_issue_example_drift_time_is_two_thirds_not_zero():
    by_step = example_by_step()
    values = trajectory_values(by_step, 0.95)
    step4 = values.filter((pl.col("step") == 4) & (pl.col("stance") == "support")).row(
        0, named=True)
    assert step4["value"] == pytest.approx(0.9)  # the NaN sample left out, not averaged in
    assert step4["n_questions"] == 3 and step4["n_answers"] == 5 and step4["n_unreadable"] == 1
    table = drift_table(values, trajectory_question_values(by_step), n_resamples=200)
    row_ = support(table)
    assert row_["drift_time"] == pytest.approx(4 / 6)
    assert row_["magnitude"] == pytest.approx(0.25)
    assert row_["note"] == ""
    assert row_["n_questions"] == 3 and row_["n_bootstrap_questions"] == 3
    assert not math.isnan(row_["drift_time_low"]) and row_["drift_time_low"] <= 4 / 6


def test_null_instead_of_nan_is_left_out_the_same_way():
    by_step = example_by_step()
    by_step[4] = by_step[4].with_columns(pl.col("p_support", "p_neutral", "p_oppose").fill_nan(None))
    values = trajectory_values(by_step, 0.95)
    table = drift_table(values, trajectory_question_values(by_step), n_resamples=100)
    assert support(table)["drift_time"] == pytest.approx(4 / 6)


def test_a_question_with_no_readable_answer_is_not_counted():
    judgments = frame([row("q1", 0.8, 0), row("q1", 0.6, 1), row("q2", NAN, 0), row("q2", NAN, 1),
                       row("q3", 0.2, 0), row("q3", NAN, 1)])
    per_question = question_stances(judgments).sort("question_id")
    first, second, third = per_question["p_support"].to_list()
    assert first == pytest.approx(0.7) and second is None and third == pytest.approx(0.2)
    assert per_question["n_answers"].to_list() == [2, 0, 1]
    assert per_question["n_unreadable"].to_list() == [0, 2, 1]
    values = support(topic_values(judgments, 0.95))
    assert values["value"] == pytest.approx(0.45)  # mean of q1 0.7 and q3 0.2, not of three
    assert values["n_questions"] == 2 and values["n_answers"] == 3 and values["n_unreadable"] == 3


def test_a_step_without_any_readable_answer_makes_drift_undefined_with_a_reason():
    all_nan = [(4, q, s) for q in SPREAD for s in (0, 1)]
    by_step = example_by_step(nan_at=all_nan)
    values = trajectory_values(by_step, 0.95)
    step4 = values.filter((pl.col("step") == 4) & (pl.col("stance") == "support")).row(
        0, named=True)
    assert step4["value"] is None and step4["n_questions"] == 0 and step4["n_unreadable"] == 6
    table = drift_table(values, trajectory_question_values(by_step), n_resamples=100)
    row_ = support(table)
    assert math.isnan(row_["drift_time"])
    assert row_["magnitude"] == pytest.approx(0.25)  # start and end are readable
    # every question misses step 4, so drift time's bootstrap has nothing to resample,
    # while magnitude's resamples the 3 questions readable at both ends
    assert row_["note"] == ("no readable answer at step 4; drift time: 0 questions readable "
                            "at every step, fewer than 3: no interval")
    assert row_["n_bootstrap_questions"] == 0 and row_["n_magnitude_questions"] == 3
    assert math.isnan(row_["drift_time_low"]) and math.isnan(row_["drift_time_high"])
    assert row_["magnitude_low"] <= row_["magnitude"] <= row_["magnitude_high"]


def test_an_unreadable_end_makes_magnitude_undefined():
    all_nan = [(6, q, s) for q in SPREAD for s in (0, 1)]
    values = trajectory_values(example_by_step(nan_at=all_nan), 0.95)
    row_ = support(drift_table(values))
    assert math.isnan(row_["magnitude"]) and math.isnan(row_["drift_time"])
    assert row_["note"] == "no readable answer at step 6"


def test_question_matrices_drop_questions_with_nan_and_report_them():
    by_step = example_by_step(nan_at=[(2, "q1", 0), (2, "q1", 1)])
    question_values = trajectory_question_values(by_step)
    steps, matrices, dropped = question_matrices(question_values, "A")
    assert steps == [0, 2, 4, 6] and dropped == 1
    assert all(m.shape == (2, 4) and not np.isnan(m).any() for m in matrices)
    # also when the NaN comes from a question-values file written before NaN was nulled
    legacy = question_values.with_columns(
        pl.col("p_support", "p_neutral", "p_oppose").fill_null(NAN))
    _, legacy_matrices, legacy_dropped = question_matrices(legacy, "A")
    assert legacy_dropped == 1 and not np.isnan(legacy_matrices[0]).any()


def test_drift_time_refuses_nan_and_extremum_index_raises():
    assert math.isnan(drift_time([0, 2, 4, 6], [0.25, 0.65, NAN, 0.5], [0.05] * 4))
    # a NaN half-width (one question) means "reach the extremum exactly"
    assert drift_time([0, 2, 4, 6], [0.25, 0.65, 0.9, 0.5], [0.05, 0.05, NAN, 0.05]) == 4 / 6
    with pytest.raises(ValueError):
        extremum_index([0.1, NAN, 0.3])


def test_ci_bounds_of_probabilities_are_clipped_and_halfwidth_kept():
    # two questions far apart: the t-interval's half-width is far above 1
    judgments = frame([row("q1", 0.95, 0), row("q2", 0.05, 0)])
    values = support(topic_values(judgments, 0.95))
    assert values["ci_halfwidth"] > 3  # 12.7 * 0.45 = 5.7: kept for drift time's tolerance
    assert values["ci_low"] == 0.0 and values["ci_high"] == 1.0
    narrow = support(topic_values(frame([row(f"q{i}", 0.5 + 0.01 * i, 0) for i in range(5)]), 0.95))
    assert 0 < narrow["ci_low"] < narrow["value"] < narrow["ci_high"] < 1
    assert narrow["ci_high"] - narrow["value"] == pytest.approx(narrow["ci_halfwidth"])


def test_judge_fingerprint_of_a_judgments_file():
    judgments = frame([row("q1", 0.5, 0)])
    assert judge_fingerprint_of(judgments) is None
    assert judge_fingerprint_of(judgments.with_columns(judge_fingerprint=pl.lit("abc"))) == "abc"
    mixed = pl.concat([judgments.with_columns(judge_fingerprint=pl.lit(x)) for x in "ab"])
    with pytest.raises(ValueError, match="several judge fingerprints"):
        judge_fingerprint_of(mixed)


def _random_question_values(rng, n_questions, steps, missing_share):
    """Per-question values of one category with some answers unreadable (NaN)."""
    rows = []
    for step in steps:
        for q in range(n_questions):
            p = NAN if rng.random() < missing_share else rng.random()
            rows.append((step, f"q{q}", "A", p, NAN if math.isnan(p) else 1 - p,
                         NAN if math.isnan(p) else 0.0))
    return pl.DataFrame(rows, schema=["step", "question_id", "category", *PROBS], orient="row")


PROBS = ["p_support", "p_neutral", "p_oppose"]


def _tables(question_values):
    """(values, question values) as the workflow makes them, from one answer a question."""
    by_step = {
        step: group.drop("step").with_columns(pl.lit(0).alias("sample")).select(COLUMNS)
        for (step,), group in question_values.group_by(["step"])
    }
    return trajectory_values(by_step, 0.95), trajectory_question_values(by_step)


def test_an_estimate_and_its_interval_describe_the_same_questions():
    """A question readable at one end only enters neither the estimate nor the bootstrap:
    4 questions at step 0, one of them unreadable at the end. Averaging all 4 at step 0
    and 3 at step 2 gave +0.51 while the bootstrap resampled the 3 that each move by +0.70,
    an estimate outside its own interval [+0.70, +0.70]."""
    qv = pl.DataFrame(
        [(0, "q1", "A", 0.1, 0.9, 0.0), (0, "q2", "A", 0.1, 0.9, 0.0), (0, "q3", "A", 0.9, 0.1, 0.0),
         (0, "q4", "A", 0.2, 0.8, 0.0),
         (2, "q1", "A", 0.8, 0.2, 0.0), (2, "q2", "A", 0.8, 0.2, 0.0), (2, "q3", "A", NAN, NAN, NAN),
         (2, "q4", "A", 0.9, 0.1, 0.0)],
        schema=["step", "question_id", "category", *PROBS], orient="row")
    table = drift_table(*_tables(qv), n_resamples=500)
    row_ = support(table)
    assert row_["n_magnitude_questions"] == 3 and row_["n_bootstrap_questions"] == 3
    assert row_["magnitude"] == pytest.approx((0.8 + 0.8 + 0.9 - 0.1 - 0.1 - 0.2) / 3)
    assert row_["start"] == pytest.approx(0.4 / 3) and row_["end"] == pytest.approx(2.5 / 3)
    assert row_["magnitude_low"] <= row_["magnitude"] <= row_["magnitude_high"]


def test_every_magnitude_interval_contains_its_estimate():
    rng = np.random.default_rng(7)
    outside, checked = [], 0
    for trial in range(60):
        qv = _random_question_values(rng, int(rng.integers(3, 12)), [0, 3, 6], 0.2)
        table = drift_table(*_tables(qv), n_resamples=200, seed=trial)
        for r in table.iter_rows(named=True):
            if math.isnan(r["magnitude_low"]):
                assert "no interval" in r["note"]
                continue
            checked += 1
            if not r["magnitude_low"] - 1e-12 <= r["magnitude"] <= r["magnitude_high"] + 1e-12:
                outside.append(r)
            if not (math.isnan(r["drift_time_low"])
                    or r["drift_time_low"] <= r["drift_time"] <= r["drift_time_high"]):
                assert "drift time outside its interval" in r["note"]
    assert checked > 100 and outside == []


def test_below_the_minimum_questions_an_interval_is_nan_with_the_reason():
    qv = pl.DataFrame(
        [(0, "q1", "A", 0.1, 0.9, 0.0), (0, "q2", "A", 0.2, 0.8, 0.0),
         (2, "q1", "A", 0.8, 0.2, 0.0), (2, "q2", "A", 0.9, 0.1, 0.0)],
        schema=["step", "question_id", "category", *PROBS], orient="row")
    row_ = support(drift_table(*_tables(qv), n_resamples=100))
    assert row_["magnitude"] == pytest.approx(0.7)
    assert math.isnan(row_["magnitude_low"]) and math.isnan(row_["drift_time_high"])
    assert "magnitude: 2 questions readable at the first and the last step, fewer than 3" in row_["note"]
