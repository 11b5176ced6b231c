"""Answers that are not answers: empty ones are not judged and not stances; short ones,
base-style continuations and answers echoing the judge prompt are judged, counted per
checkpoint with examples, and shown in judge health."""

from __future__ import annotations

import math

import polars as pl
import pytest

from tests.support.workflow import REPO
from value_drifts.judge.answer_flags import answer_flags, flag_counts
from value_drifts.judge.health import health_markdown, health_table
from value_drifts.judge.run import check_readable, judge_generations

TEMPLATE = (REPO / "config/prompts/judge_response.txt").read_text()


@pytest.mark.parametrize(("response", "flags"), [
    ("", ("empty",)),
    ("   \n\t ", ("empty",)),
    (None, ("empty",)),
    ("No.", ("short",)),
    ("Yes", ("short",)),
    ("I support it.", ()),
    ("Abortion should be legal.\nQuestion: Should guns be banned?\nResponse: No",
     ("base_continuation",)),
    ("No.\nTopic: the death penalty\nAnswer with exactly one word: support, neutral, or oppose.",
     ("prompt_echo",)),
    ("No.\nanswer with exactly one word: SUPPORT, neutral, or oppose.", ("prompt_echo",)),
    ("No.\nTopic: abortion", ("prompt_echo",)),
    ("The topic: abortion. I have no view.", ()),  # 'topic:' inside a line is prose
])
def test_flags(response, flags):
    assert answer_flags(response, TEMPLATE) == flags


class CountingBackend:
    """A judge that reads 'support' for every prompt and counts what it is asked."""

    def __init__(self):
        self.prompts: list[str] = []

    def batches(self, prompts):
        self.prompts += prompts
        yield len(prompts), [{"support": -0.1, "neutral": -3.0, "oppose": -4.0} for _ in prompts]


def test_empty_answers_are_not_judged_and_not_stances():
    responses = ["I support it.", "", "No.", "  ", "Fine.\nQuestion: more?", "Yes, I do."]
    generations = pl.DataFrame({
        "question_id": [f"q{i}" for i in range(6)], "category": ["Abortion"] * 6,
        "sample": [0] * 6, "question": ["Should abortion be legal?"] * 6, "response": responses,
    })
    backend = CountingBackend()
    judgments, counts = judge_generations(generations, {"Abortion": "abortion"}, TEMPLATE,
                                          backend)
    assert len(backend.prompts) == 4  # the two empty answers never reach the judge
    p_support = judgments["p_support"].to_list()
    assert math.isnan(p_support[1]) and math.isnan(p_support[3])
    assert all(p > 0.9 for i, p in enumerate(p_support) if i not in (1, 3))
    assert judgments["answer_flags"].to_list() == ["", "empty", "short", "empty",
                                                   "base_continuation", ""]
    # the judge's health is about the judge: the empty answers are not its failures
    assert counts["judged"] == 4 and counts["health"]["answers"] == 4
    assert counts["health"]["unreadable"] == 0
    check_readable(counts["health"], {"max_unreadable_share": 0.0}, "here")
    flags = counts["answer_flags"]
    assert flags["answers"] == 6 and flags["empty"] == 2 and flags["short"] == 1
    assert flags["short_share"] == pytest.approx(1 / 6)
    assert flags["examples"]["base_continuation"] == [repr("Fine.\nQuestion: more?")]


def test_judge_health_shows_the_flags_per_checkpoint_and_for_the_run():
    health = {"answers": 4, "readable": 4, "unreadable": 0, "readable_share": 1.0,
              "mean_label_mass": 0.9, "missing_label_share": 0.0, "off_label_top_tokens": []}
    collapsed = ["No."] * 3 + [""]
    flags = {0: flag_counts(["I support it."] * 4, [()] * 4),
             4: flag_counts(collapsed, [answer_flags(r, TEMPLATE) for r in collapsed])}
    table = health_table({0: health, 4: health}, flags)
    assert table["short_share"].to_list() == [0.0, 0.75, 3 / 8]
    assert table["empty"].to_list() == [0, 1, 1]
    markdown = health_markdown(table, "t")
    assert "| empty | short share | continued | echo |" in markdown
    assert "| 0.750 |" in markdown


def test_counts_made_before_the_flags_show_as_missing():
    health = {"answers": 1, "readable": 1, "unreadable": 0, "readable_share": 1.0,
              "mean_label_mass": 0.9, "missing_label_share": 0.0, "off_label_top_tokens": []}
    table = health_table({0: health, 2: health},
                         {0: None, 2: flag_counts(["No."], [("short",)])})
    assert table["empty"].to_list() == [None, 0, None]
    assert "| – |" in health_markdown(table, "t")
