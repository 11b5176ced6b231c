import math

import pytest

from value_drifts.stance import DEFAULT_FLOOR_LOGPROB, label_of_token, read_stance, softmax


@pytest.mark.parametrize(
    "token,label",
    [
        ("support", "support"), (" Support", "support"), ("SUPPORT.", "support"),
        ("supportive", "support"), ("neutral", "neutral"), (" Neutral", "neutral"),
        ("oppose", "oppose"), ("Opposed", "oppose"), ("op", "oppose"), ("neut", "neutral"),
        ("I", None), ("yes", None), ("", None), ("o", None),
    ],
)
def test_label_of_token(token, label):
    assert label_of_token(token) == label


def test_read_stance_is_softmax_over_the_three_labels():
    reading = read_stance({"support": math.log(0.6), "neutral": math.log(0.2),
                           "oppose": math.log(0.1), "I": math.log(0.1)})
    assert reading.probabilities == pytest.approx((0.6 / 0.9, 0.2 / 0.9, 0.1 / 0.9))
    assert reading.missing_labels == ()
    assert reading.top_is_label


def test_read_stance_adds_variants_of_one_label():
    reading = read_stance({"support": math.log(0.3), " Support": math.log(0.3),
                           "neutral": math.log(0.3), "oppose": math.log(0.1)})
    assert reading.probabilities[0] == pytest.approx(0.6 / 1.0)


def test_read_stance_floors_missing_labels_and_reports_them():
    reading = read_stance({"support": math.log(0.9), "The": math.log(0.05)})
    assert reading.missing_labels == ("neutral", "oppose")
    expected_other = math.exp(DEFAULT_FLOOR_LOGPROB) / (0.9 + 2 * math.exp(DEFAULT_FLOOR_LOGPROB))
    assert reading.probabilities[1] == pytest.approx(expected_other)


def test_read_stance_reports_off_label_top_token():
    reading = read_stance({"Sorry": -0.1, "support": -3.0, "neutral": -3.0, "oppose": -3.0})
    assert not reading.top_is_label
    assert reading.top_token == "Sorry"
    assert reading.probabilities == pytest.approx((1 / 3,) * 3)


def test_read_stance_rejects_empty_answer():
    with pytest.raises(ValueError):
        read_stance({})


def test_softmax_is_stable():
    assert softmax(__import__("numpy").array([1000.0, 1000.0])).tolist() == [0.5, 0.5]
