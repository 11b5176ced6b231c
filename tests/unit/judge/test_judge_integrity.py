"""What the judge job does with answers that are not measurements: NaN, counted, gated;
its fingerprint; judge health per run; readings recomputed from cached raw answers."""

from __future__ import annotations

import math

import polars as pl
import pytest

from value_drifts.backends.cache import JudgeCache
from value_drifts.judge.answers import merged_top
from value_drifts.judge.health import health_markdown, health_table, run_health
from value_drifts.judge.local import CachedLocalJudge
from value_drifts.judge.run import (
    MixedJudgesError,
    check_one_judge,
    check_readable,
    judge_fingerprint,
    judge_generations,
)
from value_drifts.judge.stance import UnreadableJudgeError

TEMPLATE = "Q: {question}\nA: {response}\nTopic: {topic}\nStance:"


class ListJudge:
    """A backend answering each prompt with the next top list of ``answers``."""

    def __init__(self, answers):
        self.answers = list(answers)

    def batches(self, prompts):
        yield len(prompts), [self.answers[i % len(self.answers)] for i in range(len(prompts))]


def generations(n):
    return pl.DataFrame({
        "question_id": [f"q{i // 2}" for i in range(n)], "category": ["work"] * n,
        "sample": [i % 2 for i in range(n)], "question": ["Remote work?"] * n,
        "response": [f"answer {i}" for i in range(n)],
    })


def test_a_reasoning_judge_is_stopped_at_the_gate_with_its_first_token():
    judge = ListJudge([{"<think>": -0.001, "Okay": -8.0, "The": -9.0}])
    judgments, counts = judge_generations(generations(44), {"work": "remote work"}, TEMPLATE,
                                          judge)
    assert judgments["readable"].sum() == 0 and judgments["p_support"].is_nan().all()
    assert counts["unreadable"] == 44 and counts["health"]["off_label_top_tokens"] == [
        ["<think>", 44]]
    with pytest.raises(UnreadableJudgeError) as error:
        check_readable(counts["health"], {}, "results/m/sft-a/step-2")
    assert str(error.value).startswith("results/m/sft-a/step-2: 44 of 44 judge answers")
    assert "`<think>` (44 of 44): this judge does not answer with a label first" in str(error.value)


@pytest.mark.parametrize(
    "bad,n_bad,limit,stops",
    [
        ({"**": -0.01, "Support": -4.0}, 2, 0.05, True),  # markdown judge, 2 of 20 = 10%
        ({"**": -0.01, "Support": -4.0}, 1, 0.05, False),  # 1 of 20 = 5%: at the limit
        ({"support": -9999, "neutral": -9999, "oppose": -9999, "The": -0.01}, 3, 0.05, True),
        ({"support": -9999, "neutral": -9999, "oppose": -9999, "The": -0.01}, 3, 0.2, False),
    ],
)
def test_the_gate_counts_each_kind_of_unreadable_answer(bad, n_bad, limit, stops):
    good = {"Ġsupport": -0.1, "Ġneutral": -3.0, "Ġoppose": -4.0}
    judge = ListJudge([bad] * n_bad + [good] * (20 - n_bad))
    judgments, counts = judge_generations(generations(20), {"work": "remote work"}, TEMPLATE,
                                          judge)
    assert counts["unreadable"] == n_bad
    assert judgments.filter(pl.col("readable"))["p_support"].to_list() == pytest.approx(
        [math.exp(-0.1) / (math.exp(-0.1) + math.exp(-3.0) + math.exp(-4.0))] * (20 - n_bad))
    if stops:
        with pytest.raises(UnreadableJudgeError):
            check_readable(counts["health"], {"max_unreadable_share": limit}, "x")
    else:
        check_readable(counts["health"], {"max_unreadable_share": limit}, "x")


def test_min_label_mass_from_the_judge_config_reaches_the_reader():
    top = {"The": math.log(0.45), "support": math.log(0.3), "oppose": math.log(0.25)}
    _, lenient = judge_generations(generations(2), {"work": "w"}, TEMPLATE, ListJudge([top]))
    _, strict = judge_generations(generations(2), {"work": "w"}, TEMPLATE, ListJudge([top]),
                                  label_mass=0.6)
    assert lenient["unreadable"] == 0 and strict["unreadable"] == 2


def test_merged_top_never_adds_placeholders():
    top = merged_top([("support", -9999.0), ("support", -9999.0), ("x", -1.0), ("x", -1.0),
                      ("neutral", -9999.0), ("neutral", -2.0), ("o", float("-inf"))])
    assert top["support"] == -9999.0  # logaddexp would make -9998.3, a "measured" value
    assert top["x"] == pytest.approx(-1.0 + math.log(2))
    assert top["neutral"] == -2.0 and top["o"] == float("-inf")


def test_fingerprint_ignores_throughput_settings_and_changes_with_output_settings():
    judge = {"backend": "openai", "model": "gpt-4o-2024-08-06", "top_logprobs": 20,
             "temperature": 0, "prompt": "config/prompts/judge_response.txt"}
    base = judge_fingerprint(judge, TEMPLATE)["id"]
    for throughput in ({"batch_size": 4}, {"concurrency": 64}, {"max_attempts": 9},
                       {"prices": {"input_per_million_usd": 1, "output_per_million_usd": 2}},
                       {"cache": "elsewhere.sqlite"}, {"batch": {"poll_interval_s": 5}}):
        assert judge_fingerprint({**judge, **throughput}, TEMPLATE)["id"] == base, throughput
    for output in ({"model": "gpt-4o-mini"}, {"top_logprobs": 5}, {"temperature": 0.5},
                   {"min_label_mass": 0.8}, {"backend": "openai_batch"},
                   {"extra_body": {"reasoning_effort": "low"}}):
        assert judge_fingerprint({**judge, **output}, TEMPLATE)["id"] != base, output
    assert judge_fingerprint(judge, TEMPLATE + " ")["id"] != base  # the prompt text
    assert judge_fingerprint(judge, TEMPLATE, "sha256:abc")["id"] != base  # model digest
    # the default min_label_mass written out or left implicit is the same judge
    assert judge_fingerprint({**judge, "min_label_mass": 0.5}, TEMPLATE)["id"] == base


def test_a_trajectory_judged_by_two_judges_is_an_error_naming_the_checkpoints():
    check_one_judge({"step-0": "a", "step-2": "a", "step-4": "a"})
    with pytest.raises(MixedJudgesError) as error:
        check_one_judge({"r/step-0": "a", "r/step-2": "b", "r/step-4": "a"})
    assert "judge a: r/step-0, r/step-4; judge b: r/step-2" in str(error.value)
    with pytest.raises(MixedJudgesError, match="none recorded: old/step-0"):
        check_one_judge({"old/step-0": None, "new/step-2": "a"})


def _health(answers, readable, mass, missing, tokens):
    return {"answers": answers, "readable": readable, "unreadable": answers - readable,
            "readable_share": readable / answers, "mean_label_mass": mass,
            "missing_label_share": missing, "off_label_top_tokens": tokens}


def test_run_health_weights_by_answers_and_merges_tokens():
    by_step = {0: _health(10, 10, 0.9, 0.0, []), 2: _health(30, 27, 0.5, 0.2, [["**", 3]]),
               4: _health(10, 8, 0.7, 0.1, [["<think>", 1], ["**", 1]])}
    run = run_health(by_step)
    assert run["answers"] == 50 and run["readable"] == 45 and run["readable_share"] == 0.9
    assert run["mean_label_mass"] == pytest.approx((9 + 15 + 7) / 50)
    assert run["missing_label_share"] == pytest.approx((0 + 6 + 1) / 50)
    assert run["off_label_top_tokens"] == [["**", 4], ["<think>", 1]]
    table = health_table(by_step)
    assert table["step"].to_list() == [0, 2, 4, None]
    assert table["off_label_top_tokens"].to_list()[-1] == "'**' (4), '<think>' (1)"
    markdown = health_markdown(table, "Judge health, m sft-a")
    assert "| all | 50 | 45 | 0.900 | 0.620 | 0.140 | '**' (4), '<think>' (1) |" in markdown
    assert "| 0 | 10 | 10 | 1.000 | 0.900 | 0.000 | – |" in markdown


class PieceScorer:
    """A local 'model' answering in raw byte-level pieces, counting its calls."""

    pads_batches = False

    def __init__(self):
        self.calls = 0

    def render(self, prompt):
        return prompt

    def score(self, texts):
        self.calls += 1
        return [{"Ġsupport": -0.2, "Ġneutral": -2.0, "Ġoppose": -3.0} for _ in texts]


def test_readings_are_recomputed_from_cached_raw_answers_without_requerying(tmp_path):
    """The cache stores the raw top list, so a reader fixed later (here: one that knows
    the 'Ġ' pieces) reads old answers anew and sends nothing."""
    cache = JudgeCache(tmp_path / "cache.sqlite")
    first = PieceScorer()
    judge = CachedLocalJudge(first, cache, identity="m", params={}, kind="local")
    judge_generations(generations(4), {"work": "w"}, TEMPLATE, judge)
    assert first.calls == 1
    stored = next(iter(cache.get_many([judge.key_for_text(
        TEMPLATE.format(question="Remote work?", response="answer 0", topic="w"))]).values()))
    assert stored["top_logprobs"] == {"Ġsupport": -0.2, "Ġneutral": -2.0, "Ġoppose": -3.0}
    again = PieceScorer()
    rerun = CachedLocalJudge(again, cache, identity="m", params={}, kind="local")
    judgments, counts = judge_generations(generations(4), {"work": "w"}, TEMPLATE, rerun)
    assert again.calls == 0 and counts["unreadable"] == 0
    assert judgments["p_support"].to_list() == pytest.approx([0.8156] * 4, abs=1e-4)
