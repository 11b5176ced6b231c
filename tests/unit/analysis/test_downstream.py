"""Downstream evaluation through lm-evaluation-harness's real Python API on the project's
tiny task, with a tiny random model (the small default does the same with SmolLM2)."""

import math

import pytest

from tests.support.tiny_model import build_tiny_model
from tests.support.workflow import REPO
from value_drifts.analysis.downstream import (
    downstream_markdown,
    downstream_table,
    evaluate_checkpoint,
    model_arguments,
    summarise,
)


def test_summarise_picks_the_reported_metric_and_its_stderr():
    results = {
        "results": {
            "hellaswag": {"alias": "hellaswag", "acc,none": 0.5, "acc_stderr,none": 0.01,
                          "acc_norm,none": 0.75, "acc_norm_stderr,none": 0.0043},
        },
        "n-samples": {"hellaswag": {"original": 10042, "effective": 10042}},
    }
    summary = summarise(results, {"hellaswag": "acc_norm"})
    assert summary == {"hellaswag": {"metric": "acc_norm", "value": 0.75, "stderr": 0.0043, "n": 10042}}
    with pytest.raises(KeyError, match="no 'f1'"):
        summarise(results, {"hellaswag": "f1"})


def test_markdown_puts_value_and_stderr_per_task():
    table = downstream_table(
        [
            ("qwen3-4b", "base", {"mmlu": {"metric": "acc", "value": 0.7302, "stderr": 0.0035, "n": 14042}}),
            ("qwen3-4b", "sft-alpaca",
             {"mmlu": {"metric": "acc", "value": 0.6983, "stderr": math.nan, "n": 14042}}),
        ]
    )
    md = downstream_markdown(table)
    assert "| qwen3-4b | base | 0.7302 ± 0.0035 |" in md
    assert "| qwen3-4b | sft-alpaca | 0.6983 |" in md
    assert "mmlu (acc)" in md


def test_backends_get_the_right_model_arguments():
    assert model_arguments("vllm", "/m", 4)["tensor_parallel_size"] == 4
    assert model_arguments("hf", "/m", 0)["device"] == "cpu"
    with pytest.raises(
        ValueError, match=r"downstream: unknown backend 'openai' \(one of hf, vllm, transformers\)"
    ):
        model_arguments("openai", "/m", 0)


def test_tiny_task_runs_through_the_harness(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the task's data files are relative to the repository root
    model = build_tiny_model(tmp_path / "model")
    summary = evaluate_checkpoint(
        str(model), {"value_drifts_tiny_mc": "acc"}, num_fewshot=5,
        include_path=str(REPO / "config/lm_eval_tasks"),
    )
    scores = summary["value_drifts_tiny_mc"]
    assert scores["n"] == 14
    correct = round(scores["value"] * 14)
    assert scores["value"] == pytest.approx(correct / 14)
    p = scores["value"]
    assert scores["stderr"] == pytest.approx(math.sqrt(p * (1 - p) / 13))  # sample stderr
    again = evaluate_checkpoint(
        str(model), {"value_drifts_tiny_mc": "acc"}, num_fewshot=5,
        include_path=str(REPO / "config/lm_eval_tasks"),
    )
    assert again == summary  # seeded few-shot sampling: the same numbers twice
