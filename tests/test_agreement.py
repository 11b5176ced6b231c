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


def test_perfectly_calibrated_judge_has_zero_ece():
    assert expected_calibration_error([1.0, 1.0, 0.5, 0.5], [True, True, True, False]) == 0.0
