"""Calibrated values: a simulated judge with a known confusion matrix, applied to a known
stance distribution, is corrected back to it within its interval (which covers it at about
its level over repeated simulations); the identity matrix changes nothing; the joint
bootstrap widens the interval as the labelled set shrinks; a weak judge is flagged."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from value_drifts.analysis.calibration import (
    MAX_CONDITION,
    calibrate,
    calibrated_trajectory,
    simplex_least_squares,
    soft_confusion,
    weak_judge_reasons,
)
from value_drifts.core.stances import STANCES

# A judge that reads support as support 70% of the time, neutral drifts to support, etc.
JUDGE = np.array([[0.70, 0.20, 0.10],
                  [0.15, 0.70, 0.15],
                  [0.05, 0.25, 0.70]])


def simulate(truth_by_step, n_questions, n_labelled, rng, judge=JUDGE):
    """Question values: each question's true stance drawn from the step's truth; the judge
    reads an answer as a stance drawn from its row of ``judge`` (0.9 on it, 0.05 on the
    others), so its expected reading of stance g is 0.05 + 0.85 · judge[g]; a labelled set
    of ``n_labelled`` items (a third per stance) read the same way."""
    def read(stances):
        read_as = np.array([rng.choice(3, p=judge[s]) for s in stances])
        return 0.05 + 0.85 * np.eye(3)[read_as]

    records = []
    # the same question keeps its identity across steps (paired)
    for step, truth in truth_by_step.items():
        stances = rng.choice(3, size=n_questions, p=truth)
        for q, reading in enumerate(read(stances)):
            records.append({"step": step, "question_id": f"q{q}", "category": "Topic",
                            **{f"p_{s}": float(reading[i]) for i, s in enumerate(STANCES)}})
    gold_idx = np.repeat(np.arange(3), n_labelled // 3)
    gold = [STANCES[i] for i in gold_idx]
    return pl.DataFrame(records), gold, read(gold_idx)


def test_simplex_least_squares_solves_inside_and_on_the_border():
    a = JUDGE.T
    inside = np.array([0.5, 0.3, 0.2])
    assert simplex_least_squares(a, a @ inside) == pytest.approx(inside, abs=1e-9)
    # a reading no distribution gives: the closest one lies on the border
    pi = simplex_least_squares(a, np.array([1.0, 0.0, 0.0]))
    assert pi.sum() == pytest.approx(1) and (pi >= 0).all() and pi[1] == pi[2] == 0
    many = simplex_least_squares(a, np.vstack([a @ inside, [np.nan] * 3]))
    assert many[0] == pytest.approx(inside, abs=1e-9) and np.isnan(many[1]).all()


def test_identity_leaves_values_as_they_are():
    value = np.array([0.2, 0.5, 0.3])
    assert calibrate(value, np.eye(3)) == pytest.approx(value)
    rng = np.random.default_rng(0)
    qv, gold, _ = simulate({0: [0.2, 0.5, 0.3], 5: [0.6, 0.3, 0.1]}, 40, 60, rng)
    perfect = np.eye(3)[[STANCES.index(g) for g in gold]]
    values, drift, summary = calibrated_trajectory(qv, gold, perfect, n_resamples=50)
    assert values["calibrated"].to_numpy() == pytest.approx(values["value"].to_numpy(), abs=1e-9)
    assert drift["calibrated_magnitude"].to_numpy() == pytest.approx(
        drift["magnitude"].to_numpy(), abs=1e-9)
    assert summary["condition_number"] == pytest.approx(1.0) and not summary["weak"]


def test_a_planted_truth_is_recovered_and_covered():
    """One simulation: the raw values are shrunk towards the judge's confusion, the
    calibrated ones are back near the truth, inside their intervals."""
    truth = {0: [0.2, 0.6, 0.2], 4: [0.7, 0.2, 0.1]}
    qv, gold, readings = simulate(truth, 400, 300, np.random.default_rng(2))
    values, drift, summary = calibrated_trajectory(qv, gold, readings, n_resamples=300, seed=1)
    assert not summary["weak"] and summary["condition_number"] < MAX_CONDITION
    support = drift.filter(pl.col("stance") == "support").row(0, named=True)
    true_drift = 0.7 - 0.2
    assert support["magnitude"] < true_drift - 0.1  # the judge shrinks the drift
    assert support["calibrated_magnitude"] == pytest.approx(true_drift, abs=0.08)
    assert support["calibrated_magnitude_low"] <= true_drift <= support["calibrated_magnitude_high"]
    end = values.filter(pl.col("step") == 4).sort("stance")  # neutral, oppose, support
    for row in end.iter_rows(named=True):
        target = truth[4][STANCES.index(row["stance"])]
        assert row["calibrated_low"] <= target <= row["calibrated_high"]


def test_the_interval_covers_the_truth_at_about_its_level():
    """Over 40 simulations the 90% interval of the calibrated support drift covers the
    true drift in at least 80% of them (binomial: 36 of 40 expected, 32 is 2.1 sd below)."""
    truth = {0: [0.3, 0.4, 0.3], 3: [0.55, 0.3, 0.15]}
    true_drift = 0.25
    covered = 0
    for seed in range(40):
        qv, gold, readings = simulate(truth, 60, 90, np.random.default_rng(100 + seed))
        _, drift, _ = calibrated_trajectory(qv, gold, readings, ci_level=0.9,
                                            n_resamples=200, seed=seed)
        row = drift.filter(pl.col("stance") == "support").row(0, named=True)
        covered += row["calibrated_magnitude_low"] <= true_drift <= row["calibrated_magnitude_high"]
    assert covered >= 32, covered


@pytest.mark.parametrize("seed", [7, 8])
def test_the_joint_bootstrap_widens_as_the_labelled_set_shrinks(seed):
    """The same questions, labelled sets of 900, 90 and 30 items: the calibrated value's
    interval widens (measured: 0.37 < 0.49 < 0.59 and 0.32 < 0.53 < 1.00)."""
    truth = {0: [0.3, 0.4, 0.3], 3: [0.6, 0.3, 0.1]}
    widths = []
    for n_labelled in (900, 90, 30):
        qv, gold, readings = simulate(truth, 100, n_labelled, np.random.default_rng(seed))
        values, _, _ = calibrated_trajectory(qv, gold, readings, n_resamples=300, seed=3)
        end = values.filter((pl.col("step") == 3) & (pl.col("stance") == "support"))
        widths.append(float(end["calibrated_high"][0] - end["calibrated_low"][0]))
    assert widths[0] < widths[1] < widths[2], widths


@pytest.mark.parametrize(("confusion", "items", "reason"), [
    (JUDGE, {"support": 5, "neutral": 50, "oppose": 50}, "5 labelled support items"),
    (np.array([[0.4, 0.5, 0.1], [0.3, 0.5, 0.2], [0.1, 0.2, 0.7]]),
     {"support": 50, "neutral": 50, "oppose": 50}, "labelled support are read as neutral"),
    (np.array([[0.5, 0.4, 0.1], [0.45, 0.46, 0.09], [0.1, 0.2, 0.7]]),
     {"support": 50, "neutral": 50, "oppose": 50}, "condition number"),
])
def test_a_weak_judge_is_flagged_with_its_reason(confusion, items, reason):
    reasons = weak_judge_reasons(confusion, items)
    assert any(reason in r for r in reasons), reasons


def test_a_good_judge_is_not_flagged():
    assert weak_judge_reasons(JUDGE, dict.fromkeys(STANCES, 50)) == []


def test_soft_confusion_leaves_unreadable_items_out():
    gold = ["support", "support", "neutral", "oppose"]
    readings = np.array([[0.8, 0.1, 0.1], [math.nan] * 3, [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    m = soft_confusion(gold, readings)
    assert m[0] == pytest.approx([0.8, 0.1, 0.1]) and m[2] == pytest.approx([0.2, 0.2, 0.6])
    assert np.isnan(soft_confusion(["support"], readings[:1])[1]).all()
