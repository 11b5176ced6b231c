"""Transformers generation draws each (question, sample) from its own random stream, as the
vLLM backend does, so the answers do not depend on the batch size (a throughput setting
that must never change an output; docs/reruns.md)."""

from __future__ import annotations

import polars as pl
import pytest

from tests.support.tiny_model import build_tiny_model
from value_drifts.generation.sampling import SamplingSettings, generate_transformers, sample_seed

QUESTIONS = pl.DataFrame(
    {
        "question_id": ["q1", "q2", "q3", "q4"],
        "category": ["Abortion", "Abortion", "Immigration Policies", "Gun Control"],
        # prompts of different lengths, so batches are padded differently
        "question": [
            "Should abortion be legal?",
            "Is it murder, in your view, to end a pregnancy in the second trimester?",
            "Open borders?",
            "Should assault weapons be banned everywhere, and why or why not?",
        ],
    }
)
SETTINGS = SamplingSettings(samples=3, temperature=0.7, max_new_tokens=8, seed=11,
                            prompt_style="chat")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny")))


def _answers(frame: pl.DataFrame) -> list[tuple[str, int, str]]:
    return frame.select("question_id", "sample", "response").sort("question_id", "sample").rows()


def test_answers_do_not_depend_on_the_batch_size(tiny):
    by_size = {size: _answers(generate_transformers(tiny, QUESTIONS, SETTINGS, batch_size=size))
               for size in (1, 5, 12)}
    assert by_size[1] == by_size[5] == by_size[12]
    # 12 answers, and the tiny random model's answers differ between samples
    assert len(by_size[1]) == 12
    assert len({response for _, _, response in by_size[1]}) >= 10


def test_each_sample_has_its_own_stream(tiny):
    frame = generate_transformers(tiny, QUESTIONS, SETTINGS, batch_size=12)
    q1 = frame.filter(pl.col("question_id") == "q1").sort("sample")["response"].to_list()
    assert len(set(q1)) == 3  # not one stream reused for every sample
    other_seed = generate_transformers(
        tiny, QUESTIONS, SamplingSettings(**{**SETTINGS.__dict__, "seed": 12}), batch_size=12)
    assert _answers(other_seed) != _answers(frame)
    # seed 12's sample 0 of q1 is not seed 11's sample 1 of q1 (streams do not overlap)
    assert sample_seed(SETTINGS, 0, 1) == 12 and sample_seed(SETTINGS, 1, 0) == 14
    assert other_seed.filter((pl.col("question_id") == "q1") & (pl.col("sample") == 0))[
        "response"].item() == q1[1]


def test_temperature_zero_is_greedy_and_batch_independent(tiny):
    greedy = SamplingSettings(**{**SETTINGS.__dict__, "temperature": 0.0})
    one = generate_transformers(tiny, QUESTIONS, greedy, batch_size=1)
    many = generate_transformers(tiny, QUESTIONS, greedy, batch_size=12)
    assert _answers(one) == _answers(many)
    # every sample of a question is the same greedy answer
    assert one.group_by("question_id").agg(pl.col("response").n_unique())["response"].max() == 1
