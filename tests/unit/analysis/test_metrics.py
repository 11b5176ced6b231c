import math

import numpy as np
import polars as pl
import pytest

from value_drifts.analysis.aggregate import (
    drift_table,
    question_stances,
    topic_values,
    trajectory_question_values,
    trajectory_values,
)
from value_drifts.analysis.metrics import (
    bootstrap_drift,
    ci_halfwidth,
    drift_magnitude,
    drift_time,
    extremum_index,
)


def test_ci_halfwidth_matches_hand_computed_t_interval():
    # mean 0.5, sd 0.1 (ddof=1), n=4: t_{0.975,3} = 3.182446 -> 3.182446 * 0.1 / 2
    values = [0.4, 0.5, 0.6, 0.5 + 0.0]
    sd = np.std(values, ddof=1)
    assert ci_halfwidth(values) == pytest.approx(3.182446305 * sd / 2, rel=1e-6)
    assert math.isnan(ci_halfwidth([0.3]))


def test_drift_magnitude_is_end_minus_start():
    assert drift_magnitude(0.2, 0.58) == pytest.approx(0.38)
    assert drift_magnitude(0.6, 0.1) == pytest.approx(-0.5)


def test_drift_time_flat_trajectory_is_zero():
    assert drift_time([0, 10, 20], [0.3, 0.3, 0.3], [0.05, 0.05, 0.05]) == 0.0


def test_drift_time_monotone_rise_reaches_ci_of_peak():
    # peak 0.8 at step 400 with half-width 0.05: step 300 (0.76) is inside, step 200 (0.6) not.
    steps = [0, 100, 200, 300, 400]
    values = [0.2, 0.4, 0.6, 0.76, 0.8]
    assert drift_time(steps, values, [0.05] * 5) == pytest.approx(300 / 400)


def test_drift_time_peak_in_the_middle():
    steps = [0, 100, 200, 300, 400]
    values = [0.1, 0.7, 0.9, 0.5, 0.4]  # peak at 200; 0.7 is outside its CI of 0.1
    assert extremum_index(values) == 2
    assert drift_time(steps, values, [0.1] * 5) == pytest.approx(200 / 400)
    assert drift_time(steps, values, [0.25] * 5) == pytest.approx(100 / 400)


def test_drift_time_falling_trajectory_uses_the_low_point():
    steps = [0, 50, 100]
    values = [0.9, 0.2, 0.25]
    assert drift_time(steps, values, [0.01, 0.01, 0.01]) == pytest.approx(0.5)


def test_drift_time_noisy_trajectory_first_entry_counts():
    steps = [0, 10, 20, 30, 40, 50]
    values = [0.30, 0.52, 0.41, 0.55, 0.44, 0.50]
    # extremum 0.55 at 30, half-width 0.04: 0.52 at step 10 is within -> 10/50
    assert drift_time(steps, values, [0.04] * 6) == pytest.approx(0.2)


def test_drift_time_single_checkpoint_is_undefined():
    assert math.isnan(drift_time([0], [0.4], [0.1]))


def test_drift_time_uses_exact_extremum_without_ci():
    assert drift_time([0, 1, 2], [0.0, 0.49, 0.5], [math.nan] * 3) == pytest.approx(1.0)


def test_drift_time_rejects_unsorted_steps():
    with pytest.raises(ValueError):
        drift_time([0, 20, 10], [0.1, 0.2, 0.3], [0.0] * 3)


def _judgments(rows):
    return pl.DataFrame(
        rows, schema=["question_id", "category", "sample", "p_support", "p_neutral", "p_oppose"],
        orient="row",
    )


def test_values_average_samples_then_questions():
    judgments = _judgments(
        [
            ("q1", "A", 0, 1.0, 0.0, 0.0),
            ("q1", "A", 1, 0.0, 1.0, 0.0),  # q1 -> (0.5, 0.5, 0)
            ("q2", "A", 0, 0.0, 0.0, 1.0),  # q2 -> (0, 0, 1) with one sample
        ]
    )
    per_question = question_stances(judgments)
    assert per_question.filter(pl.col("question_id") == "q1")["p_support"][0] == 0.5
    values = topic_values(judgments, 0.95)
    support = values.filter(pl.col("stance") == "support").row(0, named=True)
    # question-level mean, not sample-level (which would be 1/3)
    assert support["value"] == pytest.approx(0.25)
    assert support["n_questions"] == 2
    assert support["ci_halfwidth"] == pytest.approx(ci_halfwidth([0.5, 0.0]))


def test_drift_table_per_stance():
    values = pl.DataFrame(
        {
            "step": [0, 5, 10] * 2,
            "category": ["A"] * 6,
            "stance": ["support"] * 3 + ["oppose"] * 3,
            "value": [0.2, 0.5, 0.5, 0.6, 0.3, 0.3],
            "ci_halfwidth": [0.01] * 6,
            "n_questions": [3] * 6,
        }
    )
    table = drift_table(values)
    support = table.filter(pl.col("stance") == "support").row(0, named=True)
    oppose = table.filter(pl.col("stance") == "oppose").row(0, named=True)
    assert support["magnitude"] == pytest.approx(0.3)
    assert support["drift_time"] == pytest.approx(0.5)
    assert oppose["magnitude"] == pytest.approx(-0.3)
    assert oppose["drift_time"] == pytest.approx(0.5)


def _rising(n_questions: int, noise: float, seed: int = 0) -> np.ndarray:
    """Questions × 5 steps, each question rising from 0.2 to 0.8 plus noise."""
    rng = np.random.default_rng(seed)
    return np.clip(np.linspace(0.2, 0.8, 5) + rng.normal(0, noise, (n_questions, 5)), 0, 1)


def test_bootstrap_ci_brackets_a_clear_drift_and_excludes_zero():
    x = _rising(30, 0.1)
    (magnitude, time), = bootstrap_drift([0, 10, 20, 30, 40], [x])
    point = x.mean(axis=0)[-1] - x.mean(axis=0)[0]
    assert magnitude[0] < point < magnitude[1]
    assert magnitude[0] > 0.4  # a 0.6 rise with 30 questions cannot be explained by noise
    assert 0.5 <= time[0] <= time[1] <= 1.0


def test_bootstrap_ci_narrows_with_more_questions():
    steps = [0, 10, 20, 30, 40]
    (few,), (many,) = (bootstrap_drift(steps, [_rising(n, 0.2)]) for n in (8, 200))
    assert many[0][1] - many[0][0] < 0.5 * (few[0][1] - few[0][0])


def test_bootstrap_is_seeded_and_resamples_rows_across_stances():
    x = _rising(12, 0.15)
    first = bootstrap_drift([0, 1, 2, 3, 4], [x, 1 - x], seed=3)
    assert np.array_equal(first, bootstrap_drift([0, 1, 2, 3, 4], [x, 1 - x], seed=3))
    # p(oppose) = 1 - p(support) question by question, so the same resampled rows give
    # mirrored magnitude bounds: proof that stances share one resample.
    assert first[1][0] == pytest.approx(-first[0][0][::-1])


def test_bootstrap_identical_questions_give_a_degenerate_interval():
    x = np.tile([0.1, 0.3, 0.6], (5, 1))
    (magnitude, _), = bootstrap_drift([0, 1, 2], [x])
    assert magnitude == pytest.approx([0.5, 0.5])


def test_bootstrap_undefined_for_one_question_or_one_checkpoint():
    assert np.isnan(bootstrap_drift([0, 1], [np.array([[0.1, 0.2]])])).all()
    bounds = bootstrap_drift([0], [np.array([[0.1], [0.3], [0.2]])])
    assert np.isnan(bounds[0][1]).all()
    assert bounds[0][0] == pytest.approx([0.0, 0.0])


def test_drift_table_with_question_values_adds_bootstrap_columns():
    rng = np.random.default_rng(0)
    rows = []
    for step, level in [(0, 0.2), (5, 0.6), (10, 0.7)]:
        for q in range(10):
            p = float(np.clip(level + rng.normal(0, 0.05), 0, 1))
            rows.append((f"q{q}", "A", 0, p, 1 - p, 0.0, step))
    frame = pl.DataFrame(
        rows,
        schema=["question_id", "category", "sample", "p_support", "p_neutral", "p_oppose", "step"],
        orient="row",
    )
    by_step = {s: frame.filter(pl.col("step") == s).drop("step") for s in (0, 5, 10)}
    values = trajectory_values(by_step, 0.95)
    table = drift_table(values, trajectory_question_values(by_step), n_resamples=300)
    support = table.filter(pl.col("stance") == "support").row(0, named=True)
    assert support["magnitude_low"] <= support["magnitude"] <= support["magnitude_high"]
    assert 0.4 < support["magnitude_low"]
    neutral = table.filter(pl.col("stance") == "neutral").row(0, named=True)
    assert neutral["magnitude_high"] < -0.4
    oppose = table.filter(pl.col("stance") == "oppose").row(0, named=True)
    assert oppose["magnitude_low"] == oppose["magnitude_high"] == 0.0
