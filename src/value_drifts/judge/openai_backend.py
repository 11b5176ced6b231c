"""Judge through any OpenAI-compatible chat-completions server, cached and fault tolerant.

The same client talks to the OpenAI API, vLLM or llama.cpp (``base_url``). Every answer is
looked up in the persistent cache first and stored there the moment it arrives, so an
interrupted run resumes without paying twice. Transient faults (429, 5xx, timeouts,
dropped connections) are retried with exponential backoff and jitter, honouring
Retry-After; malformed bodies and answers without log-probabilities are retried a few
times, then reported. The API key is read from an environment variable, held in a value
that never prints, and redacted from every error text the server sends back.

Optional canary prompts (``judge.canaries``; off by default): before a run answers from
the cache, it sends a few of its cached prompts to the server again, through the same
client, retries and key handling, storing nothing, and fails with
``canary.CanaryMismatchError`` when the server now answers them differently: the weights
behind the URL changed under the same model name (``value_drifts.judge.canary``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from value_drifts.backends.cache import (
    JudgeCache,
    RequestCounts,  # noqa: F401 - re-exported for callers
    request_key,
)
from value_drifts.backends.openai_client import (
    ChatClient,
    ChatConfigError,
    ChatServerSettings,
    RequestAttemptError,
)
from value_drifts.judge.answers import distinct_missing, merged_top, ready_prefix_end  # noqa: F401 - re-exported for callers
from value_drifts.judge.canary import (
    CanaryOutcome,
    CanarySettings,
    canary_error,
    compare_canaries,
    pick_canaries,
)

log = logging.getLogger(__name__)

BACKEND_KIND = "openai_chat"


class JudgeConfigError(ChatConfigError):
    """The judge cannot start: an impossible setting."""


class IncompleteJudgmentsError(RuntimeError):
    """Some prompts got no answer after all retries; every other answer is cached."""

    def __init__(self, message: str, counts: dict[str, int]):
        super().__init__(message)
        self.counts = counts


@dataclass(frozen=True)
class OpenAIJudgeSettings(ChatServerSettings):
    """What a judge run needs; the decoding fields also key the cache."""

    top_logprobs: int = 20
    max_tokens: int = 1
    temperature: float = 0.0
    # How many answers to gather before yielding to the caller (progress granularity).
    yield_every: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.top_logprobs <= 20:
            raise JudgeConfigError("top_logprobs must be between 1 and 20 (the API's limit)")

    def decoding_params(self) -> dict[str, Any]:
        """Everything besides prompt and model that changes the answer: the cache key's part."""
        return {
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "extra_body": dict(self.extra_body or {}),
        }



def top_logprobs_from_body(body: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """The first answer token's ``{token: logprob}`` top list and metadata from a JSON body.

    Distinct tokens can decode to the same text (byte-level pieces); their probabilities
    add up rather than one silently replacing the other.
    """
    try:
        choice = body["choices"][0]
        first = choice["logprobs"]["content"][0]
        entries = first["top_logprobs"]
    except (KeyError, IndexError, TypeError) as err:
        raise RequestAttemptError(
            "missing_logprobs", transient=False, bad_answer=True,
            detail=f"no choices[0].logprobs.content[0].top_logprobs ({type(err).__name__})",
        ) from None
    try:
        top = merged_top((str(entry["token"]), float(entry["logprob"])) for entry in entries)
    except (KeyError, TypeError, ValueError):
        raise RequestAttemptError(
            "malformed_body", transient=False, bad_answer=True, detail="bad top_logprobs entry"
        ) from None
    if not top:
        raise RequestAttemptError(
            "missing_logprobs", transient=False, bad_answer=True, detail="empty top_logprobs"
        )
    usage = body.get("usage") or {}
    meta = {
        "answer_token": first.get("token"),
        "served_model": body.get("model"),
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
    }
    return top, meta


def cache_value(
    top: dict[str, float], meta: Mapping[str, Any], settings: OpenAIJudgeSettings, via: str
) -> dict[str, Any]:
    """What the cache stores for one answer: the top list plus enough to audit it later."""
    return {
        "top_logprobs": top,
        **meta,
        "backend": BACKEND_KIND,
        "via": via,
        "model": settings.model,
        "params": settings.decoding_params(),
        "stored_at": time.time(),
    }


def judge_request_key(prompt: str, settings: OpenAIJudgeSettings) -> str:
    """The cache key of one chat-completions judge request (the Batch API shares it); it
    covers the server (``base_url``) where one is set."""
    return request_key(prompt, settings.model, settings.decoding_params(), BACKEND_KIND,
                       endpoint=settings.base_url)


def uncached_requests(
    prompts: Sequence[str], settings: OpenAIJudgeSettings, cache: JudgeCache
) -> dict[str, str]:
    """Key -> prompt of the distinct requests a run would still send; needs no API key,
    so a cost plan can be made before anyone exports one."""
    keys = [judge_request_key(p, settings) for p in prompts]
    return distinct_missing(keys, prompts, cache.get_many(keys))


def _wait_then_drain(events: queue.Queue[Any]) -> list[Any]:
    """The next event, waiting for it, plus every event already queued behind it."""
    drained = [events.get()]
    with contextlib.suppress(queue.Empty):
        while True:
            drained.append(events.get_nowait())
    return drained


@dataclass
class _Arrival:
    key: str
    top: dict[str, float]


@dataclass
class _Finished:
    error: BaseException | None = None


class _BackgroundLoop:
    """Runs one coroutine on its own event loop in a thread, so ``batches`` can stay a plain
    generator (also inside a caller's running loop) and be stopped from outside."""

    def __init__(self, coroutine: Coroutine[Any, Any, None]):
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(coroutine)
        self._thread = threading.Thread(target=self._run, name="openai-judge", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                self._loop.run_until_complete(self._task)
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def stop(self) -> None:
        """Cancel whatever is in flight and wait for the thread (answers stored stay stored)."""
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join()


class OpenAIJudge:
    """A judge backend with TransformersJudge's ``batches`` interface over an HTTP API.

    ``canaries`` (settable after construction, as the judge job does): check the server
    against the cache at the start of every ``batches`` call (``value_drifts.judge.canary``);
    None or a count of 0 sends none. ``last_canaries``: the last check's outcome, or None.
    """

    def __init__(
        self,
        settings: OpenAIJudgeSettings,
        cache: JudgeCache,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
        canaries: CanarySettings | None = None,
    ):
        self.settings = settings
        self.cache = cache
        self._chat = ChatClient(settings, "judge", environ, rng)
        self.last_run_counts = RequestCounts()
        self.canaries = canaries
        self.last_canaries: CanaryOutcome | None = None

    def __repr__(self) -> str:
        return f"OpenAIJudge(model={self.settings.model!r}, base_url={self.settings.base_url!r})"

    def key_for(self, prompt: str) -> str:
        return judge_request_key(prompt, self.settings)

    def uncached(self, prompts: Sequence[str]) -> dict[str, str]:
        return uncached_requests(prompts, self.settings, self.cache)

    def batches(self, prompts: Sequence[str]) -> Iterator[tuple[int, list[dict[str, float]]]]:
        """Yield ``(how many prompts, their top lists)`` in prompt order as answers arrive.

        Raises IncompleteJudgmentsError after the last answer it could yield if any prompt
        failed for good, and ServerAuthError at once if the server refuses the key. With
        ``canaries`` set, first checks the server against the cache (``check_canaries``):
        a CanaryCheckError before anything is yielded.
        """
        counts = RequestCounts(prompts=len(prompts))
        self.last_run_counts = counts
        keys = [self.key_for(p) for p in prompts]
        answers = {k: v["top_logprobs"] for k, v in self.cache.get_many(keys).items()}
        if self.canaries is not None and self.canaries.count > 0:
            self.check_canaries(keys, prompts, answers, counts)
        counts.cache_hits = sum(key in answers for key in keys)
        to_send = distinct_missing(keys, prompts, answers)
        counts.distinct_requests = len(set(keys))
        arrivals: queue.Queue[_Arrival | _Finished] = queue.Queue()
        background = _BackgroundLoop(self._send_all(to_send, arrivals.put, counts))
        emitted, finished = 0, None
        try:
            while True:
                ready = ready_prefix_end(keys, answers, emitted)
                if ready - emitted >= self.settings.yield_every or (ready > emitted and finished):
                    yield ready - emitted, [answers[key] for key in keys[emitted:ready]]
                    emitted = ready
                if emitted == len(keys) or finished:
                    break
                for event in _wait_then_drain(arrivals):
                    if isinstance(event, _Finished):
                        finished = event
                    else:
                        answers[event.key] = event.top
        finally:
            background.stop()
        if emitted < len(keys):
            if finished is not None and finished.error is not None:
                raise finished.error
            raise IncompleteJudgmentsError(self._failure_message(counts), counts.as_dict())

    def check_canaries(
        self,
        keys: Sequence[str],
        prompts: Sequence[str],
        cached: Mapping[str, dict[str, float]],
        counts: RequestCounts,
    ) -> CanaryOutcome:
        """Send the first ``canaries.count`` cached requests again and compare the readings.

        ``cached``: key -> cached top list. The fresh answers are not stored (the cache
        keeps what it has). The canaries' HTTP requests, retries and tokens are added to
        ``counts``; their failures are not (they are not judge requests): they make the
        outcome's ``answered`` fall short. Sets ``last_canaries``; raises the
        ``canary.canary_error`` of a mismatch or an unanswered canary.
        """
        chosen = pick_canaries(keys, prompts, cached, self.canaries.count)
        canary_counts = RequestCounts()
        fresh = self._ask_fresh(chosen, canary_counts) if chosen else {}
        counts.requests_sent += canary_counts.requests_sent
        counts.retries.update(canary_counts.retries)
        counts.prompt_tokens += canary_counts.prompt_tokens
        counts.completion_tokens += canary_counts.completion_tokens
        outcome = compare_canaries(
            [(cached[key], fresh.get(key)) for key in chosen], self.canaries,
            requests_sent=canary_counts.requests_sent,
        )
        self.last_canaries = outcome
        log.info("judge canaries for %s: %s", self.settings.base_url, outcome.as_dict())
        error = canary_error(
            outcome, self.settings.base_url, self.settings.model, str(self.cache.path)
        )
        if error is not None:
            raise error
        return outcome

    def _ask_fresh(
        self, to_send: Mapping[str, str], counts: RequestCounts
    ) -> dict[str, dict[str, float]]:
        """Key -> the server's top list now, for each request it answered; bypasses the
        cache both ways. Blocks until every request is answered or has failed for good."""
        fresh: dict[str, dict[str, float]] = {}

        def keep(key: str, top: dict[str, float], meta: Mapping[str, Any]) -> None:
            fresh[key] = top

        done: queue.Queue[_Finished] = queue.Queue()

        async def ask() -> None:
            error: BaseException | None = None
            try:
                await self._ask_each(to_send, counts, keep)
            except Exception as err:  # noqa: BLE001 - re-raised in the caller's thread
                error = err
            finally:
                done.put(_Finished(error))

        background = _BackgroundLoop(ask())
        try:
            finished = done.get()
        finally:
            background.stop()
        if finished.error is not None:
            raise finished.error
        return fresh

    def _failure_message(self, counts: RequestCounts) -> str:
        failed = sum(counts.failures.values())
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.failures.items()))
        return (
            f"{failed} of {counts.distinct_requests} distinct judge requests failed after "
            f"retries ({reasons}); the other answers are cached, so a rerun sends only these"
        )

    async def _send_all(
        self, to_send: Mapping[str, str], emit: Callable[[Any], None], counts: RequestCounts
    ) -> None:
        """Send every request ``concurrency`` at a time, caching each answer; reports each
        answer and the end via emit."""

        def store(key: str, top: dict[str, float], meta: Mapping[str, Any]) -> None:
            # Stored before it is handed on: once a request is paid for, it is never lost.
            self.cache.put(key, cache_value(top, meta, self.settings, via="chat_completions"))
            emit(_Arrival(key, top))

        error: BaseException | None = None
        try:
            await self._ask_each(to_send, counts, store)
        except Exception as err:  # noqa: BLE001 - re-raised in the caller's thread
            error = err
        finally:
            emit(_Finished(error))

    async def _ask_each(
        self,
        to_send: Mapping[str, str],
        counts: RequestCounts,
        on_answer: Callable[[str, dict[str, float], Mapping[str, Any]], None],
    ) -> None:
        """Send every request ``concurrency`` at a time with the retry policy, counting
        into ``counts``; ``on_answer(key, top, meta)`` for each answer that arrives."""

        async def ask_one(client: openai.AsyncOpenAI, key: str, prompt: str) -> None:
            answer = await self._chat.with_retries(
                key, lambda: self._attempt(client, prompt), counts
            )
            if answer is None:
                return
            top, meta = answer
            counts.answered += 1
            counts.prompt_tokens += meta["prompt_tokens"]
            counts.completion_tokens += meta["completion_tokens"]
            on_answer(key, top, meta)

        await self._chat.drain(to_send, ask_one)

    async def _attempt(
        self, client: openai.AsyncOpenAI, prompt: str
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """One request for the first answer token's top log-probabilities."""
        raw = await self._chat.call(lambda: client.chat.completions.with_raw_response.create(
            model=self.settings.model,
            messages=[{"role": "user", "content": prompt}],
            logprobs=True,
            top_logprobs=self.settings.top_logprobs,
            max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature,
            extra_body=dict(self.settings.extra_body) if self.settings.extra_body else None,
        ))
        try:
            body = json.loads(raw.text)
        except ValueError:
            raise RequestAttemptError(
                "malformed_body", transient=False, bad_answer=True, detail="body is not JSON"
            ) from None
        return top_logprobs_from_body(body)
