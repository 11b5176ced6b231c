"""What every OpenAI-protocol chat client here shares: the key, the settings, the retries.

The judge (one-token answers with log-probabilities) and the teacher (full completions)
talk to the same kind of server, so one piece of code holds the API key, runs requests
``concurrency`` at a time and retries them: transient faults (429, 5xx, timeouts, dropped
connections) with exponential backoff and jitter honouring Retry-After, malformed answers
a few times, each retry and final failure counted by reason. The key is read from an
environment variable, held in a value that never prints, and redacted from every error
text a server sends back.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeVar

import openai

log = logging.getLogger(__name__)

# Sent when a local server needs no key: the client library insists on some string.
DUMMY_API_KEY = "not-needed"
# Auth failures will not go away by retrying and would fail every other request too.
FATAL_STATUSES = frozenset({401, 403})
# Statuses the OpenAI client itself treats as transient, plus every 5xx.
RETRYABLE_STATUSES = frozenset({408, 409, 429})

Result = TypeVar("Result")
Item = TypeVar("Item")


class ChatConfigError(ValueError):
    """A client cannot start: a missing key or an impossible setting."""


class ServerAuthError(RuntimeError):
    """The server refused the key; the whole run stops (its message is redacted)."""


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
        raise ChatConfigError(
            f"the API key is read from the environment variable {env_name}, which is "
            "unset or empty; export it, or set require_api_key: false for a local server"
        )
    return _Secret(DUMMY_API_KEY)


@dataclass(frozen=True)
class ChatServerSettings:
    """The server, key and fault policy of one client; subclasses add their decoding."""

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    require_api_key: bool = True
    concurrency: int = 16
    request_timeout_s: float = 60.0
    # Attempts per request for transient faults (429, 5xx, timeouts, connection errors).
    max_attempts: int = 8
    # Attempts per request for 200 answers that are malformed (no choices, no logprobs).
    max_bad_answer_attempts: int = 3
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0
    # Provider-specific request fields (e.g. vLLM's), sent as-is and part of the cache key.
    extra_body: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_attempts < 1 or self.max_bad_answer_attempts < 1:
            raise ChatConfigError("concurrency and attempt limits must be at least 1")

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> Any:
        """Settings from a config section, ignoring keys meant for other backends."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in section.items() if k in names})


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


class RetryCounts(Protocol):
    """The counters the retry loop updates (judge.answers.RequestCounts has them)."""

    requests_sent: int
    retries: Any
    failures: Any


class ChatClient:
    """One run's connection to an OpenAI-protocol server with this project's retry policy.

    ``label`` ("judge", "teacher") names the caller in logs and errors.
    """

    def __init__(
        self,
        settings: ChatServerSettings,
        label: str,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ):
        self.settings = settings
        self.label = label
        self.api_key = resolve_api_key(settings.api_key_env, settings.require_api_key, environ)
        self._rng = rng or random.Random()

    def async_client(self) -> openai.AsyncOpenAI:
        # max_retries=0: retries are ours, so they are counted, jittered and bounded here.
        return openai.AsyncOpenAI(
            base_url=self.settings.base_url,
            api_key=self.api_key.reveal(),
            max_retries=0,
            timeout=self.settings.request_timeout_s,
        )

    async def drain(
        self,
        items: Mapping[str, Item],
        handle: Callable[[openai.AsyncOpenAI, str, Item], Awaitable[None]],
    ) -> None:
        """``handle(client, key, item)`` for every item, ``concurrency`` at a time; the first
        exception (an auth error) cancels the rest and propagates."""
        if not items:
            return
        pending = iter(items.items())

        async def worker(client: openai.AsyncOpenAI) -> None:
            for key, item in pending:
                await handle(client, key, item)

        async with self.async_client() as client:
            workers = [
                asyncio.create_task(worker(client))
                for _ in range(min(self.settings.concurrency, len(items)))
            ]
            try:
                await asyncio.gather(*workers)
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    async def with_retries(
        self, key: str, attempt: Callable[[], Awaitable[Result]], counts: RetryCounts
    ) -> Result | None:
        """``attempt()``'s result, retried per the settings; None once the request's retry
        budget is spent (counted under ``counts.failures`` by reason)."""
        settings = self.settings
        transient_tries = bad_answer_tries = 0
        while True:
            counts.requests_sent += 1
            try:
                return await attempt()
            except RequestAttemptError as failure:
                transient_tries += failure.transient
                bad_answer_tries += failure.bad_answer
                gave_up = (
                    not (failure.transient or failure.bad_answer)
                    or transient_tries >= settings.max_attempts
                    or bad_answer_tries >= settings.max_bad_answer_attempts
                )
                if gave_up:
                    counts.failures[failure.reason] += 1
                    log.warning("%s request %s failed for good (%s): %s",
                                self.label, key[:12], failure.reason, failure.detail)
                    return None
                counts.retries[failure.reason] += 1
                delay = retry_delay_s(
                    transient_tries + bad_answer_tries - 1,
                    settings.backoff_initial_s,
                    settings.backoff_max_s,
                    failure.retry_after_s,
                    settings.max_retry_after_s,
                    self._rng,
                )
                log.info("%s request %s: %s, retrying in %.2f s",
                         self.label, key[:12], failure.reason, delay)
                await asyncio.sleep(delay)

    async def call(self, request: Callable[[], Awaitable[Result]]) -> Result:
        """One HTTP request; every failure becomes a RequestAttemptError with redacted
        detail, except a refused key, which raises ServerAuthError at once."""
        try:
            return await request()
        except openai.APITimeoutError:
            raise RequestAttemptError("timeout", transient=True, detail="timed out") from None
        except openai.APIConnectionError as err:
            raise RequestAttemptError(
                "connection", transient=True, detail=self.api_key.redact(str(err))
            ) from None
        except openai.APIStatusError as err:
            detail = self.api_key.redact(f"HTTP {err.status_code}: {err.message}")
            if err.status_code in FATAL_STATUSES:
                raise ServerAuthError(
                    f"the {self.label} server refused the credentials from "
                    f"${self.settings.api_key_env} ({detail})"
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
                detail=self.api_key.redact(type(err).__name__),
            ) from None
