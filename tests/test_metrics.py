import math

import numpy as np
import polars as pl
import pytest

from value_drifts.aggregate import drift_table, question_stances, topic_values
from value_drifts.metrics import ci_halfwidth, drift_magnitude, drift_time, extremum_index


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
