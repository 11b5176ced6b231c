"""Pick the judge backend a config names; every backend has the same ``batches`` interface."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from value_drifts.core.config import section_with_defaults
from value_drifts.core.layout import JUDGE_BATCHES, JUDGE_CACHE

DEFAULT_CACHE = JUDGE_CACHE
# Where Batch API jobs keep their state files (judge.batch.state_dir).
DEFAULT_BATCH_STATE_DIR = JUDGE_BATCHES


def batch_state_dir(judge: Mapping[str, Any]) -> str:
    """judge.batch.state_dir, or DEFAULT_BATCH_STATE_DIR."""
    return (judge.get("batch") or {}).get("state_dir", DEFAULT_BATCH_STATE_DIR)


def answer_fit(judge: Mapping[str, Any], backend, model_path: str):
    """The ``judge.answer_fit.AnswerFit`` of a backend made by ``make_backend``: a local
    judge's tokenizer against ``judge.context_tokens``, else vLLM's ``max_model_len``, else
    the model's ``max_position_embeddings``; a URL judge's byte bound against
    ``judge.context_tokens`` (None when unset: nothing is cut, the server refuses an
    overlong prompt)."""
    from value_drifts.judge.answer_fit import byte_fit, model_context, tokenizer_fit

    configured = judge.get("context_tokens")
    scorer = getattr(backend, "scorer", None)
    if getattr(scorer, "tokenizer", None) is None:
        return byte_fit(configured) if configured else None
    configured = configured or (judge.get("vllm") or {}).get("max_model_len")
    context = model_context(model_path, configured)
    return tokenizer_fit(scorer.tokenizer, context, scorer.render) if context else None


def make_backend(judge: Mapping[str, Any], model_path: str, state_path: str | Path, threads: int):
    """The judge backend ``_make_backend`` builds, with its ``answer_fit`` (how long a
    judge prompt it can read, ``answer_fit``) as an attribute."""
    backend = _make_backend(judge, model_path, state_path, threads)
    backend.answer_fit = answer_fit(section_with_defaults("judge", judge), backend, model_path)
    return backend


def _make_backend(judge: Mapping[str, Any], model_path: str, state_path: str | Path, threads: int):
    """The judge of ``judge['backend']``: a local transformers model (CPU), vLLM's offline
    engine (GPU), OpenAI-compatible chat completions (OpenAI, or vLLM / llama.cpp servers
    via ``base_url``), or the Batch API. All of them answer from the persistent cache
    ``judge['cache']`` first.

    ``state_path`` is this job's Batch API state file (used by ``openai_batch`` only).
    """
    from value_drifts.backends.cache import JudgeCache

    judge = section_with_defaults("judge", judge)
    backend = judge["backend"]
    cache = JudgeCache(judge.get("cache", DEFAULT_CACHE))
    if backend == "transformers":
        import torch

        from value_drifts.judge.transformers_backend import transformers_judge

        torch.set_num_threads(threads)
        return transformers_judge(
            model_path, cache,
            top_logprobs=judge["top_logprobs"],
            batch_size=judge.get("batch_size", 8),
        )
    if backend == "vllm":
        from value_drifts.judge.vllm_backend import vllm_judge

        return vllm_judge(
            model_path, cache,
            top_logprobs=judge["top_logprobs"],
            tensor_parallel_size=judge["tensor_parallel_size"],
            seed=judge["seed"],
            batch_size=judge.get("batch_size", 512),
            engine_args=judge.get("vllm", {}),
        )
    from value_drifts.judge.openai_backend import OpenAIJudge, OpenAIJudgeSettings

    settings = OpenAIJudgeSettings.from_config(judge)
    if backend == "openai":
        return OpenAIJudge(settings, cache)
    if backend == "openai_batch":
        from value_drifts.judge.batch_api import OpenAIBatchJudge

        options = judge.get("batch", {})
        return OpenAIBatchJudge(
            settings, cache, state_path,
            **{k: v for k, v in options.items() if k != "state_dir"},
        )
    raise ValueError(f"judge backend {backend!r} is not available")


def backend_counts(backend) -> dict[str, int]:
    """What a backend did (cache hits, requests sent, retries), for judge_counts.json."""
    counts = getattr(backend, "last_run_counts", None)
    return counts.as_dict() if counts is not None else {}
