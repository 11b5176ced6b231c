import numpy as np
import pytest

from tests.workflow import REPO
from value_drifts.agreement import (
    agreement_markdown,
    agreement_metrics,
    expected_calibration_error,
    load_labelled_set,
)


def test_labelled_set_is_balanced_over_stances_and_categories():
    items = load_labelled_set(REPO / "resources/stance_agreement.yaml")
    assert items.height >= 60
    assert items.group_by("stance").len()["len"].to_list() == [22, 22, 22]
    assert items["category"].n_unique() == 11
    assert {"hedged", "refusal"} <= set(items["kind"])
    assert items["question_id"].is_unique().all()


def test_metrics_on_a_hand_computed_case():
    labels = ["support", "support", "neutral", "oppose"]
    probs = np.array([
        [0.9, 0.05, 0.05],  # support, right, confidence 0.9
        [0.2, 0.7, 0.1],    # neutral, wrong, 0.7
        [0.1, 0.8, 0.1],    # neutral, right, 0.8
        [0.1, 0.2, 0.7],    # oppose, right, 0.7
    ])
    metrics = agreement_metrics(labels, probs)
    assert metrics["accuracy"] == pytest.approx(0.75)
    # F1: support 2/3 (p=1, r=.5), neutral 2/3 (p=.5, r=1), oppose 1
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert metrics["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    # bins: 0.7 (two items: 1 right of 2) -> |0.5-0.7|, 0.8 -> |1-0.8|, 0.9 -> |1-0.9|
    assert metrics["expected_calibration_error"] == pytest.approx(
        0.5 * 0.2 + 0.25 * 0.2 + 0.25 * 0.1
    )
    assert "accuracy 0.75" in agreement_markdown(metrics, {"plain": 0.75}, "judge")


def test_unreadable_answers_count_as_wrong_and_stay_out_of_calibration():
    labels = ["support", "support", "neutral", "oppose"]
    nan = float("nan")
    probs = np.array([
        [0.9, 0.05, 0.05],  # support, right, 0.9
        [nan, nan, nan],    # unreadable: wrong, not argmax 0 ("support") as NaN would give
        [0.1, 0.8, 0.1],    # neutral, right, 0.8
        [nan, nan, nan],    # unreadable
    ])
    metrics = agreement_metrics(labels, probs)
    assert metrics["unreadable"] == 2
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["predicted"] == ["support", "unreadable", "neutral", "unreadable"]
    assert metrics["unreadable_by_label"] == [1, 0, 1]
    assert metrics["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    # F1: support 2/3 (p=1, r=.5), neutral 1, oppose 0
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    # two readable items, both right, confidences 0.9 and 0.8
    assert metrics["expected_calibration_error"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.2)
    assert "2 unreadable answers" in agreement_markdown(metrics, {}, "judge")


def test_perfectly_calibrated_judge_has_zero_ece():
    assert expected_calibration_error([1.0, 1.0, 0.5, 0.5], [True, True, True, False]) == 0.0
