"""The OpenAI Batch API path: the same judge requests at the Batch price, resumable.

A batch takes up to 24 hours, so a judge job may well crash or be killed while one is in
flight. The job therefore writes the id of every batch it creates (and, just before, the
id of the uploaded input file) to a small JSON state file, atomically; a rerun with the
same state file polls and collects the batches already paid for instead of submitting new
ones. Answers go to the same content-addressed cache as the synchronous client under the
same keys, so either path reuses the other's answers. Requests a batch did not answer
(failed lines, an expired batch) are resubmitted in a later round, a bounded number of
rounds, then reported like the synchronous client's failures.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from value_drifts.judge.cache import JudgeCache
from value_drifts.judge.openai_backend import (
    BACKEND_KIND,
    IncompleteJudgmentsError,
    OpenAIJudgeSettings,
    RequestCounts,
    cache_value,
    judge_request_key,
    top_logprobs_from_body,
    uncached_requests,
)
from value_drifts.openai_chat import (
    RequestAttemptError,
    ServerAuthError,
    resolve_api_key,
    status_reason,
)

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
# The Batch API's own limit on requests per input file.
MAX_REQUESTS_PER_BATCH = 50_000
STATE_VERSION = 1


class JudgeBatchError(RuntimeError):
    """The Batch API refused a management call; the message is redacted."""


class BatchStillRunningError(TimeoutError):
    """``max_wait_s`` passed with batches unfinished; rerun later to pick them up."""


@dataclass
class BatchRunCounts(RequestCounts):
    batches_created: int = 0
    batches_resumed: int = 0
    batch_statuses: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, int]:
        flat = super().as_dict()
        flat["batches_created"] = self.batches_created
        flat["batches_resumed"] = self.batches_resumed
        flat.update({f"batches_{s}": n for s, n in sorted(self.batch_statuses.items())})
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
    lines = (
        json.dumps(batch_request_line(key, prompt, settings), ensure_ascii=False)
        for key, prompt in to_send.items()
    )
    return ("\n".join(lines) + "\n").encode("utf-8")


def answer_from_output_line(line: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """The top list of one output or error file line; RequestAttemptError says why not."""
    response = line.get("response") or {}
    status = int(response.get("status_code") or 0)
    if line.get("error") or status != 200:
        reason = status_reason(status) if status else "batch_line_error"
        raise RequestAttemptError(reason, transient=True, detail=f"batch line status {status}")
    return top_logprobs_from_body(response.get("body"))


def chunked(items: Mapping[str, str], size: int) -> Iterator[dict[str, str]]:
    pairs = list(items.items())
    for start in range(0, len(pairs), size):
        yield dict(pairs[start : start + size])


def load_state(path: Path) -> dict[str, Any]:
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
    """Judge through the Batch API; ``batches(prompts)`` blocks until the answers are in."""

    def __init__(
        self,
        settings: OpenAIJudgeSettings,
        cache: JudgeCache,
        state_path: str | Path,
        poll_interval_s: float = 60.0,
        max_wait_s: float | None = None,
        max_rounds: int = 3,
        max_requests_per_batch: int = MAX_REQUESTS_PER_BATCH,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self.cache = cache
        self.state_path = Path(state_path)
        self.poll_interval_s = poll_interval_s
        self.max_wait_s = max_wait_s
        self.max_rounds = max_rounds
        self.max_requests_per_batch = max_requests_per_batch
        self._api_key = resolve_api_key(settings.api_key_env, settings.require_api_key, environ)
        self._sleep = sleep
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
        """Run the batches, then yield every answer in prompt order, like the other judges."""
        self.run(prompts)
        keys = [judge_request_key(p, self.settings) for p in prompts]
        stored = self.cache.get_many(keys)
        if len(stored) < len(set(keys)):
            counts = self.last_run_counts
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(counts.failures.items()))
            raise IncompleteJudgmentsError(
                f"{len(set(keys)) - len(stored)} judge requests got no answer from the Batch "
                f"API after {self.max_rounds} rounds ({reasons}); the rest are cached",
                counts.as_dict(),
            )
        if keys:
            yield len(keys), [stored[key]["top_logprobs"] for key in keys]

    def run(self, prompts: Sequence[str]) -> BatchRunCounts:
        """Collect batches left by an earlier job, then submit rounds for what is missing."""
        counts = BatchRunCounts(prompts=len(prompts))
        self.last_run_counts = counts
        counts.distinct_requests = len(set(prompts))
        counts.cache_hits = counts.distinct_requests - len(
            uncached_requests(prompts, self.settings, self.cache)
        )
        known = load_state(self.state_path)
        counts.batches_resumed = len(known["batches"]) + bool(known["pending_input_file_id"])
        try:
            with self._client() as client:
                self._finish_known_batches(client, counts)
                for _ in range(self.max_rounds):
                    to_send = uncached_requests(prompts, self.settings, self.cache)
                    if not to_send:
                        break
                    # A new round resubmits what failed before: those were retries, and
                    # only the last round's failures are final.
                    counts.retries.update(counts.failures)
                    counts.failures.clear()
                    for chunk in chunked(to_send, self.max_requests_per_batch):
                        self._submit(client, chunk, counts)
                    self._finish_known_batches(client, counts)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
            raise ServerAuthError(
                f"the Batch API refused the credentials from ${self.settings.api_key_env} "
                f"(HTTP {err.status_code})"
            ) from None
        except openai.APIError as err:
            raise JudgeBatchError(self._api_key.redact(f"Batch API call failed: {err}")) from None
        return counts

    def _submit(
        self, client: openai.OpenAI, to_send: Mapping[str, str], counts: BatchRunCounts
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
        state["batches"].append(
            {"batch_id": batch.id, "input_file_id": uploaded.id, "requests": len(to_send)}
        )
        state["pending_input_file_id"] = None
        save_state(self.state_path, state)
        counts.batches_created += 1
        counts.requests_sent += len(to_send)
        log.info("submitted judge batch %s with %d requests", batch.id, len(to_send))

    def _finish_known_batches(self, client: openai.OpenAI, counts: BatchRunCounts) -> None:
        """Wait for every batch in the state file, store its answers, then forget it."""
        state = load_state(self.state_path)
        if state["pending_input_file_id"]:
            # Crashed between creating a batch and recording it: find it by its input file.
            self._adopt_batch_for_file(client, state)
        started = time.monotonic()
        for entry in list(state["batches"]):
            batch = client.batches.retrieve(entry["batch_id"])
            while batch.status not in TERMINAL_STATUSES:
                waited = time.monotonic() - started
                if self.max_wait_s is not None and waited >= self.max_wait_s:
                    raise BatchStillRunningError(
                        f"batch {batch.id} is {batch.status} after {waited:.0f} s; its id is "
                        f"saved in {self.state_path}, rerun to collect it"
                    )
                self._sleep(self.poll_interval_s)
                batch = client.batches.retrieve(entry["batch_id"])
            counts.batch_statuses[batch.status] += 1
            self._store_outputs(client, batch, counts)
            state["batches"].remove(entry)
            save_state(self.state_path, state)
        if not state["batches"] and not state["pending_input_file_id"]:
            self.state_path.unlink(missing_ok=True)

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

    def _store_outputs(self, client: openai.OpenAI, batch: Any, counts: BatchRunCounts) -> None:
        """Store each answered line; count every other line by why it has no answer."""
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for raw_line in client.files.content(file_id).text.splitlines():
                if not raw_line.strip():
                    continue
                line = json.loads(raw_line)
                try:
                    top, meta = answer_from_output_line(line)
                except RequestAttemptError as failure:
                    counts.failures[failure.reason] += 1
                    continue
                value = cache_value(top, meta, self.settings, via="batch_api")
                self.cache.put(line["custom_id"], value)
                counts.answered += 1
                counts.prompt_tokens += meta["prompt_tokens"]
                counts.completion_tokens += meta["completion_tokens"]
        if batch.status != "completed":
            counts.failures[f"batch_{batch.status}"] += 1
            log.warning("judge batch %s ended %s", batch.id, batch.status)

