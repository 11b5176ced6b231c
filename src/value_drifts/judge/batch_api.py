"""The OpenAI Batch API path: the same judge requests at the Batch price, resumable.

A batch takes up to 24 hours, so a judge job may well crash or be killed while one is in
flight. The job therefore writes the id of every batch it creates (and, just before, the
id of the uploaded input file) to a small JSON state file, atomically; a rerun with the
same state file polls and collects the batches already paid for instead of submitting new
ones. Answers go to the same content-addressed cache as the synchronous client under the
same keys, so either path reuses the other's answers. Requests a batch did not answer
(failed lines, an expired batch) are resubmitted in a later round, a bounded number of
rounds, then reported like the synchronous client's failures.

The Batch API limits the input tokens an organisation has enqueued per model; a batch
over it fails at validation with ``token_limit_exceeded``. A job therefore submits its
chunks within ``max_enqueued_tokens`` (estimated tokens of its batches in flight), waiting
for earlier batches to finish before the next. After a token-limit failure it stops
submitting, lets its batches in flight finish, and goes on one batch at a time.

Every error the API names reaches the log and the final error with its code and message:
a batch's own ``errors`` (failed), its status (expired, cancelled), and each line of the
output and error files that has an ``error`` or a non-200 ``response.status_code``.
Counts keep batches (``batches_<status>``, ``batch_errors_<code>``) apart from requests
(``failures_<reason>``, ``retries_<reason>``, as for the synchronous client).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from value_drifts.backends.cache import JudgeCache
from value_drifts.backends.openai_client import (
    RequestAttemptError,
    ServerAuthError,
    resolve_api_key,
    status_reason,
)
from value_drifts.judge.cost import estimate_tokens
from value_drifts.judge.openai_backend import (
    BACKEND_KIND,
    IncompleteJudgmentsError,
    JudgeConfigError,
    OpenAIJudgeSettings,
    RequestCounts,
    cache_value,
    judge_request_key,
    top_logprobs_from_body,
    uncached_requests,
)

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
# The Batch API's own limit on requests per input file.
MAX_REQUESTS_PER_BATCH = 50_000
STATE_VERSION = 1
# The Batch API's error code for a batch refused because the organisation's enqueued
# tokens for the model would pass its limit.
TOKEN_LIMIT_CODE = "token_limit_exceeded"
# Requests of a round not submitted because a batch hit the token limit before them.
HELD_BACK_REASON = "not_submitted_after_token_limit"
# How many of a batch's errors, or of a run's failed batches, a message quotes.
QUOTED_ERRORS = 5


class JudgeBatchError(RuntimeError):
    """The Batch API refused a management call; the message is redacted."""


class BatchStillRunningError(TimeoutError):
    """``max_wait_s`` passed with batches unfinished; rerun later to pick them up."""


@dataclass
class BatchRunCounts(RequestCounts):
    """RequestCounts (all per request) plus what happened to the batches themselves.

    ``batch_statuses`` counts batches by final status, ``batch_errors`` batches by each
    error code of their ``errors`` field; ``batch_messages`` describes every batch that did
    not complete cleanly and ``failure_messages`` holds the first error text per request
    failure reason, both for the log and the final error.
    """

    batches_created: int = 0
    batches_resumed: int = 0
    batch_statuses: Counter[str] = field(default_factory=Counter)
    batch_errors: Counter[str] = field(default_factory=Counter)
    batch_messages: list[str] = field(default_factory=list)
    failure_messages: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        flat = super().as_dict()
        flat["batches_created"] = self.batches_created
        flat["batches_resumed"] = self.batches_resumed
        flat.update({f"batches_{s}": n for s, n in sorted(self.batch_statuses.items())})
        flat.update({f"batch_errors_{c}": n for c, n in sorted(self.batch_errors.items())})
        return flat


def batch_request_line(key: str, prompt: str, settings: OpenAIJudgeSettings) -> dict[str, Any]:
    """One JSONL line: the synchronous request's body, with the cache key as custom_id."""
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": [{"role": "user", "content": prompt}],
        "logprobs": True,
        "top_logprobs": settings.top_logprobs,
        "max_tokens": settings.max_tokens,
        "temperature": settings.temperature,
        **dict(settings.extra_body or {}),
    }
    return {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}


def requests_jsonl(to_send: Mapping[str, str], settings: OpenAIJudgeSettings) -> bytes:
    """A Batch API input file (UTF-8 JSONL, one ``batch_request_line`` per request)."""
    lines = (
        json.dumps(batch_request_line(key, prompt, settings), ensure_ascii=False)
        for key, prompt in to_send.items()
    )
    return ("\n".join(lines) + "\n").encode("utf-8")


def enqueued_tokens(prompt: str, settings: OpenAIJudgeSettings) -> int:
    """Estimated tokens one request adds to the Batch API's enqueued-token count.

    The limit counts a batch's input tokens (OpenAI Batch API guide, "Rate limits"); the
    estimate is the cost plan's (``cost.estimate_tokens``: characters / 4 plus the chat
    overhead) plus ``max_tokens``, to err high. Text that tokenizes densely (code, most
    languages other than English) can take more: leave a margin in the budget.
    """
    return estimate_tokens(prompt) + settings.max_tokens


def jsonl_lines(data: bytes) -> Iterator[bytes]:
    """The records of a JSON Lines file, in order, split on ``\\n`` only.

    JSON Lines (jsonlines.org) ends records with ``\\n``; a record may hold U+2028, U+2029
    or U+0085 unescaped (the Batch API's output files do), which ``str.splitlines`` would
    take for line ends. A ``\\r`` before ``\\n``, blank lines and a last record without a
    newline are all accepted.
    """
    for raw in data.split(b"\n"):
        record = raw.strip(b" \t\r")
        if record:
            yield record


def answer_from_output_line(line: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """The top list of one output or error file line; RequestAttemptError says why not.

    A line (OpenAI Batch API reference, "The request output object") has ``response``
    (``status_code`` and the chat completion ``body``) or an ``error`` (``code`` and
    ``message``, e.g. ``batch_expired``, ``request_timeout``). The reason is the line's
    error code, or for an HTTP error the synchronous client's (``server_error``,
    ``rate_limited``, ``http_400``); the detail names the code and message.
    """
    error = line.get("error")
    if error:
        code = _error_field(error, "code") or "batch_line_error"
        detail = f"{code}: {_error_field(error, 'message') or 'no message'}"
        raise RequestAttemptError(_reason_key(code), transient=True, detail=detail)
    response = line.get("response") or {}
    status = int(response.get("status_code") or 0)
    if status != 200:
        body = response.get("body")
        body_error = body.get("error") if isinstance(body, Mapping) else None
        code = _error_field(body_error, "code") or _error_field(body_error, "type")
        message = _error_field(body_error, "message") or "no message"
        reason = status_reason(status) if status else "batch_line_error"
        detail = f"HTTP {status}" + (f" {code}" if code else "") + f": {message}"
        raise RequestAttemptError(reason, transient=True, detail=detail)
    return top_logprobs_from_body(response.get("body"))


def describe_batch_errors(batch: Any) -> tuple[list[str], str]:
    """The distinct error codes of a Batch object's ``errors.data`` (as counts keys, in
    order), and its errors as text.

    Each entry has ``code``, ``message``, ``line`` and ``param`` (OpenAI Batch API
    reference, "The batch object"); the text quotes the first QUOTED_ERRORS entries as
    ``code: message (line n, param p)``. ``([], "")`` when the batch names no error.
    """
    entries = list(_error_field(_error_field(batch, "errors"), "data") or [])
    quoted = []
    for entry in entries[:QUOTED_ERRORS]:
        where = [
            f"{name} {value}" for name in ("line", "param")
            if (value := _error_field(entry, name)) is not None
        ]
        text = f"{_error_field(entry, 'code') or 'no code'}: "
        text += _error_field(entry, "message") or "no message"
        quoted.append(text + (f" ({', '.join(where)})" if where else ""))
    if len(entries) > QUOTED_ERRORS:
        quoted.append(f"and {len(entries) - QUOTED_ERRORS} more errors")
    codes = [_reason_key(c) for e in entries if (c := _error_field(e, "code"))]
    return list(dict.fromkeys(codes)), "; ".join(quoted)


def _output_record(raw: bytes) -> dict[str, Any]:
    """One output or error file record; malformed_output_line if it is not JSON in UTF-8
    or not an object with a custom_id (its request is then sent again next round)."""
    try:
        record = json.loads(raw)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise RequestAttemptError(
            "malformed_output_line", transient=True, detail=f"{type(err).__name__}: {err}"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("custom_id"), str):
        raise RequestAttemptError(
            "malformed_output_line", transient=True, detail="a record without a custom_id"
        )
    return record


def _error_field(value: Any, name: str) -> Any:
    """A field of an error object, whether the openai library's model or a plain dict."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _reason_key(code: str) -> str:
    """An error code as a counts key: lower case, runs of other characters as ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", str(code).lower()).strip("_") or "unknown"


def chunked(
    items: Mapping[str, str],
    size: int,
    token_budget: int | None = None,
    tokens_of: Callable[[str], int] = lambda prompt: 0,
) -> Iterator[tuple[dict[str, str], int]]:
    """``(chunk, its estimated tokens)``: at most ``size`` requests and, with a budget, at
    most ``token_budget`` tokens (``tokens_of`` each prompt) per chunk, in order.

    Raises JudgeConfigError for a request that alone is over the budget: it could never
    be submitted.
    """
    chunk: dict[str, str] = {}
    tokens = 0
    for key, prompt in items.items():
        needed = tokens_of(prompt)
        if token_budget is not None and needed > token_budget:
            raise JudgeConfigError(
                f"a judge request is estimated at {needed} enqueued tokens, more than "
                f"judge.batch.max_enqueued_tokens ({token_budget}); raise the budget"
            )
        over = token_budget is not None and tokens + needed > token_budget
        if chunk and (len(chunk) >= size or over):
            yield chunk, tokens
            chunk, tokens = {}, 0
        chunk[key] = prompt
        tokens += needed
    if chunk:
        yield chunk, tokens


def load_state(path: Path) -> dict[str, Any]:
    """A job's state file (empty when absent); ValueError for another version's."""
    if not path.exists():
        return {"version": STATE_VERSION, "batches": [], "pending_input_file_id": None}
    state = json.loads(path.read_text(encoding="utf-8"))
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path} was written by another version of the batch client")
    return state


def save_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write-then-rename, fsynced: a crash leaves the old or the new state, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=path.name, suffix=".tmp", delete=False, encoding="utf-8"
    ) as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


class OpenAIBatchJudge:
    """Judge through the Batch API; ``batches(prompts)`` blocks until the answers are in.

    ``max_enqueued_tokens``: the most estimated input tokens (``enqueued_tokens``) this
    job keeps in batches in flight; None for no budget. The Batch API's limit is per
    organisation and model and parallel judge jobs share it, so give each job the limit
    divided by the number of judge jobs that run at once. ``max_wait_s``: seconds this
    run waits on batches in all before BatchStillRunningError (None: no end).
    """

    def __init__(
        self,
        settings: OpenAIJudgeSettings,
        cache: JudgeCache,
        state_path: str | Path,
        poll_interval_s: float = 60.0,
        max_wait_s: float | None = None,
        max_rounds: int = 3,
        max_requests_per_batch: int = MAX_REQUESTS_PER_BATCH,
        max_enqueued_tokens: int | None = None,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if max_enqueued_tokens is not None and max_enqueued_tokens < 1:
            raise JudgeConfigError("judge.batch.max_enqueued_tokens must be at least 1")
        self.settings = settings
        self.cache = cache
        self.state_path = Path(state_path)
        self.poll_interval_s = poll_interval_s
        self.max_wait_s = max_wait_s
        self.max_rounds = max_rounds
        self.max_requests_per_batch = max_requests_per_batch
        self.max_enqueued_tokens = max_enqueued_tokens
        self._api_key = resolve_api_key(settings.api_key_env, settings.require_api_key, environ)
        self._sleep = sleep
        self._started = time.monotonic()
        self.last_run_counts = BatchRunCounts()

    def __repr__(self) -> str:
        return f"OpenAIBatchJudge(model={self.settings.model!r}, state={str(self.state_path)!r})"

    def _client(self) -> openai.OpenAI:
        # A handful of management calls: the library's own retries are enough here.
        return openai.OpenAI(
            base_url=self.settings.base_url,
            api_key=self._api_key.reveal(),
            max_retries=5,
            timeout=max(self.settings.request_timeout_s, 120.0),
        )

    def batches(self, prompts: Sequence[str]) -> Iterator[tuple[int, list[dict[str, float]]]]:
        """Run the batches, then yield every answer in prompt order, like the other judges.

        Raises IncompleteJudgmentsError naming each failure's code and message when some
        prompt is still unanswered after ``max_rounds`` rounds (every answer is cached),
        BatchStillRunningError after ``max_wait_s``, ServerAuthError for a refused key and
        JudgeBatchError for a refused management call.
        """
        self.run(prompts)
        keys = [judge_request_key(p, self.settings) for p in prompts]
        stored = self.cache.get_many(keys)
        if len(stored) < len(set(keys)):
            counts = self.last_run_counts
            raise IncompleteJudgmentsError(
                self._failure_message(counts, len(set(keys)) - len(stored)), counts.as_dict()
            )
        if keys:
            yield len(keys), [stored[key]["top_logprobs"] for key in keys]

    def _failure_message(self, counts: BatchRunCounts, missing: int) -> str:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(counts.failures.items()))
        parts = [(
            f"{missing} judge requests got no answer from the Batch API after "
            f"{self.max_rounds} rounds ({reasons}); the rest are cached"
        )]
        errors = [
            f"{r}: {counts.failure_messages[r]}"
            for r in sorted(counts.failures) if r in counts.failure_messages
        ]
        if errors:
            parts.append("errors: " + "; ".join(errors))
        if counts.batch_messages:
            quoted = counts.batch_messages[-QUOTED_ERRORS:]
            more = len(counts.batch_messages) - len(quoted)
            parts.append(
                "batches: " + "; ".join(quoted) + (f"; and {more} earlier" if more else "")
            )
        if counts.failures.keys() & {TOKEN_LIMIT_CODE, HELD_BACK_REASON}:
            parts.append(
                "the organisation's enqueued-token limit for the model was reached: lower "
                f"judge.batch.max_enqueued_tokens (now {self.max_enqueued_tokens}); judge "
                "jobs running at once share the limit, so give each the limit divided by "
                "their number"
            )
        return ". ".join(parts)

    def run(self, prompts: Sequence[str]) -> BatchRunCounts:
        """Collect batches left by an earlier job, then submit rounds for what is missing.

        Each round submits the missing requests in chunks within ``max_enqueued_tokens``;
        after a batch fails with token_limit_exceeded no further chunk goes out in that
        round, and later rounds keep one batch in flight at a time.
        """
        counts = BatchRunCounts(prompts=len(prompts))
        self.last_run_counts = counts
        counts.distinct_requests = len(set(prompts))
        counts.cache_hits = counts.distinct_requests - len(
            uncached_requests(prompts, self.settings, self.cache)
        )
        known = load_state(self.state_path)
        counts.batches_resumed = len(known["batches"]) + bool(known["pending_input_file_id"])
        self._started = time.monotonic()
        try:
            with self._client() as client:
                self._wait(client, counts, for_all=True)
                one_at_a_time = False
                held_back = 0
                for _ in range(self.max_rounds):
                    to_send = uncached_requests(prompts, self.settings, self.cache)
                    if not to_send:
                        held_back = 0
                        break
                    # A new round resubmits what failed before: those were retries, and
                    # only the last round's failures are final.
                    counts.retries.update(counts.failures)
                    counts.failures.clear()
                    held_back = self._submit_round(client, to_send, counts, one_at_a_time)
                    one_at_a_time = one_at_a_time or counts.batch_errors[TOKEN_LIMIT_CODE] > 0
                if held_back:
                    counts.failures[HELD_BACK_REASON] += held_back
        except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
            raise ServerAuthError(
                f"the Batch API refused the credentials from ${self.settings.api_key_env} "
                f"(HTTP {err.status_code})"
            ) from None
        except openai.APIError as err:
            raise JudgeBatchError(self._api_key.redact(f"Batch API call failed: {err}")) from None
        return counts

    def _submit_round(
        self,
        client: openai.OpenAI,
        to_send: Mapping[str, str],
        counts: BatchRunCounts,
        one_at_a_time: bool,
    ) -> int:
        """Submit ``to_send`` chunk by chunk within the budget and wait for the batches.

        Returns how many requests were held back because a batch hit the token limit.
        """
        chunks = list(chunked(
            to_send, self.max_requests_per_batch, self.max_enqueued_tokens,
            lambda prompt: enqueued_tokens(prompt, self.settings),
        ))
        limit_hits = counts.batch_errors[TOKEN_LIMIT_CODE]
        for position, (chunk, tokens) in enumerate(chunks):
            # Batches fail the token limit at validation, soon after creation: look first.
            self._poll(client, counts)
            while not self._fits(tokens, one_at_a_time):
                if counts.batch_errors[TOKEN_LIMIT_CODE] > limit_hits:
                    break
                self._wait(client, counts, for_all=False)
            if counts.batch_errors[TOKEN_LIMIT_CODE] > limit_hits:
                held_back = sum(len(c) for c, _ in chunks[position:])
                log.warning(
                    "a judge batch hit the enqueued-token limit: holding back %d requests "
                    "until this job's batches in flight finish", held_back,
                )
                self._wait(client, counts, for_all=True)
                return held_back
            self._submit(client, chunk, tokens, counts)
        self._wait(client, counts, for_all=True)
        return 0

    def _fits(self, tokens: int, one_at_a_time: bool) -> bool:
        """Whether a chunk of ``tokens`` may go out now beside the batches in flight."""
        in_flight = load_state(self.state_path)["batches"]
        if not in_flight:
            return True
        if one_at_a_time:
            return False
        if self.max_enqueued_tokens is None:
            return True
        enqueued = sum(entry.get("enqueued_tokens") or 0 for entry in in_flight)
        return enqueued + tokens <= self.max_enqueued_tokens

    def _submit(
        self, client: openai.OpenAI, to_send: Mapping[str, str], tokens: int,
        counts: BatchRunCounts,
    ) -> None:
        """Upload the JSONL, create the batch, record both ids before and after creating."""
        state = load_state(self.state_path)
        payload = requests_jsonl(to_send, self.settings)
        uploaded = client.files.create(file=("judge-requests.jsonl", payload), purpose="batch")
        state["pending_input_file_id"] = uploaded.id
        save_state(self.state_path, state)
        batch = client.batches.create(
            input_file_id=uploaded.id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={"created_by": "value-drifts", "backend": BACKEND_KIND},
        )
        state["batches"].append({
            "batch_id": batch.id, "input_file_id": uploaded.id, "requests": len(to_send),
            "enqueued_tokens": tokens,
        })
        state["pending_input_file_id"] = None
        save_state(self.state_path, state)
        counts.batches_created += 1
        counts.requests_sent += len(to_send)
        log.info(
            "submitted judge batch %s with %d requests (about %d enqueued tokens)",
            batch.id, len(to_send), tokens,
        )

    def _wait(self, client: openai.OpenAI, counts: BatchRunCounts, for_all: bool) -> None:
        """Poll until every batch in the state file is done (``for_all``) or one is."""
        while self._poll(client, counts) == 0 or for_all:
            in_flight = load_state(self.state_path)["batches"]
            if not in_flight:
                return
            waited = time.monotonic() - self._started
            if self.max_wait_s is not None and waited >= self.max_wait_s:
                raise BatchStillRunningError(
                    f"batch {in_flight[0]['batch_id']} is still running after "
                    f"{waited:.0f} s; its id is saved in {self.state_path}, rerun to "
                    "collect it"
                )
            self._sleep(self.poll_interval_s)

    def _poll(self, client: openai.OpenAI, counts: BatchRunCounts) -> int:
        """Look at every batch in the state file once; collect and forget the finished.

        Returns how many finished.
        """
        state = load_state(self.state_path)
        if state["pending_input_file_id"]:
            # Crashed between creating a batch and recording it: find it by its input file.
            self._adopt_batch_for_file(client, state)
        finished = 0
        for entry in list(state["batches"]):
            batch = client.batches.retrieve(entry["batch_id"])
            if batch.status not in TERMINAL_STATUSES:
                continue
            counts.batch_statuses[batch.status] += 1
            self._store_outputs(client, batch, entry, counts)
            state["batches"].remove(entry)
            save_state(self.state_path, state)
            finished += 1
        if not state["batches"] and not state["pending_input_file_id"]:
            self.state_path.unlink(missing_ok=True)
        return finished

    def _adopt_batch_for_file(self, client: openai.OpenAI, state: dict[str, Any]) -> None:
        file_id = state["pending_input_file_id"]
        for batch in client.batches.list(limit=100):
            if batch.input_file_id == file_id:
                state["batches"].append(
                    {"batch_id": batch.id, "input_file_id": file_id, "requests": None}
                )
                break
        state["pending_input_file_id"] = None
        save_state(self.state_path, state)

    def _store_outputs(
        self, client: openai.OpenAI, batch: Any, entry: Mapping[str, Any],
        counts: BatchRunCounts,
    ) -> None:
        """Store each answered line; count every other request by why it has no answer.

        A request without a line in either file (a failed batch has none) counts under the
        batch's first error code, else ``batch_<status>``.
        """
        lines = 0
        line_failures: Counter[str] = Counter()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for raw_line in jsonl_lines(client.files.content(file_id).content):
                lines += 1
                try:
                    line = _output_record(raw_line)
                    top, meta = answer_from_output_line(line)
                except RequestAttemptError as failure:
                    line_failures[failure.reason] += 1
                    message = self._api_key.redact(failure.detail)
                    counts.failure_messages.setdefault(failure.reason, message)
                    continue
                value = cache_value(top, meta, self.settings, via="batch_api")
                self.cache.put(line["custom_id"], value)
                counts.answered += 1
                counts.prompt_tokens += meta["prompt_tokens"]
                counts.completion_tokens += meta["completion_tokens"]
        if line_failures:
            counts.failures.update(line_failures)
            log.warning(
                "judge batch %s: %d requests without an answer: %s", batch.id,
                sum(line_failures.values()),
                "; ".join(
                    f"{n} {reason} (e.g. {counts.failure_messages[reason]})"
                    for reason, n in sorted(line_failures.items())
                ),
            )
        size = self._batch_requests(client, batch, entry)
        unanswered = max(0, size - lines)
        codes, errors_text = describe_batch_errors(batch)
        counts.batch_errors.update(codes)
        if batch.status == "completed" and not errors_text and not unanswered:
            return
        reason = codes[0] if codes else (
            "missing_from_output" if batch.status == "completed" else f"batch_{batch.status}"
        )
        message = f"batch {batch.id} ended {batch.status}"
        message += f": {errors_text}" if errors_text else " (the API names no batch error)"
        if unanswered:
            message += (
                f"; {unanswered} of its {size} requests have no line in its output or error "
                "file"
            )
        message = self._api_key.redact(message)
        counts.batch_messages.append(message)
        log.warning("judge %s", message)
        if unanswered:
            counts.failures[reason] += unanswered
            counts.failure_messages.setdefault(
                reason, self._api_key.redact(errors_text or f"batch {batch.status}")
            )

    def _batch_requests(self, client: openai.OpenAI, batch: Any, entry: Mapping[str, Any]) -> int:
        """Requests in a batch: recorded at submission, else read from its input file."""
        if entry.get("requests") is not None:
            return int(entry["requests"])
        total = getattr(getattr(batch, "request_counts", None), "total", None)
        if total:
            return int(total)
        return sum(1 for _ in jsonl_lines(client.files.content(batch.input_file_id).content))
