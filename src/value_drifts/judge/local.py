"""Local judges (transformers on CPU, vLLM offline) answered from the persistent cache first.

A local judge costs no money but minutes to hours of CPU or GPU, so it uses the same
SQLite cache as the API judges (judge/cache.py). The key is the text the model actually
reads (the judge prompt after the chat template), the judge model's identity and the
decoding parameters. For a model directory the identity is a digest of its files, so an
adapted judge that is retrained gets new keys; the digest is computed once per job and
memoised in the cache under the files' (path, size, mtime, inode), so unchanged weights
are not re-read by every job. A backend loads its model only when something is missing:
a rerun with unchanged inputs answers from the cache without loading or running it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from value_drifts.backends.cache import JudgeCache, RequestCounts, request_key
from value_drifts.core.checkpoints import TRAINING_STATE_PREFIXES
from value_drifts.core.io import file_sha256
from value_drifts.judge.answers import distinct_missing, length_sorted_windows, ready_prefix_end

# Prompts are length-sorted within runs of this many batches (see length_sorted_windows).
SORT_WINDOW_BATCHES = 16


def model_files(model_dir: Path) -> list[Path]:
    """The files whose content determines a model's answers: top-level files of the
    directory (weights, config, tokenizer, chat template), training state excluded."""
    return sorted(
        path for path in Path(model_dir).iterdir()
        if path.is_file() and not path.name.startswith(TRAINING_STATE_PREFIXES)
    )


def _stat_signature(files: Sequence[Path]) -> str:
    stats = [
        (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        for path in files
        for st in [path.stat()]
    ]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()


def model_identity(model: str | os.PathLike[str], cache: JudgeCache | None = None) -> str:
    """``sha256:<digest>`` of a local model's files (a directory or one GGUF file), or the
    name itself for a hub id or API model that is not on disk.

    With ``cache``, the digest is memoised under the files' stat signature, so each
    version of the weights is read once, however many jobs judge with it.
    """
    path = Path(model)
    if not path.exists():
        return str(model)
    files = model_files(path) if path.is_dir() else [path]
    memo_key = "model-files:" + _stat_signature(files)
    if cache is not None and (memo := cache.get(memo_key)) is not None:
        return memo["identity"]
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{file.stat().st_size}\0{file_sha256(file)}\n".encode())
    identity = "sha256:" + digest.hexdigest()
    if cache is not None:
        cache.put(memo_key, {"identity": identity, "files": [f.name for f in files]})
    return identity


def render_chat(tokenizer, prompt: str) -> str:
    """The judge prompt as one user turn in the model's chat template (as is without one).
    ``enable_thinking=False``: a Qwen3-style template then opens the answer with an empty
    think block, so the first answer token is a label, not ``<think>``; templates without
    the switch ignore it (their text, and so the cache keys, do not change)."""
    if tokenizer.chat_template is None:
        return prompt
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True,
        enable_thinking=False,
    )


def adds_special_tokens(tokenizer) -> bool:
    """Whether a local judge's rendered text is encoded with the tokenizer's special tokens:
    only without a chat template. A template writes its own BOS where the model wants one
    (Llama 3, Gemma); adding the tokenizer's again would give two, or one the judge never
    saw when it was adapted through the template (TRL encodes templated text without
    them). Every local backend and the answer fit encode this way (as vLLM's ``LLM.chat``)."""
    return getattr(tokenizer, "chat_template", None) is None


class LocalScorer(Protocol):
    """A local model reduced to what a cached judge needs."""

    # True where a batch is padded to its longest text (transformers), so the judge sends
    # texts of similar length together; an engine that batches by itself (vLLM) says False.
    pads_batches: bool

    def render(self, prompt: str) -> str:
        """The text the model reads for a judge prompt (after its chat template)."""

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """First-answer-token ``{token text: logprob}`` top lists, one per rendered text."""

    # Optional: ``prepare(texts)`` sees every text this run will score before the first
    # ``score`` call (vLLM sizes its engine's context to the longest).


class CachedLocalJudge:
    """The ``batches`` interface over a local scorer, cache first.

    Only distinct rendered texts missing from the cache reach the scorer, in chunks of
    ``batch_size`` (of similar length where the scorer pads); each chunk's answers are
    stored before they are yielded, in prompt order, so an interrupted run resumes where
    it stopped.
    """

    def __init__(
        self,
        scorer: LocalScorer,
        cache: JudgeCache,
        identity: str,
        params: Mapping[str, Any],
        kind: str,
        batch_size: int = 8,
    ):
        self.scorer = scorer
        self.cache = cache
        self.identity = identity
        self.params = dict(params)
        self.kind = kind
        self.batch_size = batch_size
        self.last_run_counts = RequestCounts()

    def __repr__(self) -> str:
        return f"CachedLocalJudge(kind={self.kind!r}, identity={self.identity!r})"

    def key_for_text(self, text: str) -> str:
        return request_key(text, self.identity, self.params, self.kind)

    def prepare(self, prompts: Sequence[str]) -> None:
        """Let the scorer see every prompt a job will read before it judges any (one job
        per run: all its checkpoints'), so a vLLM judge sizes its engine once instead of
        restarting it larger at a checkpoint with a longer prompt."""
        if prepare := getattr(self.scorer, "prepare", None):
            prepare([self.scorer.render(prompt) for prompt in prompts])

    def batches(self, prompts: Sequence[str]) -> Iterator[tuple[int, list[dict[str, float]]]]:
        """Yield ``(how many prompts, their top lists)`` in prompt order."""
        counts = RequestCounts(prompts=len(prompts))
        self.last_run_counts = counts
        texts = [self.scorer.render(p) for p in prompts]
        keys = [self.key_for_text(t) for t in texts]
        answers = {k: v["top_logprobs"] for k, v in self.cache.get_many(keys).items()}
        counts.cache_hits = sum(key in answers for key in keys)
        counts.distinct_requests = len(set(keys))
        to_score = list(distinct_missing(keys, texts, answers).items())
        if to_score and (prepare := getattr(self.scorer, "prepare", None)):
            prepare([text for _, text in to_score])  # e.g. size an engine to what it reads
        if self.scorer.pads_batches:
            to_score = length_sorted_windows(to_score, self.batch_size * SORT_WINDOW_BATCHES)
        emitted = 0
        for start in range(0, len(to_score), self.batch_size):
            chunk = to_score[start : start + self.batch_size]
            counts.requests_sent += len(chunk)
            tops = self.scorer.score([text for _, text in chunk])
            self.cache.put_many(
                (key, {"top_logprobs": top, "backend": self.kind, "model": self.identity,
                       "params": self.params})
                for (key, _), top in zip(chunk, tops, strict=True)
            )
            answers.update((key, top) for (key, _), top in zip(chunk, tops, strict=True))
            counts.answered += len(chunk)
            ready = ready_prefix_end(keys, answers, emitted)
            if ready > emitted:
                yield ready - emitted, [answers[key] for key in keys[emitted:ready]]
                emitted = ready
        ready = ready_prefix_end(keys, answers, emitted)
        if ready > emitted:
            yield ready - emitted, [answers[key] for key in keys[emitted:ready]]
