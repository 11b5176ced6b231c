"""judge.reference: its section, its sample of answers and its own settings."""

import copy

import polars as pl
import pytest

from value_drifts.core.config import ConfigError, reference_judge, validate_config
from value_drifts.judge.reference import reference_output_settings, sample_answers
from value_drifts.judge.run import judge_output_settings


def generations(questions=12, samples=2, categories=3):
    rows = [{"question_id": f"q{i}", "sample": s, "category": f"c{i % categories}",
             "question": "Q?", "response": f"r{i}-{s}"}
            for i in range(questions) for s in range(samples)]
    return pl.DataFrame(rows)


def test_the_sample_is_the_same_answers_at_every_checkpoint_and_spans_categories():
    one = sample_answers(generations(), 6, seed=0)
    assert one.height == 6
    assert one["category"].value_counts()["count"].to_list() == [2, 2, 2]
    # another checkpoint: other responses, rows in another order, same (question, sample)
    other = generations().with_columns(pl.col("response") + "!").reverse()
    key = ["question_id", "sample"]
    assert sample_answers(other, 6, seed=0).select(key).sort(key).equals(one.select(key).sort(key))
    assert not sample_answers(generations(), 6, seed=1).select(key).sort(key).equals(
        one.select(key).sort(key))
    assert sample_answers(generations(), None, seed=0).height == 24
    assert sample_answers(generations(2, 1), 8, seed=0).height == 2


def test_the_reference_section_defaults_to_the_main_prompt_and_cache(small_config):
    judge = small_config["judge"]
    judge["cache"] = "elsewhere.sqlite"
    section = reference_judge(judge)
    assert section["prompt"] == judge["prompt"] and section["cache"] == "elsewhere.sqlite"
    assert "answers_per_checkpoint" not in section
    assert reference_judge({"backend": "openai", "model": "m", "prompt": "p"}) is None


def test_the_main_judges_settings_never_hold_the_reference(small_config):
    judge = small_config["judge"]
    without = copy.deepcopy(judge)
    without.pop("reference")
    assert judge_output_settings(judge) == judge_output_settings(without)
    settings = reference_output_settings(judge, 0)
    assert settings["model"] == judge["reference"]["model"]
    assert settings["answers_per_checkpoint"] == judge["reference"]["answers_per_checkpoint"]
    assert settings["prompt"] == judge["prompt"]


def test_a_reference_judge_is_checked_against_the_judge_schema(small_config):
    validate_config(small_config)
    small_config["judge"]["reference"] = {"backend": "transformers", "model": "m",
                                          "top_logprobs": 50, "adapt": {}}
    with pytest.raises(ConfigError) as error:
        validate_config(small_config)
    assert "judge.reference.top_logprobs" in str(error.value)
    assert "judge.reference.adapt: not a key of a reference judge" in str(error.value)
