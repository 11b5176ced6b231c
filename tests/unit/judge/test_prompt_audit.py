"""judge.audit: alternative prompts read the same sampled answers; per alternative the
mean total-variation distance and the share of argmax flips."""

import hashlib
import math

import polars as pl
import pytest
import yaml

from tests.support.workflow import REPO
from value_drifts.judge.audit import audit_prompts, audit_sample, audit_summary
from value_drifts.judge.prompt import load_template

TOPICS = {"Abortion": "abortion rights"}


class PromptHashJudge:
    """First-token log-probabilities that are a fixed function of the whole prompt: the
    same prompt always reads the same, another prompt (most likely) otherwise."""

    def batches(self, prompts):
        tops = []
        for prompt in prompts:
            digest = hashlib.sha256(prompt.encode()).digest()
            tops.append({label: -digest[i] / 16 for i, label in
                         enumerate(("support", "neutral", "oppose"))})
        yield len(prompts), tops


def generations(n=12):
    return pl.DataFrame({"question_id": [f"q{i}" for i in range(n)], "sample": [0] * n,
                         "category": ["Abortion"] * n, "question": ["Is it right?"] * n,
                         "response": [f"Answer number {i}." for i in range(n)]})


def test_an_alternative_identical_to_the_main_prompt_moves_nothing():
    main = load_template(REPO / "config/prompts/judge_response.txt")
    table = audit_prompts(generations(), TOPICS, main,
                          {"same": main, "copy": str(main)}, PromptHashJudge(), 0.0)
    assert table["mean_tv"].to_list() == [0.0, 0.0]
    assert table["flips"].to_list() == [0, 0] and table["flip_share"].to_list() == [0.0, 0.0]
    assert table["answers"].to_list() == [12, 12]


def test_another_wording_moves_the_readings():
    main = load_template(REPO / "config/prompts/judge_response.txt")
    other = load_template(REPO / "config/prompts/judge_response_reworded.txt")
    table = audit_prompts(generations(), TOPICS, main, {"reworded": other},
                          PromptHashJudge(), 0.0)
    assert table["mean_tv"][0] > 0.05 and table["flips"][0] > 0


def test_the_summary_by_hand():
    def frame(rows):
        return pl.DataFrame(rows, schema=["p_support", "p_neutral", "p_oppose"], orient="row")

    main = frame([(0.8, 0.1, 0.1), (0.1, 0.8, 0.1), (0.6, 0.3, 0.1), (math.nan,) * 3])
    alt = frame([(0.8, 0.1, 0.1), (0.8, 0.1, 0.1), (0.5, 0.4, 0.1), (0.1, 0.1, 0.8)])
    summary = audit_summary(main, alt)
    # TV: 0, 0.7, 0.1 over the 3 answers both read; one flip (row 2)
    assert summary["answers"] == 3 and summary["flips"] == 1
    assert summary["mean_tv"] == pytest.approx(0.8 / 3)
    assert summary["flip_share"] == pytest.approx(1 / 3)
    assert summary["unreadable_main"] == 1 and summary["unreadable_alternative"] == 0


def test_the_sample_is_seeded_and_spans_the_study():
    checkpoints = {("m", "base", 0): generations(), ("m", "sft-x", 2): generations()}
    one = audit_sample(checkpoints, 10, seed=0)
    assert one.height == 10 and set(one["run"]) == {"base", "sft-x"}
    reordered = dict(reversed(list(checkpoints.items())))
    assert audit_sample(reordered, 10, seed=0).equals(one)
    assert audit_sample(checkpoints, 100, seed=0).height == 24


def test_the_small_default_audits_the_two_shipped_alternatives():
    judge = yaml.safe_load((REPO / "config/config.yaml").read_text())["judge"]
    assert judge["audit"] == ["config/prompts/judge_response_reordered.txt",
                              "config/prompts/judge_response_reworded.txt"]
    main = (REPO / judge["prompt"]).read_text()
    for path in judge["audit"]:
        assert load_template(REPO / path) != main
    reordered = (REPO / judge["audit"][0]).read_text()
    assert "oppose, neutral, or support" in reordered
