"""Teacher backends for the synthetic value-gap set: ``generate_fn(message lists) -> outputs``.

Two backends share that shape (see ``value_gap.build_pairs``):

- ``OpenAITeacher``: full chat completions from any OpenAI-compatible server (the paper's
  Qwen2.5-72B-Instruct behind vLLM, or a hosted API). Requests run ``concurrency`` at a time;
  429, 5xx, timeouts and dropped connections are retried with jittered exponential backoff
  honouring Retry-After, a bounded number of times; a request that still fails yields
  None, which the pair builder counts as ``request_failed``. With a cache every answer is
  stored the moment it arrives, so a rerun resends only what is missing. The API key comes
  only from an environment variable and is redacted from every error text.
- ``TransformersTeacher``: a local causal LM with its chat template, batched, seeded
  sampling; for CPU tests and small runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from value_drifts.backends.cache import JudgeCache, RequestCounts, request_key
from value_drifts.backends.openai_client import (
    ChatClient,
    ChatConfigError,
    ChatServerSettings,
    RequestAttemptError,
)
from value_drifts.core.backends import canonical_name
from value_drifts.data.value_gap_set import TeacherReply

log = logging.getLogger(__name__)

BACKEND_KIND = "teacher_chat"
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class OpenAITeacherSettings(ChatServerSettings):
    """One teacher run's server, model and decoding; the decoding fields key the cache."""

    request_timeout_s: float = 300.0
    max_attempts: int = 6
    temperature: float = 0.7
    top_p: float | None = None
    max_tokens: int = 1024
    seed: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_tokens < 1:
            raise ChatConfigError("max_tokens must be at least 1")

    def decoding_params(self) -> dict[str, Any]:
        """Everything besides messages and model that changes the answer: the cache key's part."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "extra_body": dict(self.extra_body or {}),
        }


def teacher_request_key(messages: Messages, settings: OpenAITeacherSettings) -> str:
    """Cache key: the exact messages, model, decoding parameters, backend kind and the
    server (``base_url``) where one is set."""
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return request_key(canonical, settings.model, settings.decoding_params(), BACKEND_KIND,
                       endpoint=settings.base_url)


def reply_from_completion(completion: Any) -> tuple[TeacherReply, dict[str, Any]]:
    """The first choice's text and finish reason, plus token usage, from a chat completion.

    A missing ``content`` (some servers send null with a content filter) becomes "" so the
    output checks count it rather than it vanishing.
    """
    try:
        choice = completion.choices[0]
        text = choice.message.content or ""
        finish = choice.finish_reason
    except (AttributeError, IndexError, TypeError):
        raise RequestAttemptError(
            "malformed_body", transient=False, bad_answer=True, detail="no choices[0].message"
        ) from None
    usage = getattr(completion, "usage", None)
    meta = {
        "served_model": getattr(completion, "model", None),
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
    }
    return TeacherReply(text=text, finish_reason=finish), meta


def _run_coroutine(coroutine: Any) -> Any:
    """Run on a fresh event loop in a worker thread, so callers inside a loop work too."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class OpenAITeacher:
    """Chat-completions teacher: ``teacher(message_lists) -> [TeacherReply | None, ...]``."""

    def __init__(
        self,
        settings: OpenAITeacherSettings,
        cache: JudgeCache | None = None,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ):
        self.settings = settings
        self.cache = cache
        self._chat = ChatClient(settings, "teacher", environ, rng)
        self.last_run_counts = RequestCounts()

    def __repr__(self) -> str:
        return f"OpenAITeacher(model={self.settings.model!r}, base_url={self.settings.base_url!r})"

    def __call__(self, message_lists: Sequence[Messages]) -> list[TeacherReply | None]:
        """One output per message list, in order; None where a request failed for good."""
        counts = RequestCounts(prompts=len(message_lists))
        self.last_run_counts = counts
        keys = [teacher_request_key(m, self.settings) for m in message_lists]
        answers: dict[str, TeacherReply] = {}
        if self.cache is not None:
            answers = {
                k: TeacherReply(v["text"], v.get("finish_reason"))
                for k, v in self.cache.get_many(keys).items()
            }
        counts.distinct_requests = len(set(keys))
        counts.cache_hits = sum(key in answers for key in keys)
        to_send = {k: m for k, m in zip(keys, message_lists, strict=True) if k not in answers}
        if to_send:  # all cached: no thread, no event loop, no client
            _run_coroutine(self._chat.drain(to_send, self._answer_one(answers, counts)))
        if counts.failures:
            log.warning("teacher: %d requests failed for good: %s",
                        sum(counts.failures.values()), dict(counts.failures))
        return [answers.get(key) for key in keys]

    def _answer_one(self, answers: dict[str, TeacherReply], counts: RequestCounts) -> Any:
        async def answer_one(client: openai.AsyncOpenAI, key: str, messages: Messages) -> None:
            answer = await self._chat.with_retries(
                key, lambda: self._attempt(client, messages), counts
            )
            if answer is None:
                return
            reply, meta = answer
            if self.cache is not None:
                # Stored before anything else: once a request is paid for, it is never lost.
                self.cache.put(key, {
                    "text": reply.text, "finish_reason": reply.finish_reason, **meta,
                    "backend": BACKEND_KIND, "model": self.settings.model,
                    "params": self.settings.decoding_params(), "stored_at": time.time(),
                })
            answers[key] = reply
            counts.answered += 1
            counts.prompt_tokens += meta["prompt_tokens"]
            counts.completion_tokens += meta["completion_tokens"]

        return answer_one

    async def _attempt(
        self, client: openai.AsyncOpenAI, messages: Messages
    ) -> tuple[TeacherReply, dict[str, Any]]:
        """One request for a full completion."""
        optional = {k: v for k, v in (("top_p", self.settings.top_p),
                                      ("seed", self.settings.seed)) if v is not None}
        completion = await self._chat.call(lambda: client.chat.completions.create(
            model=self.settings.model,
            messages=messages,
            max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature,
            extra_body=dict(self.settings.extra_body) if self.settings.extra_body else None,
            **optional,
        ))
        return reply_from_completion(completion)


class TransformersTeacher:
    """A local chat model as teacher: batched, seeded sampling on CPU (or whatever torch has).

    The finish reason is "stop" when the answer contains an end-of-sequence token and
    "length" when it ran into ``max_new_tokens``, so truncation is detected exactly.
    """

    def __init__(
        self,
        model_path: str | Path,
        max_new_tokens: int = 512,
        temperature: float = 0.7,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int = 8,
        threads: int = 1,
    ):
        self.model_path = str(model_path)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.batch_size = batch_size
        self.threads = threads
        self._model = self._tokenizer = None

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(self.threads)
        tokenizer = AutoTokenizer.from_pretrained(self.model_path, padding_side="left")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if not tokenizer.chat_template:
            raise ValueError(f"{self.model_path} has no chat template; a teacher needs one")
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32)
        self._tokenizer, self._model = tokenizer, model.eval()

    def _eos_ids(self) -> set[int]:
        configured = self._model.generation_config.eos_token_id
        ids = set(configured if isinstance(configured, list) else [configured])
        ids.add(self._tokenizer.eos_token_id)
        return {i for i in ids if i is not None}

    def __call__(self, message_lists: Sequence[Messages]) -> list[TeacherReply]:
        """One reply per message list, in order; a batch's seed is ``seed + its start``."""
        import torch

        if self._model is None:
            self._load()
        tokenizer, model, eos = self._tokenizer, self._model, self._eos_ids()
        replies = []
        for start in range(0, len(message_lists), self.batch_size):
            batch = message_lists[start : start + self.batch_size]
            texts = [
                tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                for m in batch
            ]
            encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            torch.manual_seed(self.seed + start)
            sampling = self.temperature > 0
            with torch.inference_mode():
                output = model.generate(
                    **encoded,
                    do_sample=sampling,
                    temperature=self.temperature if sampling else None,
                    top_p=self.top_p if sampling else None,
                    top_k=0 if sampling else None,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            for row in new_tokens:
                finished = any(int(t) in eos for t in row)
                text = tokenizer.decode(row, skip_special_tokens=True)
                replies.append(TeacherReply(text.strip(), "stop" if finished else "length"))
        return replies


def make_teacher(
    teacher: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> OpenAITeacher | TransformersTeacher:
    """The backend a config's teacher section names (``backend: openai_chat | transformers``;
    ``openai`` is read as ``openai_chat``, see ``value_drifts.core.backends``)."""
    backend = canonical_name("teacher", teacher.get("backend", "openai_chat"))
    if backend == "openai_chat":
        cache = JudgeCache(teacher["cache"]) if teacher.get("cache") else None
        settings = OpenAITeacherSettings.from_config(teacher)
        return OpenAITeacher(settings, cache=cache, environ=environ)
    if backend == "transformers":
        return TransformersTeacher(
            teacher["model"],
            max_new_tokens=teacher.get("max_tokens", 512),
            temperature=teacher.get("temperature", 0.7),
            top_p=teacher.get("top_p") or 1.0,
            seed=teacher.get("seed") or 0,
            batch_size=teacher.get("batch_size", 8),
            threads=teacher.get("threads", 1),
        )
    raise ValueError(f"unknown teacher backend {backend!r} (openai_chat or transformers)")
