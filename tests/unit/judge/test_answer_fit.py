"""Answers longer than the judge's context are cut to the longest head that fits and
flagged cut_to_fit, for a local judge (its tokenizer, its model's positions, or a
configured window) and for a judge behind a URL (a byte bound); answers that fit are
read as they are."""

from __future__ import annotations

import math

import polars as pl
import pytest

from tests.support.tiny_model import build_tiny_model
from tests.support.workflow import REPO
from value_drifts.judge.answer_fit import (
    AnswerDoesNotFitError,
    byte_fit,
    fitted_answer,
    tokenizer_fit,
)
from value_drifts.judge.backends import make_backend
from value_drifts.judge.health import health_markdown, health_table
from value_drifts.judge.prompt import render
from value_drifts.judge.run import judge_generations

TEMPLATE = (REPO / "config/prompts/judge_response.txt").read_text()
QUESTION = "Should abortion be legal?"
TOPIC = "abortion"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "judge")  # 256 positions


def judge_config(tmp_path, **overrides):
    return {"backend": "transformers", "model": "adapted", "prompt": "unused",
            "top_logprobs": 5, "cache": str(tmp_path / "cache.sqlite"), **overrides}


def generations(responses):
    n = len(responses)
    return pl.DataFrame({
        "question_id": [f"q{i}" for i in range(n)], "category": ["Abortion"] * n,
        "sample": [0] * n, "question": [QUESTION] * n, "response": responses,
    })


@pytest.mark.parametrize("context", [200, 256])
def test_byte_fit_cuts_to_the_longest_head_that_fits(context):
    fit = byte_fit(context)
    long = "I support it. " + "é" * 400  # two bytes a character: a cut inside one is dropped
    overhead = len(render(TEMPLATE, QUESTION, "", TOPIC).encode())
    fit = byte_fit(context + overhead)  # room for `context` bytes of answer, less the reserve
    answer, cut = fitted_answer(TEMPLATE, QUESTION, long, TOPIC, fit)
    assert cut and long.startswith(answer)
    room = context - fit.reserve
    assert room - 1 <= len(answer.encode()) <= room
    assert fit.room(render(TEMPLATE, QUESTION, answer, TOPIC)) >= 0
    assert fitted_answer(TEMPLATE, QUESTION, "I support it.", TOPIC, fit) == ("I support it.", False)
    assert fitted_answer(TEMPLATE, QUESTION, long, TOPIC, None) == (long, False)


def test_a_prompt_too_long_without_an_answer_is_an_error():
    with pytest.raises(AnswerDoesNotFitError, match="judge.context_tokens"):
        fitted_answer(TEMPLATE, QUESTION, "No.", TOPIC, byte_fit(80))


def test_tokenizer_fit_counts_the_prompt_in_its_chat_template(tiny_dir):
    from transformers import AutoTokenizer

    from value_drifts.judge.local import render_chat

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    fit = tokenizer_fit(tokenizer, 256, lambda p: render_chat(tokenizer, p))
    long = "I support it because " + "people deserve a choice, " * 200
    answer, cut = fitted_answer(TEMPLATE, QUESTION, long, TOPIC, fit)
    assert cut and long.startswith(answer.rstrip()[:20]) and len(answer) < len(long)
    read = render_chat(tokenizer, render(TEMPLATE, QUESTION, answer, TOPIC))
    assert len(tokenizer.encode(read, add_special_tokens=False)) <= 255  # one left to answer


@pytest.mark.parametrize("configured", [None, 200])
def test_a_local_judge_reads_long_answers_cut_and_flagged(tiny_dir, tmp_path, configured):
    """The tiny judge has 256 positions (or a configured 200): an answer of ~1,000 tokens
    is judged on a head that fits, its reading is a number, and judge health counts it."""
    overrides = {"context_tokens": configured} if configured else {}
    backend = make_backend(judge_config(tmp_path, **overrides), str(tiny_dir), tmp_path / "s", 1)
    assert backend.answer_fit.context == (configured or 256)
    long = "I support it because " + "people deserve a choice, " * 200
    responses = ["I support it.", long, "No.", "Really. " + long]
    judgments, counts = judge_generations(generations(responses), {"Abortion": TOPIC},
                                          TEMPLATE, backend)
    flags = judgments["answer_flags"].to_list()
    assert [("cut_to_fit" in f) for f in flags] == [False, True, False, True]
    # read by the judge (a random tiny model: label mass is a number, readable or not)
    assert all(not math.isnan(m) for m in judgments["label_mass"].to_list())
    assert counts["answer_flags"]["cut_to_fit"] == 2
    assert counts["answer_flags"]["cut_to_fit_share"] == pytest.approx(0.5)
    assert len(counts["answer_flags"]["examples"]["cut_to_fit"]) == 2
    table = health_table({0: counts["health"]}, {0: counts["answer_flags"]})
    assert table["cut_to_fit"].to_list() == [2, 2]
    assert "| cut |" in health_markdown(table, "run")


def test_a_url_judge_cuts_only_with_a_configured_window(tmp_path):
    """Without context_tokens a judge behind a URL cuts nothing (the server refuses an
    overlong prompt by name); with it, the byte bound decides."""
    settings = {"backend": "openai", "model": "judge", "prompt": "unused",
                "base_url": "http://127.0.0.1:9/v1", "require_api_key": False,
                "cache": str(tmp_path / "cache.sqlite")}
    assert make_backend(settings, "judge", tmp_path / "s", 1).answer_fit is None
    fit = make_backend({**settings, "context_tokens": 1000}, "judge", tmp_path / "s", 1).answer_fit
    assert fit.unit == "bytes" and fit.context == 1000
    assert fitted_answer(TEMPLATE, QUESTION, "x" * 5000, TOPIC, fit)[1]
    assert not fitted_answer(TEMPLATE, QUESTION, "x" * 100, TOPIC, fit)[1]


def test_old_counts_without_the_flag_read_as_unknown():
    old = {"answers": 2, "empty": 0, "short": 1, "base_continuation": 0, "prompt_echo": 0,
           "empty_share": 0.0, "short_share": 0.5, "base_continuation_share": 0.0,
           "prompt_echo_share": 0.0, "examples": {}}
    health = {"answers": 2, "readable": 2, "unreadable": 0, "readable_share": 1.0,
              "mean_label_mass": 0.9, "missing_label_share": 0.0, "off_label_top_tokens": []}
    table = health_table({0: health}, {0: old})
    assert table["cut_to_fit"].to_list() == [None, 0]
