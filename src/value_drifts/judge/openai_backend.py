"""Judge through any OpenAI-compatible chat-completions server, cached and fault tolerant.

The same client talks to the OpenAI API, vLLM or llama.cpp (``base_url``). Every answer is
looked up in the persistent cache first and stored there the moment it arrives, so an
interrupted run resumes without paying twice. Transient faults (429, 5xx, timeouts,
dropped connections) are retried with exponential backoff and jitter, honouring
Retry-After; malformed bodies and answers without log-probabilities are retried a few
times, then reported. The API key is read from an environment variable, held in a value
that never prints, and redacted from every error text the server sends back.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import openai

from value_drifts.judge.answers import (  # noqa: F401 - re-exported for callers
    JudgeRunCounts,
    distinct_missing,
    merged_top,
    ready_prefix_end,
)
from value_drifts.judge.cache import JudgeCache, request_key

log = logging.getLogger(__name__)

BACKEND_KIND = "openai_chat"
# Sent when a local server needs no key: the client library insists on some string.
DUMMY_API_KEY = "not-needed"
# Auth failures will not go away by retrying and would fail every other prompt too.
FATAL_STATUSES = frozenset({401, 403})
# Statuses the OpenAI client itself treats as transient, plus every 5xx.
RETRYABLE_STATUSES = frozenset({408, 409, 429})


class JudgeConfigError(ValueError):
    """The judge cannot start: a missing key or an impossible setting."""


class JudgeAuthError(RuntimeError):
    """The server refused the key; the whole run stops (its message is redacted)."""


class IncompleteJudgmentsError(RuntimeError):
    """Some prompts got no answer after all retries; every other answer is cached."""

    def __init__(self, message: str, counts: dict[str, int]):
        super().__init__(message)
        self.counts = counts


class _Secret:
    """Holds the API key so that repr, str, logging and tracebacks show only a placeholder."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """Remove the key from text a server or library produced (some servers echo it)."""
        return text.replace(self._value, "[redacted]") if self._value else text

    def __repr__(self) -> str:
        return "_Secret('[redacted]')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("the API key is not picklable, on purpose")


def resolve_api_key(
    env_name: str, required: bool = True, environ: Mapping[str, str] | None = None
) -> _Secret:
    """The key from ``env_name``; a dummy key where the server needs none (``required=False``).

    The key is never taken from config files, so it cannot end up in a committed config or
    in Snakemake's logged parameters.
    """
    value = (os.environ if environ is None else environ).get(env_name, "").strip()
    if value:
        return _Secret(value)
    if required:
        raise JudgeConfigError(
            f"the judge API key is read from the environment variable {env_name}, which is "
            "unset or empty; export it, or set require_api_key: false for a local server"
        )
    return _Secret(DUMMY_API_KEY)


@dataclass(frozen=True)
class OpenAIJudgeSettings:
    """What a judge run needs; the decoding fields also key the cache."""

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    require_api_key: bool = True
    top_logprobs: int = 20
    max_tokens: int = 1
    temperature: float = 0.0
    concurrency: int = 16
    request_timeout_s: float = 60.0
    # Attempts per prompt for transient faults (429, 5xx, timeouts, connection errors).
    max_attempts: int = 8
    # Attempts per prompt for 200 answers that are malformed or lack logprobs.
    max_bad_answer_attempts: int = 3
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0
    # Provider-specific request fields (e.g. vLLM's), sent as-is and part of the cache key.
    extra_body: Mapping[str, Any] | None = None
    # How many answers to gather before yielding to the caller (progress granularity).
    yield_every: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.top_logprobs <= 20:
            raise JudgeConfigError("top_logprobs must be between 1 and 20 (the API's limit)")
        if self.concurrency < 1 or self.max_attempts < 1 or self.max_bad_answer_attempts < 1:
            raise JudgeConfigError("concurrency and attempt limits must be at least 1")

    def decoding_params(self) -> dict[str, Any]:
        """Everything besides prompt and model that changes the answer: the cache key's part."""
        return {
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "extra_body": dict(self.extra_body or {}),
        }


def settings_from_config(judge: Mapping[str, Any]) -> OpenAIJudgeSettings:
    """Settings from a config's judge section, ignoring keys meant for other backends."""
    names = {f.name for f in fields(OpenAIJudgeSettings)}
    return OpenAIJudgeSettings(**{k: v for k, v in judge.items() if k in names})


class RequestAttemptError(Exception):
    """One request attempt failed; says why and whether another attempt may succeed."""

    def __init__(
        self, reason: str, *, transient: bool, bad_answer: bool = False,
        retry_after_s: float | None = None, detail: str = "",
    ):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.bad_answer = bad_answer
        self.retry_after_s = retry_after_s
        self.detail = detail


def status_reason(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return f"http_{status}"


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI), ``Retry-After`` seconds or HTTP date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        raw = lowered.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw) * scale
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw).timestamp()
            except (TypeError, ValueError, IndexError):
                continue
            seconds = when - (time.time() if now is None else now)
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def retry_delay_s(
    retry_number: int,
    initial_s: float,
    max_s: float,
    retry_after_s: float | None = None,
    max_retry_after_s: float = 300.0,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with jitter; a server's Retry-After is a floor, plus jitter.

    Jitter spreads the retries of many concurrent requests hit by the same 429 over time
    instead of sending them back in one burst.
    """
    rng = rng or random
    if retry_after_s is not None:
        return min(retry_after_s, max_retry_after_s) + rng.uniform(0, initial_s)
    ceiling = min(max_s, initial_s * 2**retry_number)
    return rng.uniform(ceiling / 2, ceiling)


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
    """The cache key of one chat-completions judge request (the Batch API shares it)."""
    return request_key(prompt, settings.model, settings.decoding_params(), BACKEND_KIND)


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
    """A judge backend with TransformersJudge's ``batches`` interface over an HTTP API."""

    def __init__(
        self,
        settings: OpenAIJudgeSettings,
        cache: JudgeCache,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ):
        self.settings = settings
        self.cache = cache
        self._api_key = resolve_api_key(settings.api_key_env, settings.require_api_key, environ)
        self._rng = rng or random.Random()
        self.last_run_counts = JudgeRunCounts()

    def __repr__(self) -> str:
        return f"OpenAIJudge(model={self.settings.model!r}, base_url={self.settings.base_url!r})"

    def key_for(self, prompt: str) -> str:
        return judge_request_key(prompt, self.settings)

    def uncached(self, prompts: Sequence[str]) -> dict[str, str]:
        return uncached_requests(prompts, self.settings, self.cache)

    def batches(self, prompts: Sequence[str]) -> Iterator[tuple[int, list[dict[str, float]]]]:
        """Yield ``(how many prompts, their top lists)`` in prompt order as answers arrive.

        Raises IncompleteJudgmentsError after the last answer it could yield if any prompt
        failed for good, and JudgeAuthError at once if the server refuses the key.
        """
        counts = JudgeRunCounts(prompts=len(prompts))
        self.last_run_counts = counts
        keys = [self.key_for(p) for p in prompts]
        answers = {k: v["top_logprobs"] for k, v in self.cache.get_many(keys).items()}
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

    def _failure_message(self, counts: JudgeRunCounts) -> str:
        failed = sum(counts.failures.values())
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.failures.items()))
        return (
            f"{failed} of {counts.distinct_requests} distinct judge requests failed after "
            f"retries ({reasons}); the other answers are cached, so a rerun sends only these"
        )

    async def _send_all(
        self, to_send: Mapping[str, str], emit: Callable[[Any], None], counts: JudgeRunCounts
    ) -> None:
        """A pool of ``concurrency`` workers drains the requests; reports the end via emit."""
        error: BaseException | None = None
        try:
            if to_send:
                pending = iter(to_send.items())
                async with self._client() as client:
                    workers = [
                        asyncio.create_task(self._worker(client, pending, emit, counts))
                        for _ in range(min(self.settings.concurrency, len(to_send)))
                    ]
                    try:
                        await asyncio.gather(*workers)
                    finally:
                        for worker in workers:
                            worker.cancel()
                        await asyncio.gather(*workers, return_exceptions=True)
        except Exception as err:  # noqa: BLE001 - re-raised in the caller's thread
            error = err
        finally:
            emit(_Finished(error))

    def _client(self) -> openai.AsyncOpenAI:
        # max_retries=0: retries are ours, so they are counted, jittered and bounded here.
        return openai.AsyncOpenAI(
            base_url=self.settings.base_url,
            api_key=self._api_key.reveal(),
            max_retries=0,
            timeout=self.settings.request_timeout_s,
        )

    async def _worker(
        self,
        client: openai.AsyncOpenAI,
        pending: Iterator[tuple[str, str]],
        emit: Callable[[Any], None],
        counts: JudgeRunCounts,
    ) -> None:
        for key, prompt in pending:
            answer = await self._answer_with_retries(client, key, prompt, counts)
            if answer is None:
                continue
            top, meta = answer
            # Stored before it is handed on: once a request is paid for, it is never lost.
            self.cache.put(key, cache_value(top, meta, self.settings, via="chat_completions"))
            counts.answered += 1
            counts.prompt_tokens += meta["prompt_tokens"]
            counts.completion_tokens += meta["completion_tokens"]
            emit(_Arrival(key, top))

    async def _answer_with_retries(
        self, client: openai.AsyncOpenAI, key: str, prompt: str, counts: JudgeRunCounts
    ) -> tuple[dict[str, float], dict[str, Any]] | None:
        """The answer, or None once the prompt's retry budget is spent (counted as failure)."""
        transient_tries = bad_answer_tries = 0
        while True:
            counts.requests_sent += 1
            try:
                return await self._attempt(client, prompt)
            except RequestAttemptError as failure:
                transient_tries += failure.transient
                bad_answer_tries += failure.bad_answer
                gave_up = (
                    not (failure.transient or failure.bad_answer)
                    or transient_tries >= self.settings.max_attempts
                    or bad_answer_tries >= self.settings.max_bad_answer_attempts
                )
                if gave_up:
                    counts.failures[failure.reason] += 1
                    log.warning(
                        "judge request %s failed for good (%s): %s",
                        key[:12], failure.reason, failure.detail,
                    )
                    return None
                counts.retries[failure.reason] += 1
                delay = retry_delay_s(
                    transient_tries + bad_answer_tries - 1,
                    self.settings.backoff_initial_s,
                    self.settings.backoff_max_s,
                    failure.retry_after_s,
                    self.settings.max_retry_after_s,
                    self._rng,
                )
                log.info(
                    "judge request %s: %s, retrying in %.2f s", key[:12], failure.reason, delay
                )
                await asyncio.sleep(delay)

    async def _attempt(
        self, client: openai.AsyncOpenAI, prompt: str
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """One HTTP request; every failure becomes an RequestAttemptError with redacted detail."""
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=self.settings.model,
                messages=[{"role": "user", "content": prompt}],
                logprobs=True,
                top_logprobs=self.settings.top_logprobs,
                max_tokens=self.settings.max_tokens,
                temperature=self.settings.temperature,
                extra_body=dict(self.settings.extra_body) if self.settings.extra_body else None,
            )
            text = raw.text
        except openai.APITimeoutError:
            raise RequestAttemptError(
                "timeout", transient=True, detail="request timed out"
            ) from None
        except openai.APIConnectionError as err:
            raise RequestAttemptError(
                "connection", transient=True, detail=self._api_key.redact(str(err))
            ) from None
        except openai.APIStatusError as err:
            detail = self._api_key.redact(f"HTTP {err.status_code}: {err.message}")
            if err.status_code in FATAL_STATUSES:
                raise JudgeAuthError(
                    f"the judge server refused the credentials from ${self.settings.api_key_env} "
                    f"({detail})"
                ) from None
            raise RequestAttemptError(
                status_reason(err.status_code),
                transient=is_retryable_status(err.status_code),
                retry_after_s=parse_retry_after(err.response.headers),
                detail=detail,
            ) from None
        except openai.APIError as err:  # e.g. a response the library could not validate
            raise RequestAttemptError(
                "malformed_body", transient=False, bad_answer=True,
                detail=self._api_key.redact(type(err).__name__),
            ) from None
        try:
            body = json.loads(text)
        except ValueError:
            raise RequestAttemptError(
                "malformed_body", transient=False, bad_answer=True, detail="body is not JSON"
            ) from None
        return top_logprobs_from_body(body)
