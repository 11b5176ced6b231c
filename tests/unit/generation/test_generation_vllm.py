"""The vLLM generation backend against a stand-in ``vllm`` module that follows vLLM's
offline API (``LLM(model=..., tensor_parallel_size=..., seed=...)``, ``get_tokenizer()``,
``generate(prompts, sampling_params)`` returning one ``RequestOutput`` per prompt, in
order, whose ``outputs`` are ``CompletionOutput(index, text, token_ids, ...)``): it writes
the same table as the transformers backend, which runs for real on a tiny model."""

from __future__ import annotations

import json
import shutil
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from tests.support.tiny_model import build_tiny_model
from value_drifts.generation.sampling import (
    SamplingSettings,
    VLLMCheckpoint,
    engine_groups,
    generate_transformers,
    generate_vllm,
    generate_vllm_series,
    prompt_token_ids,
)

QUESTIONS = pl.DataFrame(
    {
        "question_id": ["q1", "q2", "q3"],
        "category": ["Abortion", "Abortion", "Immigration Policies"],
        "question": ["Should abortion be legal?", "Is it murder?", "Open borders?"],
    }
)


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput (the fields read here)
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: None
    outputs: list[CompletionOutput]
    finished: bool = True


@dataclass
class SamplingParams:  # vllm.SamplingParams: only real argument names are accepted
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    max_tokens: int | None = 16
    skip_special_tokens: bool = True
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] | None = None


class FakeLLM:
    instances: list[FakeLLM] = []
    failing_reload = False

    def __init__(self, model, tensor_parallel_size=1, seed=0, dtype="auto", **engine_args):
        from transformers import AutoTokenizer

        self.model, self.tensor_parallel_size, self.seed = model, tensor_parallel_size, seed
        self.dtype, self.engine_args = dtype, engine_args
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.calls, self.events = [], []
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return self.tokenizer

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        # vLLM's worker call; a reload loads another checkpoint's weights in place
        assert method == "reload_weights" and set(kwargs) == {"weights_path"}, (method, kwargs)
        if FakeLLM.failing_reload:
            raise RuntimeError("Attempted to load weight into parameter")
        self.events.append(("reload_weights", kwargs["weights_path"]))
        return [None] * self.tensor_parallel_size

    def reset_prefix_cache(self, reset_running_requests=False, reset_connector=False):
        self.events.append(("reset_prefix_cache",))
        return True

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        assert len(params) == len(prompts)
        self.calls.append((prompts, params))
        self.events.append(("generate", len(prompts)))
        results = []
        for number, (prompt, p) in enumerate(zip(prompts, params, strict=True)):
            # Out of index order, as vLLM may finish a request's samples in any order.
            outputs = [
                CompletionOutput(i, f" answer {number}.{i} (seed {p.seed}) ", [1, 2], -1.0, None, "stop")
                for i in reversed(range(p.n))
            ]
            results.append(RequestOutput(str(number), None, prompt["prompt_token_ids"], None, outputs))
        return results


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, SamplingParams
    FakeLLM.instances.clear()
    FakeLLM.failing_reload = False
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


SETTINGS = SamplingSettings(samples=3, temperature=0.7, max_new_tokens=4, seed=5, prompt_style="chat")


def test_vllm_sends_one_request_per_question_with_the_sampling_settings(fake_vllm, tiny_model):
    generate_vllm(tiny_model, QUESTIONS, SETTINGS, tensor_parallel_size=4,
                  engine_args={"gpu_memory_utilization": 0.8})
    (llm,) = FakeLLM.instances
    assert (llm.model, llm.tensor_parallel_size, llm.seed) == (tiny_model, 4, 5)
    longest = max(len(prompt_token_ids(q, SETTINGS, llm.tokenizer)) for q in QUESTIONS["question"])
    # the engine's context: the longest prompt plus max_new_tokens (vllm_max_model_len)
    assert llm.engine_args == {"gpu_memory_utilization": 0.8, "max_model_len": longest + 4}
    ((prompts, params),) = llm.calls
    assert len(prompts) == QUESTIONS.height
    assert [(p.n, p.temperature, p.max_tokens, p.top_p) for p in params] == [(3, 0.7, 4, 1.0)] * 3
    assert [p.seed for p in params] == [5, 8, 11]  # per question: seed + i * samples
    # The prompt tokens are the chat template's, as the transformers backend feeds them.
    expected = prompt_token_ids("Should abortion be legal?", SETTINGS, llm.tokenizer)
    assert prompts[0]["prompt_token_ids"] == expected
    assert llm.tokenizer.decode(expected).count("<|im_start|>user") == 1


def test_base_prompts_get_the_suffix_and_special_tokens(fake_vllm, tiny_model):
    base = SamplingSettings(samples=1, temperature=0.7, max_new_tokens=4, seed=0, prompt_style="base")
    generate_vllm(tiny_model, QUESTIONS, base)
    ((prompts, _),) = FakeLLM.instances[0].calls
    text = FakeLLM.instances[0].tokenizer.decode(prompts[2]["prompt_token_ids"])
    assert text.endswith("Open borders?\nResponse:")


def test_vllm_table_equals_the_transformers_format(fake_vllm, tiny_model, tmp_path):
    vllm_table = generate_vllm(tiny_model, QUESTIONS, SETTINGS, tensor_parallel_size=1)
    reference = generate_transformers(tiny_model, QUESTIONS, SETTINGS, batch_size=9)
    vllm_table.write_parquet(tmp_path / "vllm.parquet")
    reference.write_parquet(tmp_path / "transformers.parquet")
    written = pl.read_parquet(tmp_path / "vllm.parquet")
    assert written.schema == pl.read_parquet(tmp_path / "transformers.parquet").schema
    assert written.height == reference.height == QUESTIONS.height * SETTINGS.samples
    assert written.group_by("question_id").agg(pl.col("sample").sort()).sort("question_id")[
        "sample"
    ].to_list() == [[0, 1, 2]] * 3
    # Samples are stored in vLLM's index order, stripped, with the settings recorded.
    first = written.filter(pl.col("question_id") == "q1").sort("sample")["response"].to_list()
    assert first == ["answer 0.0 (seed 5)", "answer 0.1 (seed 5)", "answer 0.2 (seed 5)"]
    settings = written.select("backend", "samples", "temperature", "max_new_tokens", "seed",
                              "prompt_style").unique()
    assert settings.rows() == [("vllm", 3, 0.7, 4, 5, "chat")]
    assert reference["backend"].unique().to_list() == ["transformers"]


def test_a_missing_sample_is_an_error(fake_vllm, tiny_model, monkeypatch):
    original = FakeLLM.generate

    def short(self, prompts, sampling_params=None, use_tqdm=True):
        results = original(self, prompts, sampling_params)
        results[1].outputs.pop()
        return results

    monkeypatch.setattr(FakeLLM, "generate", short)
    with pytest.raises(RuntimeError, match="2 samples for question q2, expected 3"):
        generate_vllm(tiny_model, QUESTIONS, SETTINGS)


@pytest.mark.gpu_path
def test_the_engine_context_fits_the_longest_prompt_and_its_answer(fake_vllm, tiny_model):
    """vLLM's max_model_len is the longest prompt plus max_new_tokens, not the model's whole
    context (Llama 3.1: 131,072, a KV cache sized for nothing); a configured one wins."""
    long = QUESTIONS.with_columns(
        pl.when(pl.col("question_id") == "q2").then(pl.lit("Why? " * 40))
        .otherwise(pl.col("question")).alias("question"))
    generate_vllm(tiny_model, long, SETTINGS)
    llm = FakeLLM.instances[-1]
    lengths = [len(p["prompt_token_ids"]) for p in llm.calls[0][0]]
    assert lengths[1] == max(lengths) > 40
    assert llm.engine_args["max_model_len"] == lengths[1] + SETTINGS.max_new_tokens
    generate_vllm(tiny_model, long, SETTINGS, engine_args={"max_model_len": 4096})
    assert FakeLLM.instances[-1].engine_args["max_model_len"] == 4096


def _checkpoint_copy(source: str, folder) -> str:
    """A copy of ``source``: another checkpoint of the same run (same config, tokenizer)."""
    shutil.copytree(source, folder)
    return str(folder)


@pytest.mark.gpu_path
def test_a_runs_checkpoints_share_one_engine_that_reloads_each_ones_weights(
        fake_vllm, tiny_model, tmp_path):
    """One engine starts on a run's first checkpoint; each later one with the same config
    and tokenizer is loaded in place (reload_weights) with the prefix cache dropped, and
    every checkpoint gets the table a fresh engine of its own gives."""
    second = _checkpoint_copy(tiny_model, tmp_path / "checkpoint-2")
    third = _checkpoint_copy(tiny_model, tmp_path / "checkpoint-3")
    checkpoints = [VLLMCheckpoint(path, SETTINGS) for path in (tiny_model, second, third)]
    assert engine_groups(checkpoints) == [[0, 1, 2]]
    tables = list(generate_vllm_series(checkpoints, QUESTIONS, tensor_parallel_size=2))
    (llm,) = FakeLLM.instances
    assert (llm.model, llm.tensor_parallel_size) == (tiny_model, 2)
    assert llm.events == [
        ("generate", 3),
        ("reload_weights", second), ("reset_prefix_cache",), ("generate", 3),
        ("reload_weights", third), ("reset_prefix_cache",), ("generate", 3),
    ]
    alone = generate_vllm(second, QUESTIONS, SETTINGS)
    assert tables[1].equals(alone) and tables[0].equals(tables[2])


@pytest.mark.gpu_path
def test_a_checkpoint_unlike_the_one_before_starts_its_own_engine(fake_vllm, tiny_model,
                                                                   tmp_path):
    """A changed config (here its dtype), a changed tokenizer file or a hub revision
    starts a fresh engine: vLLM read those when it started. Groups are consecutive."""
    other_config = _checkpoint_copy(tiny_model, tmp_path / "other-config")
    config = json.loads((tmp_path / "other-config/config.json").read_text())
    (tmp_path / "other-config/config.json").write_text(
        json.dumps({**config, "dtype": "bfloat16"}))
    other_tokenizer = _checkpoint_copy(tiny_model, tmp_path / "other-tokenizer")
    (tmp_path / "other-tokenizer/chat_template.jinja").write_text("{{ messages }}")
    same = _checkpoint_copy(tiny_model, tmp_path / "same")
    checkpoints = [
        VLLMCheckpoint(tiny_model, SETTINGS),
        VLLMCheckpoint(same, SETTINGS),
        VLLMCheckpoint(other_config, SETTINGS),
        VLLMCheckpoint(other_tokenizer, SETTINGS),
        VLLMCheckpoint(same, SETTINGS, revision="main"),  # a hub revision: never shared
        VLLMCheckpoint(tiny_model, SETTINGS),
    ]
    assert engine_groups(checkpoints) == [[0, 1], [2], [3], [4], [5]]
    list(generate_vllm_series(checkpoints, QUESTIONS))
    assert [llm.model for llm in FakeLLM.instances] == [
        tiny_model, other_config, other_tokenizer, same, tiny_model]


@pytest.mark.gpu_path
def test_a_failed_reload_falls_back_to_a_fresh_engine(fake_vllm, tiny_model, tmp_path,
                                                      capsys):
    second = _checkpoint_copy(tiny_model, tmp_path / "checkpoint-2")
    FakeLLM.failing_reload = True
    tables = list(generate_vllm_series(
        [VLLMCheckpoint(tiny_model, SETTINGS), VLLMCheckpoint(second, SETTINGS)], QUESTIONS))
    assert [llm.model for llm in FakeLLM.instances] == [tiny_model, second]
    assert len(tables) == 2 and tables[1].height == QUESTIONS.height * SETTINGS.samples
    assert "does not reload the weights" in capsys.readouterr().out


def _without_a_tensor(folder):
    """The checkpoint's weights less one tensor (a partial copy of a checkpoint)."""
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    weights.pop(sorted(name for name in weights if "layers.0." in name)[0])
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def _cut_short(folder):
    """The checkpoint's weights file cut short (a copy or save interrupted)."""
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


@pytest.mark.gpu_path
@pytest.mark.parametrize("damage", [_without_a_tensor, _cut_short, "prefix cache kept"])
def test_a_checkpoint_that_cannot_be_reloaded_whole_gets_a_fresh_engine(
        fake_vllm, tiny_model, tmp_path, monkeypatch, capsys, damage):
    """vLLM's in-place reload only warns about weights it did not find, so a checkpoint
    with a tensor missing or its weights cut short, or an engine that keeps its prefix
    cache (the old weights' keys and values), would answer from a mix of two checkpoints:
    each gets a fresh engine instead (which refuses what it cannot load)."""
    second = _checkpoint_copy(tiny_model, tmp_path / "checkpoint-2")
    if damage == "prefix cache kept":
        monkeypatch.setattr(FakeLLM, "reset_prefix_cache", lambda self, *a, **k: False)
    else:
        damage(tmp_path / "checkpoint-2")
    list(generate_vllm_series(
        [VLLMCheckpoint(tiny_model, SETTINGS), VLLMCheckpoint(second, SETTINGS)], QUESTIONS))
    assert [llm.model for llm in FakeLLM.instances] == [tiny_model, second]
    out = capsys.readouterr().out
    assert "does not reload the weights" in out and "reloaded the weights" not in out.replace(
        "does not reload the weights", "")


@pytest.mark.gpu_path
def test_weights_deleted_once_answered_still_let_the_next_checkpoint_reload(
        fake_vllm, tiny_model, tmp_path, capsys):
    """generation.delete_checkpoint_weights (on in config/paper.yaml) deletes a checkpoint's
    weights once its answers exist, before the next one is loaded: the comparison of the
    two checkpoints' tensors uses what was read when the first was loaded."""
    from value_drifts.core.checkpoints import delete_checkpoint_weights

    folders = [_checkpoint_copy(tiny_model, tmp_path / f"checkpoint-{n}") for n in (1, 2, 3)]
    series = generate_vllm_series([VLLMCheckpoint(f, SETTINGS) for f in folders], QUESTIONS)
    for folder, table in zip(folders, series, strict=True):
        assert table.height == QUESTIONS.height * SETTINGS.samples
        if folder != folders[-1]:
            delete_checkpoint_weights(Path(folder))  # as generate_run does once answered
    (llm,) = FakeLLM.instances
    assert [e for e in llm.events if e[0] == "reload_weights"] == [
        ("reload_weights", folders[1]), ("reload_weights", folders[2])]
    assert "does not reload" not in capsys.readouterr().out
