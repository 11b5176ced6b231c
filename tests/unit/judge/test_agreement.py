import numpy as np
import pytest

from tests.support.workflow import REPO
from value_drifts.data.user_files import UsageError
from value_drifts.judge.agreement import (
    agreement_markdown,
    agreement_metrics,
    expected_calibration_error,
    load_labelled_set,
)


def test_labelled_set_is_balanced_over_stances_and_categories():
    items, read = load_labelled_set(REPO / "resources/stance_agreement.yaml")
    assert read["items"] == items.height and read["skipped"] == {}
    assert items.height >= 60
    assert sorted(items.group_by("stance").len()["len"].to_list()) == [55, 55, 55]
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


TOPICS = {"Abortion": "abortion rights", "Immigration Policies": "immigration"}


def test_your_own_labelled_set_is_read_with_bad_rows_counted_and_named(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join([
        '{"question": "Legal?", "response": "Yes, legal.", "label": "Support", '
        '"category": "Abortion", "id": "a1"}',
        '{"question": "Open borders?", "response": "It depends.", "stance": "neutral", '
        '"topic": "immigration", "kind": "hedged"}',
        '{"question": "Legal?", "response": "No.", "label": "agree", "category": "Abortion"}',
        '{"question": "Taxes?", "response": "Lower.", "label": "oppose", "category": "Taxes"}',
        '{"question": "Walls?", "response": "Yes.", "label": "support", "topic": "walls"}',
        '{"question": "", "response": "No.", "label": "oppose", "category": "Abortion"}',
        '{"question": "Ban?", "response": "No.", "label": "oppose", "category": "Abortion"}',
    ]) + "\n")
    items, read = load_labelled_set(path, TOPICS)
    assert items["question_id"].to_list() == ["a1", "item-2", "item-7"]
    assert items["stance"].to_list() == ["support", "neutral", "oppose"]
    assert items["category"].to_list() == ["Abortion", "Immigration Policies", "Abortion"]
    assert items["kind"].to_list() == ["labelled", "hedged", "labelled"]
    assert read["items"] == 3
    assert read["skipped"] == {
        "label 'agree' is no stance (support, neutral, oppose)": 1,
        "unknown category 'Taxes'": 1, "unknown topic 'walls'": 1, "empty question": 1,
    }
    assert read["first_seen"]["unknown category 'Taxes'"] == "line 4"
    metrics = agreement_metrics(items["stance"].to_list(),
                                np.eye(3)[[0, 1, 2]].astype(float))
    metrics["labelled_set"] = read
    markdown = agreement_markdown(metrics, {}, "judge")
    assert "- unknown topic 'walls': 1 (first at line 5)" in markdown


def test_a_csv_labelled_set_and_one_with_nothing_usable(tmp_path):
    good = tmp_path / "mine.csv"
    good.write_text("question,response,label,category\n"
                    "\"Legal?\",\"Yes, with limits.\",oppose,Abortion\n")
    items, read = load_labelled_set(good, TOPICS)
    assert items.row(0, named=True)["response"] == "Yes, with limits." and read["items"] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,answer,label\nLegal?,Yes,yes\n")
    with pytest.raises(UsageError, match=r"no usable labelled item \(columns seen: prompt, "
                       r"answer, label\); empty question: 1 \(first at line 2\)"):
        load_labelled_set(bad, TOPICS)
