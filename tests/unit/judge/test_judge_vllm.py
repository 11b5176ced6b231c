"""The vLLM offline judge, against a stand-in ``vllm`` module (vLLM needs a GPU machine).

The stand-in follows vLLM's public shapes (vllm/entrypoints/llm.py, vllm/outputs.py,
vllm/logprobs.py): ``LLM(model, *, tensor_parallel_size, seed, **engine_args)``,
``LLM.generate(prompts, sampling_params, *, use_tqdm)`` returning one ``RequestOutput``
per prompt in input order, ``RequestOutput.outputs[i].logprobs[position]`` a dict
``token_id -> Logprob(logprob, rank, decoded_token)`` holding the top-k plus the sampled
token. Its log-probabilities are a deterministic function of the prompt's token ids.
"""

from __future__ import annotations

import hashlib
import math
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pytest

from tests.support.tiny_model import build_tiny_model
from value_drifts.judge.backends import backend_counts, make_backend
from value_drifts.judge.local import render_chat
from value_drifts.judge.run import judge_generations
from value_drifts.judge.vllm_backend import (
    JudgeOutputError,
    first_position_top,
    judge_max_model_len,
)

PROMPTS = [f"Question {i}: should the death penalty end? Response: reply {i}." for i in range(7)]


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    max_tokens: int | None = 16
    logprobs: int | None = None
    seed: int | None = None


@dataclass
class StandIn:
    """What the stand-in engine saw."""

    tokenizer: Any = None
    label_ids: dict[str, int] = field(default_factory=dict)
    engines: list[dict[str, Any]] = field(default_factory=list)
    generate_calls: list[tuple[list[Any], SamplingParams, bool]] = field(default_factory=list)
    drop_logprobs: bool = False


def scores_for(token_ids: list[int], label_ids: dict[str, int]) -> dict[int, float]:
    """Label-token logprobs from a hash of the prompt ids; filler ids far below."""
    digest = hashlib.sha256(str(token_ids).encode()).digest()
    raw = {tid: digest[i] / 40.0 for i, tid in enumerate(label_ids.values())}
    raw.update({1000 + i: digest[10 + i] / 80.0 - 3.0 for i in range(20)})
    norm = math.log(sum(math.exp(v) for v in raw.values()))
    return {tid: v - norm for tid, v in raw.items()}


def make_vllm_module(state: StandIn) -> types.ModuleType:
    module = types.ModuleType("vllm")

    class LLM:
        def __init__(self, model: str, *, tensor_parallel_size: int = 1, seed: int | None = None,
                     **kwargs: Any):
            state.engines.append({"model": model, "tensor_parallel_size": tensor_parallel_size,
                                  "seed": seed, **kwargs})
            self._counter = 0

        def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None):
            prompts = prompts if isinstance(prompts, list) else [prompts]
            state.generate_calls.append((prompts, sampling_params, use_tqdm))
            outputs = []
            for prompt in prompts:
                ids = prompt["prompt_token_ids"]
                scores = scores_for(ids, state.label_ids)
                ranked = sorted(scores.items(), key=lambda kv: -kv[1])
                top = dict(ranked[: sampling_params.logprobs])
                position = {
                    tid: Logprob(lp, rank, None if tid == 1000 else state.tokenizer.decode([tid]))
                    for rank, (tid, lp) in enumerate(top.items(), start=1)
                }
                best = ranked[0][0]
                outputs.append(RequestOutput(
                    request_id=str(self._counter), prompt=None, prompt_token_ids=ids,
                    prompt_logprobs=None, finished=True,
                    outputs=[CompletionOutput(
                        index=0, text=state.tokenizer.decode([best]), token_ids=[best],
                        cumulative_logprob=ranked[0][1],
                        logprobs=None if state.drop_logprobs else [position],
                        finish_reason="length",
                    )],
                ))
                self._counter += 1
            return outputs

    module.LLM = LLM
    module.SamplingParams = SamplingParams
    module.RequestOutput = RequestOutput
    module.CompletionOutput = CompletionOutput
    return module


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "judge")


@pytest.fixture
def stand_in(model_dir, monkeypatch):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    labels = ["support", " support", "neutral", "oppose", " Opp"]
    label_ids = {}
    for label in labels:
        ids = tokenizer.encode(label, add_special_tokens=False)
        label_ids[label] = ids[0]
    state = StandIn(tokenizer=tokenizer, label_ids=label_ids)
    monkeypatch.setitem(sys.modules, "vllm", make_vllm_module(state))
    return state


def vllm_backend(model_dir, tmp_path, **overrides):
    judge = {
        "backend": "vllm", "model": str(model_dir), "prompt": "unused", "top_logprobs": 8,
        "tensor_parallel_size": 2, "seed": 3, "batch_size": 3,
        "vllm": {"dtype": "float32", "enforce_eager": True},
        "cache": str(tmp_path / "cache.sqlite"), **overrides,
    }
    return make_backend(judge, str(model_dir), tmp_path / "state.json", 1)


def judge_all(judge, prompts):
    return [top for _, batch in judge.batches(prompts) for top in batch]


def test_engine_settings_chat_rendering_and_logprob_conversion(stand_in, model_dir, tmp_path):
    judge = vllm_backend(model_dir, tmp_path)
    assert stand_in.engines == []  # nothing starts before something must be scored
    tops = judge_all(judge, PROMPTS)

    sent = [p["prompt_token_ids"] for call in stand_in.generate_calls for p in call[0]]
    # The engine's context is sized to the longest prompt plus the answer token.
    longest = max(len(ids) for ids in sent)
    assert stand_in.engines == [{"model": str(model_dir), "tensor_parallel_size": 2, "seed": 3,
                                 "dtype": "float32", "enforce_eager": True,
                                 "max_model_len": longest + 1}]
    assert [len(c[0]) for c in stand_in.generate_calls] == [3, 3, 1]  # batch_size
    params = stand_in.generate_calls[0][1]
    assert (params.max_tokens, params.temperature, params.logprobs) == (1, 0.0, 8)
    tokenizer = stand_in.tokenizer
    for ids, prompt in zip(sent, PROMPTS, strict=True):
        # The chat template's text, encoded once: no second BOS or template around it.
        assert tokenizer.decode(ids) == render_chat(tokenizer, prompt)
        assert tokenizer.decode(ids).startswith("<|im_start|>")
        assert prompt in tokenizer.decode(ids)
    for ids, top in zip(sent, tops, strict=True):
        scores = scores_for(ids, stand_in.label_ids)
        best = sorted(scores.items(), key=lambda kv: -kv[1])[:8]
        assert top == {tokenizer.decode([tid]): lp for tid, lp in best}
        assert sum(math.exp(v) for v in top.values()) <= 1.0 + 1e-9
    assert backend_counts(judge)["requests_sent"] == len(PROMPTS)


def test_stance_probabilities_and_a_rerun_from_the_cache_without_the_engine(
    stand_in, model_dir, tmp_path
):
    generations = pl.DataFrame({
        "question_id": [f"q{i}" for i in range(4)], "category": ["death"] * 4,
        "sample": [0] * 4, "question": ["End it?"] * 4,
        "response": ["Yes.", "No.", "Maybe.", "Never."],
    })
    template = "Q: {question}\nA: {response}\nTopic: {topic}\nStance:"
    first, _ = judge_generations(generations, {"death": "the death penalty"}, template,
                                 vllm_backend(model_dir, tmp_path))
    sums = first.select(pl.sum_horizontal("p_support", "p_neutral", "p_oppose")).to_series()
    assert sums.to_list() == pytest.approx([1.0] * 4)
    assert first["top_is_label"].all()  # the stand-in ranks the label tokens first
    assert first["p_support"].n_unique() > 1

    engines, calls = len(stand_in.engines), len(stand_in.generate_calls)
    rerun = vllm_backend(model_dir, tmp_path)
    second, _ = judge_generations(generations, {"death": "the death penalty"}, template, rerun)
    assert second.equals(first)
    assert (len(stand_in.engines), len(stand_in.generate_calls)) == (engines, calls)
    assert backend_counts(rerun)["cache_hits"] == 4


def test_other_engine_settings_are_other_cache_entries(stand_in, model_dir, tmp_path):
    judge_all(vllm_backend(model_dir, tmp_path), PROMPTS[:2])
    judge_all(vllm_backend(model_dir, tmp_path, vllm={"dtype": "bfloat16"}), PROMPTS[:2])
    judge_all(vllm_backend(model_dir, tmp_path, top_logprobs=5), PROMPTS[:2])
    assert len(stand_in.engines) == 3


def test_engine_context_is_the_longest_prompt_of_the_run_whatever_the_batch(
    stand_in, model_dir, tmp_path
):
    """The longest prompt may sit in a later batch: the engine, started once, must still
    read it; a configured max_model_len wins; a cached run starts no engine at all."""
    prompts = ["short", "short", "brief", "a much longer prompt " * 12]
    judge_all(vllm_backend(model_dir, tmp_path, batch_size=2), prompts)
    sent = [p["prompt_token_ids"] for call in stand_in.generate_calls for p in call[0]]
    assert len(stand_in.engines) == 1 and len(stand_in.generate_calls) == 2  # 3 distinct
    assert stand_in.engines[0]["max_model_len"] == max(len(ids) for ids in sent) + 1
    assert len(sent[-1]) > len(sent[0])  # the longest came in the last batch

    judge_all(vllm_backend(model_dir, tmp_path, vllm={"max_model_len": 96}), prompts[-1:])
    assert stand_in.engines[-1]["max_model_len"] == 96
    engines = len(stand_in.engines)
    judge_all(vllm_backend(model_dir, tmp_path, batch_size=2), prompts)  # all cached
    assert len(stand_in.engines) == engines


def test_a_later_longer_prompt_starts_a_larger_engine(stand_in, model_dir, tmp_path):
    """The prompt audit judges with the same backend again (other templates): a prompt
    longer than the running engine reads stops it and the next engine is sized to it."""
    judge = vllm_backend(model_dir, tmp_path)
    judge_all(judge, ["short"])
    judge_all(judge, ["brief"])  # no longer: the same engine
    assert len(stand_in.engines) == 1
    judge_all(judge, ["a much longer prompt " * 12])
    assert len(stand_in.engines) == 2
    assert stand_in.engines[1]["max_model_len"] > stand_in.engines[0]["max_model_len"]
    sent = stand_in.generate_calls[-1][0][0]["prompt_token_ids"]
    assert stand_in.engines[1]["max_model_len"] == len(sent) + 1


def test_judge_max_model_len_adds_the_answer_token_and_stays_in_the_window():
    assert judge_max_model_len(300, 131_072) == 301
    assert judge_max_model_len(300, None) == 301
    assert judge_max_model_len(4096, 4096) == 4096  # cut to fit before: never beyond


def test_missing_logprobs_fail_loudly(stand_in, model_dir, tmp_path):
    stand_in.drop_logprobs = True
    with pytest.raises(JudgeOutputError, match="no logprobs"):
        judge_all(vllm_backend(model_dir, tmp_path), PROMPTS[:1])


def test_first_position_top_merges_ids_with_the_same_text_and_decodes_missing_ones():
    output = RequestOutput("0", None, [1], None, [CompletionOutput(
        0, "a", [5], -0.1, [{5: Logprob(math.log(0.5), 1, "yes"),
                             6: Logprob(math.log(0.25), 2, "yes"),
                             7: Logprob(math.log(0.125), 3, None)},
                            {9: Logprob(-9.0, 1, "later position")}],
    )], True)
    top = first_position_top(output, decode=lambda tid: f"<{tid}>")
    assert top == {"yes": pytest.approx(math.log(0.75)), "<7>": pytest.approx(math.log(0.125))}
