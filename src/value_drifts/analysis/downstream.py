"""Downstream benchmarks (paper App. I, Table 17) through lm-evaluation-harness's Python API.

The harness owns prompts, few-shot sampling and scoring; this module picks the backend (HF
on CPU, vLLM on GPU), runs it on one checkpoint, and turns results into Table 17.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from value_drifts.core.backends import canonical_name


def model_arguments(backend: str, model_path: str, gpus: int) -> dict[str, Any]:
    """lm-eval model_args for a local checkpoint: vLLM with tensor parallelism on GPUs,
    transformers in fp32 on CPU. ``backend`` is ``hf`` (alias ``transformers``) or ``vllm``."""
    backend = canonical_name("downstream", backend)
    if backend == "vllm":
        return {
            "pretrained": model_path,
            "tensor_parallel_size": max(gpus, 1),
            "dtype": "bfloat16",
            "gpu_memory_utilization": 0.85,
        }
    if backend == "hf":
        return {"pretrained": model_path, "dtype": "float32", "device": "cpu" if gpus == 0 else "cuda"}
    raise ValueError(f"downstream backend must be 'hf' or 'vllm', not {backend!r}")


def evaluate_checkpoint(
    model_path: str,
    tasks: Mapping[str, str],
    *,
    backend: str = "hf",
    gpus: int = 0,
    num_fewshot: int = 5,
    include_path: str | None = None,
    batch_size: int | str = 8,
    limit: int | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """{task: {"metric", "value", "stderr", "n"}} for the metric each task is reported with."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(
        model=canonical_name("downstream", backend),
        model_args=model_arguments(backend, model_path, gpus),
        tasks=list(tasks),
        num_fewshot=num_fewshot,
        batch_size=batch_size,
        limit=limit,
        task_manager=TaskManager(include_path=include_path),
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    return summarise(results, tasks)


def summarise(results: Mapping[str, Any], tasks: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """Pick each task's reported metric (e.g. acc_norm for HellaSwag) from lm-eval's
    results dict, whose keys look like 'acc_norm,none'."""
    summary = {}
    for task, metric in tasks.items():
        scores = results["results"][task]
        key = next((k for k in scores if k.split(",")[0] == metric), None)
        if key is None:
            raise KeyError(f"{task}: lm-eval reported no {metric!r} (has {sorted(scores)})")
        stderr = scores.get(key.replace(metric, f"{metric}_stderr", 1), math.nan)
        summary[task] = {
            "metric": metric,
            "value": float(scores[key]),
            "stderr": float(stderr) if stderr not in (None, "N/A") else math.nan,
            "n": int(results.get("n-samples", {}).get(task, {}).get("effective", 0)),
        }
    return summary


def downstream_table(rows: Sequence[tuple[str, str, Mapping[str, Mapping[str, float]]]]) -> pl.DataFrame:
    """Long table (model, run, task, metric, value, stderr, n) from per-checkpoint summaries."""
    return pl.DataFrame(
        [
            {"model": model, "run": run, "task": task, **scores}
            for model, run, summary in rows
            for task, scores in summary.items()
        ],
        schema={
            "model": pl.Utf8, "run": pl.Utf8, "task": pl.Utf8, "metric": pl.Utf8,
            "value": pl.Float64, "stderr": pl.Float64, "n": pl.Int64,
        },
    )


def downstream_markdown(table: pl.DataFrame) -> str:
    """Rows: model and run; columns: task (metric, k-shot); cells: value ± stderr."""
    tasks = table["task"].unique(maintain_order=True).to_list()
    metric = dict(zip(table["task"], table["metric"], strict=True))
    lines = [
        "### Table 17: downstream evaluation",
        "",
        "| model | run | " + " | ".join(f"{t} ({metric[t]})" for t in tasks) + " |",
        "|---|---|" + "---:|" * len(tasks),
    ]
    for (model, run), group in table.group_by(["model", "run"], maintain_order=True):
        cells = []
        for task in tasks:
            match = group.filter(pl.col("task") == task)
            if match.height == 0:
                cells.append("")
                continue
            value, stderr = match["value"][0], match["stderr"][0]
            cells.append(f"{value:.4f}" + ("" if math.isnan(stderr) else f" ± {stderr:.4f}"))
        lines.append(f"| {model} | {run} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
