import math

import pytest

from value_drifts.core.stances import STANCES
from value_drifts.judge.stance import (
    DEFAULT_FLOOR_LOGPROB,
    decoded_token,
    is_measured,
    judge_health,
    label_of_token,
    read_stance,
    softmax,
    unreadable_problem,
)


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
    # the labels hold 3 e^-3 = 0.149 of the probability: below the 0.5 a reading needs
    reading = read_stance({"Sorry": -0.1, "support": -3.0, "neutral": -3.0, "oppose": -3.0})
    assert not reading.top_is_label
    assert reading.top_token == "Sorry"
    assert not reading.readable
    assert reading.label_mass == pytest.approx(3 * math.exp(-3))
    assert all(math.isnan(p) for p in reading.probabilities)


def test_an_off_label_top_token_with_most_mass_on_labels_is_still_read():
    reading = read_stance({"The": math.log(0.4), "support": math.log(0.35),
                           "oppose": math.log(0.25)})
    assert reading.readable and not reading.top_is_label
    assert reading.label_mass == pytest.approx(0.6)
    assert reading.probabilities[0] == pytest.approx(0.35 / 0.6, rel=1e-6)


def test_an_empty_answer_is_unreadable_not_an_error():
    reading = read_stance({})
    assert not reading.readable and reading.top_token == "" and reading.label_mass == 0
    assert reading.missing_labels == STANCES
    assert all(math.isnan(p) for p in reading.probabilities)


@pytest.mark.parametrize(
    "top",
    [
        {"<think>": -0.001, "Okay": -8.0, "The": -9.0},  # a reasoning judge: no label at all
        {"<think>": -0.001, "support": -8.0, "neutral": -8.0, "oppose": -8.0},  # mass ~0.001
        {"**": -0.05, "Support": -3.5},  # a markdown judge: the label comes after "**"
        {"\n": -0.01, "I": -5.0},  # a judge that starts with a newline
    ],
    ids=["think-no-labels", "think-labels-low", "markdown", "newline"],
)
def test_answers_without_label_mass_are_unreadable(top):
    reading = read_stance(top)
    assert not reading.readable
    assert reading.label_mass < 0.05
    assert all(math.isnan(p) for p in reading.probabilities)
    assert not reading.top_is_label


@pytest.mark.parametrize(
    "placeholder", [-9999.0, -9999.5, -math.inf, math.nan, -1e10, None, "n/a"],
)
def test_placeholder_logprobs_mean_absent(placeholder):
    top = {"support": placeholder, "neutral": placeholder, "oppose": placeholder, "The": -0.001}
    reading = read_stance(top)
    assert not reading.readable
    assert reading.missing_labels == STANCES
    assert reading.top_token == "The"
    assert all(math.isnan(p) for p in reading.probabilities)


def test_one_placeholder_label_is_missing_and_floored():
    reading = read_stance({"support": -0.1, "neutral": -9999.0, "oppose": -2.5})
    assert reading.readable and reading.missing_labels == ("neutral",)
    assert reading.probabilities[1] < 1e-8
    assert reading.probabilities[0] == pytest.approx(
        math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.5)), rel=1e-6)


def test_is_measured():
    assert is_measured(-0.5) and is_measured(0.0) and is_measured(-9998.9)
    assert not any(is_measured(x) for x in (-9999, -math.inf, math.nan, None, "x"))


def test_raw_byte_level_pieces_map_to_labels():
    reading = read_stance({"Ġsupport": -0.2, "Ġneutral": -2.0, "Ġoppose": -3.0})
    assert reading.readable and reading.missing_labels == ()
    assert reading.probabilities == pytest.approx((0.816, 0.135, 0.050), abs=5e-4)


@pytest.mark.parametrize(
    "token,text,label",
    [
        ("Ġsupport", " support", "support"),  # byte-level BPE: Ġ is a space
        ("ĊSupport", "\nSupport", "support"),  # Ċ is a newline
        ("ĉoppose", "\toppose", "oppose"),  # ĉ is a tab
        ("ĠNeutral", " Neutral", "neutral"),
        ("▁oppose", " oppose", "oppose"),  # SentencePiece: ▁ is a space
        ("▁▁support", "  support", "support"),
        ("<0x20>neutral", " neutral", "neutral"),  # byte-fallback tokens
        ("<0x0A>Oppose", "\nOppose", "oppose"),
        ("Ġ**", " **", None),
        ("<0x0A>", "\n", None),
        ("support", "support", "support"),  # decoded text is unchanged
        ("ÃŃ", "í", None),  # a byte-level piece of a multi-byte character
    ],
)
def test_decoded_token_handles_the_piece_family(token, text, label):
    assert decoded_token(token) == text
    assert label_of_token(token) == label


def test_pieces_and_decoded_forms_of_one_label_add_up():
    reading = read_stance({"Ġsupport": math.log(0.3), " support": math.log(0.3),
                           "▁neutral": math.log(0.3), "<0x20>oppose": math.log(0.1)})
    assert reading.probabilities == pytest.approx((0.6, 0.3, 0.1))


def test_min_label_mass_is_a_setting():
    top = {"The": math.log(0.45), "support": math.log(0.3), "oppose": math.log(0.25)}
    assert read_stance(top).readable  # 0.55 of the mass on labels, default threshold 0.5
    assert not read_stance(top, min_label_mass=0.6).readable
    assert read_stance(top, min_label_mass=0.0).readable
    assert not read_stance({"The": -0.01}, min_label_mass=0.0).readable  # no label at all


def test_judge_health_counts_and_off_label_tokens():
    readings = (
        [read_stance({"<think>": -0.001})] * 3
        + [read_stance({"**": -0.01})]
        + [read_stance({"support": -0.01, "neutral": -5.0})] * 6
    )
    health = judge_health(readings)
    assert health["answers"] == 10 and health["readable"] == 6 and health["unreadable"] == 4
    assert health["readable_share"] == pytest.approx(0.6)
    assert health["missing_label_share"] == pytest.approx(1.0)  # every answer lacks oppose
    assert health["off_label_top_tokens"] == [["<think>", 3], ["**", 1]]
    expected_mass = 6 * (math.exp(-0.01) + math.exp(-5.0)) / 10
    assert health["mean_label_mass"] == pytest.approx(expected_mass)


def test_the_gate_names_the_checkpoint_share_and_tokens():
    health = judge_health([read_stance({"<think>": -0.001, "Okay": -8.0})] * 44)
    message = unreadable_problem(health, 0.05, "results/m/sft-x/step-4")
    assert message.startswith("results/m/sft-x/step-4: 44 of 44 judge answers are unreadable")
    assert "`<think>` (44 of 44): this judge does not answer with a label first" in message
    assert "above judge.max_unreadable_share = 5%" in message


def test_the_gate_allows_a_share_up_to_its_limit():
    ok = [read_stance({"support": -0.1, "neutral": -3.0, "oppose": -3.0})] * 19
    bad = [read_stance({"**": -0.01})]
    assert unreadable_problem(judge_health(ok + bad), 0.05, "x") is None  # 1 of 20 = 5%
    assert unreadable_problem(judge_health(ok[:18] + bad * 2), 0.05, "x") is not None
    assert unreadable_problem(judge_health([]), 0.05, "x") is None


def test_the_gate_explains_low_mass_on_label_first_tokens():
    # labels first, but the rest of the list holds most of the probability
    top = {"support": math.log(0.2), "neutral": math.log(0.1), "oppose": math.log(0.1),
           "x": math.log(0.19), "y": math.log(0.19), "z": math.log(0.19)}
    health = judge_health([read_stance(top)] * 4)
    message = unreadable_problem(health, 0.05, "step-2")
    assert "mean label mass 0.400" in message


def test_softmax_is_stable():
    assert softmax(__import__("numpy").array([1000.0, 1000.0])).tolist() == [0.5, 0.5]
