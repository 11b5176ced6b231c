"""Pick the judge backend a config names; every backend has the same ``batches`` interface."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def make_backend(judge: Mapping[str, Any], model_path: str, state_path: str | Path, threads: int):
    """The judge of ``judge['backend']``: local transformers, OpenAI-compatible chat
    completions (OpenAI, vLLM or llama.cpp servers via ``base_url``), or the Batch API.

    ``state_path`` is this job's Batch API state file (used by ``openai_batch`` only).
    """
    backend = judge["backend"]
    if backend == "transformers":
        import torch

        from value_drifts.judge.transformers_backend import TransformersJudge

        torch.set_num_threads(threads)
        return TransformersJudge(
            model_path,
            top_logprobs=judge.get("top_logprobs", 20),
            batch_size=judge.get("batch_size", 8),
        )
    from value_drifts.judge.cache import JudgeCache
    from value_drifts.judge.openai_backend import OpenAIJudge, settings_from_config

    settings = settings_from_config(judge)
    cache = JudgeCache(judge.get("cache", "results/judge_cache.sqlite"))
    if backend == "openai":
        return OpenAIJudge(settings, cache)
    if backend == "openai_batch":
        from value_drifts.judge.batch_api import OpenAIBatchJudge

        options = judge.get("batch", {})
        return OpenAIBatchJudge(
            settings, cache, state_path,
            **{k: v for k, v in options.items() if k != "state_dir"},
        )
    raise ValueError(f"judge backend {backend!r} is not available (vLLM offline: not yet)")


def backend_counts(backend) -> dict[str, int]:
    """What an API backend did (cache hits, requests, retries), empty for local ones."""
    counts = getattr(backend, "last_run_counts", None)
    return counts.as_dict() if counts is not None else {}
