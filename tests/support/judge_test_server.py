"""A local OpenAI-protocol server for judge tests, with fault injection.

It speaks enough of POST /v1/chat/completions for the judge client, and of /v1/files and
/v1/batches for the Batch API client (a batch finishes after a set number of polls, and
its lines meet the same per-prompt faults as synchronous requests). Like the OpenAI Batch
API it can refuse a batch at validation when the organisation's enqueued tokens would
pass a limit (``enqueued_token_limit``, error code ``token_limit_exceeded``), end batches
failed or expired with the Batch object's ``errors``, and write its output files as
UTF-8 JSONL whose records may hold raw U+2028 and the like. The answer's top
log-probabilities are a deterministic function of the prompt, so a run with faults can be
compared value for value with a fault-free run. Faults are queued per prompt and consumed
one per request; every request is counted per prompt, so tests can prove that no answered
prompt was sent twice. Loopback only, a random free port, a thread per request.

Given ``upstream`` (a real server's base URL) it is a fault-injecting proxy instead: the
proxy answers the injected faults itself and forwards every other chat request, counting
them, so a test against a real model can prove that no prompt was paid for twice.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from typing import Any

from tests.support.loopback_http import JSONHandler, LoopbackServer

LABEL_TOKENS = ("support", " Support", "neutral", " Neutral", "oppose", " Opp")
FILLER_TOKENS = (
    "The", "I", "This", "Sorry", "It", "As", "A", "In", "My", "Yes", "No", "Based", "Well",
    "Unfortunately", "To", "There", "We", "That",
)
FAULT_KINDS = (
    "429", "500", "503", "timeout", "drop", "malformed", "no_logprobs", "empty_top", "400",
)


def fake_top_logprobs(
    prompt: str, k: int = 20, extra_tokens: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The answer's top-k list: label tokens scored from a hash of the prompt, fillers below.

    ``extra_tokens`` are scored like labels, so they make the top list too.
    """
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    tokens = LABEL_TOKENS + FILLER_TOKENS + extra_tokens
    scores = [digest[i] / 40.0 for i in range(len(LABEL_TOKENS))]
    scores += [digest[len(LABEL_TOKENS) + i] / 80.0 - 3.0 for i in range(len(FILLER_TOKENS))]
    scores += [digest[-1 - i] / 40.0 for i in range(len(extra_tokens))]
    top = max(scores)
    log_norm = top + math.log(sum(math.exp(s - top) for s in scores))
    ranked = sorted(zip(tokens, scores, strict=True), key=lambda ts: -ts[1])[:k]
    return [
        {"token": token, "logprob": score - log_norm, "bytes": list(token.encode("utf-8"))}
        for token, score in ranked
    ]


def expected_top(
    prompt: str, k: int = 20, extra_tokens: tuple[str, ...] = ()
) -> dict[str, float]:
    """What a correct client should return for ``prompt``."""
    return {
        entry["token"]: entry["logprob"] for entry in fake_top_logprobs(prompt, k, extra_tokens)
    }


def fake_prompt_tokens(prompt: str) -> int:
    """The fake's token count of a prompt (its usage and its enqueued-token limit)."""
    return max(1, len(prompt) // 4)


def completion_body(
    prompt: str, model: str, k: int, logprobs: bool = True, extra_tokens: tuple[str, ...] = ()
) -> dict[str, Any]:
    top = fake_top_logprobs(prompt, k or 1, extra_tokens)
    content = [{**top[0], "top_logprobs": top if k else []}]
    return {
        "id": "chatcmpl-" + hashlib.sha256(prompt.encode()).hexdigest()[:12],
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": top[0]["token"]},
                "logprobs": {"content": content} if logprobs else None,
                "finish_reason": "length",
            }
        ],
        "usage": {
            "prompt_tokens": fake_prompt_tokens(prompt),
            "completion_tokens": 1,
            "total_tokens": fake_prompt_tokens(prompt) + 1,
        },
    }


class FakeOpenAIServer(LoopbackServer):
    """Start with ``with FakeOpenAIServer() as server: server.base_url``."""

    def __init__(
        self, api_key: str | None = None, timeout_sleep_s: float = 1.0,
        upstream: str | None = None,
    ):
        self.timeout_sleep_s = timeout_sleep_s
        # With an upstream base URL this is a fault-injecting proxy: injected faults are
        # answered here, every other chat request is forwarded to the real server.
        self.upstream = upstream
        self.answer_delay_s = 0.0
        self.hits: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.hit_times: dict[str, list[float]] = defaultdict(list)
        self.faults_applied: Counter[str] = Counter()
        self._faults: dict[str, deque[str]] = {}
        self._lock = threading.RLock()  # poll_batch holds it while lines take faults
        # Batch API state: uploaded files, batches, and how batches end.
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls_to_finish = 1
        # How the next batches end: "completed", "expired", "cancelled", "failed" (with an
        # invalid-input error), or ("failed", [Batch errors.data entries]); then
        # "completed". An expired or cancelled batch runs its first lines only; the rest
        # get batch_expired / batch_cancelled lines in its error file, as the API writes
        # them, or none (unrun_lines_in_error_file False).
        self.batch_outcomes: deque[str | tuple[str, list[dict[str, Any]]]] = deque()
        self.batch_lines_before_expiry = 0
        self.unrun_lines_in_error_file = True
        self.batch_requests_seen: Counter[str] = Counter()
        # The organisation's enqueued-token limit (fake_prompt_tokens of every request in
        # batches validating or in progress); None: no limit.
        self.enqueued_token_limit: int | None = None
        # ("created", batch id, requests, tokens) and ("ended", batch id, status), in order.
        self.batch_events: list[tuple[Any, ...]] = []
        # How output files are laid out: "plain" (a newline after every record),
        # "no_final_newline", "blank_lines" (blank and whitespace lines between records),
        # "crlf" (Windows line ends).
        self.batch_file_layout = "plain"
        # Tokens every answer's top list also holds (e.g. "\u2028").
        self.extra_top_tokens: tuple[str, ...] = ()
        super().__init__(_handler_for(self), api_key)

    def inject(self, prompt: str, faults: Iterable[str]) -> None:
        """Queue faults for ``prompt``: one is used per request, then it is answered.

        A fault is one of FAULT_KINDS, optionally ``429:<seconds>`` for a Retry-After.
        """
        with self._lock:
            self._faults.setdefault(prompt, deque()).extend(faults)

    def reset_counts(self) -> None:
        with self._lock:
            self.hits.clear()
            self.served.clear()
            self.forwarded.clear()
            self.hit_times.clear()
            self.faults_applied.clear()

    def _next_fault(self, prompt: str) -> str | None:
        with self._lock:
            self.hits[prompt] += 1
            self.hit_times[prompt].append(time.monotonic())
            queued = self._faults.get(prompt)
            fault = queued.popleft() if queued else None
            if fault:
                self.faults_applied[fault.split(":")[0]] += 1
            return fault

    def _record_served(self, prompt: str) -> None:
        with self._lock:
            self.served[prompt] += 1

    def forward(self, request: dict[str, Any], prompt: str) -> tuple[int, bytes]:
        """POST the chat request to the upstream server; its status and raw body."""
        with self._lock:
            self.forwarded[prompt] += 1
        upstream = urllib.request.Request(
            f"{self.upstream.rstrip('/')}/chat/completions",
            data=json.dumps(request).encode("utf-8"),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(upstream, timeout=600) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()


    # --- Batch API -----------------------------------------------------------------------

    def add_file(self, data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        with self._lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = {"data": data, "object": {
                "id": file_id, "object": "file", "bytes": len(data), "created_at": 0,
                "filename": filename, "purpose": purpose, "status": "processed",
            }}
            return self.files[file_id]["object"]

    def create_batch(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            batch_id = f"batch-{len(self.batches) + 1}"
            lines = self._input_lines(request["input_file_id"])
            tokens = sum(fake_prompt_tokens(_line_prompt(line)) for line in lines)
            self.batch_events.append(("created", batch_id, len(lines), tokens))
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": request["endpoint"],
                "input_file_id": request["input_file_id"], "completion_window": "24h",
                "status": "validating", "created_at": 0, "output_file_id": None,
                "error_file_id": None, "errors": None, "metadata": request.get("metadata"),
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "_polls": 0, "_tokens": tokens,
            }
            return _public(self.batches[batch_id])

    def _input_lines(self, file_id: str) -> list[dict[str, Any]]:
        """The records of an uploaded JSONL file, split on "\\n" only (JSON Lines)."""
        data = self.files[file_id]["data"].decode("utf-8")
        return [json.loads(text) for text in data.split("\n") if text.strip()]

    def poll_batch(self, batch_id: str) -> dict[str, Any]:
        """Each retrieval is one poll; the batch ends on the configured poll.

        The first poll validates it: a batch that would take the enqueued tokens past
        ``enqueued_token_limit`` fails there with the Batch API's token_limit_exceeded.
        """
        with self._lock:
            batch = self.batches[batch_id]
            batch["_polls"] += 1
            if batch["status"] == "validating":
                self._validate(batch)
            if batch["status"] == "in_progress" and batch["_polls"] >= self.batch_polls_to_finish:
                self._finish_batch(batch)
            return _public(batch)

    def _validate(self, batch: dict[str, Any]) -> None:
        enqueued = sum(
            other["_tokens"] for other in self.batches.values()
            if other["status"] in ("in_progress", "finalizing")
        )
        limit = self.enqueued_token_limit
        if limit is not None and enqueued + batch["_tokens"] > limit:
            message = (
                f"Enqueued token limit reached for {self._model_of(batch)} in organization "
                f"org-fake. Limit: {limit:,} enqueued tokens. Please try again once some "
                "in_progress batches have been completed."
            )
            self._end(batch, "failed", errors={"object": "list", "data": [
                {"code": "token_limit_exceeded", "message": message, "param": None,
                 "line": None},
            ]})
            return
        batch["status"] = "in_progress"

    def _model_of(self, batch: dict[str, Any]) -> str:
        lines = self._input_lines(batch["input_file_id"])
        return lines[0]["body"]["model"] if lines else "unknown"

    def _end(self, batch: dict[str, Any], status: str, **fields: Any) -> None:
        batch.update(status=status, **fields)
        self.batch_events.append(("ended", batch["id"], status))

    def _finish_batch(self, batch: dict[str, Any]) -> None:
        lines = self._input_lines(batch["input_file_id"])
        outcome = self.batch_outcomes.popleft() if self.batch_outcomes else "completed"
        status, batch_errors = outcome if isinstance(outcome, tuple) else (outcome, None)
        if status == "failed":
            batch_errors = batch_errors or [
                {"code": "invalid_request", "message": "invalid input", "param": None,
                 "line": None},
            ]
            self._end(batch, "failed", errors={"object": "list", "data": batch_errors})
            return
        outputs, errors = [], []
        for number, line in enumerate(lines):
            if status in _UNRUN_LINE_ERRORS and number >= self.batch_lines_before_expiry:
                if self.unrun_lines_in_error_file:
                    unrun = _UNRUN_LINE_ERRORS[status]
                    errors.append(_result_line(number, line["custom_id"], None, unrun))
                continue
            prompt = _line_prompt(line)
            self.batch_requests_seen[prompt] += 1
            code, body = self._batch_answer(line["body"], prompt)
            if code is None:
                errors.append(_result_line(number, line["custom_id"], None, body))
                continue
            response = {"status_code": code, "request_id": f"req_{number}", "body": body}
            result = _result_line(number, line["custom_id"], response, None)
            if code == TRUNCATED_RECORD:
                outputs.append(result[: len(result) // 2])
                continue
            (outputs if code == 200 else errors).append(result)
        for name, kept in (("output_file_id", outputs), ("error_file_id", errors)):
            if kept:
                data = self._layout(kept).encode("utf-8")
                batch[name] = self.add_file(data, "batch_output", f"{name}.jsonl")["id"]
        batch["request_counts"] = {
            "total": len(lines), "completed": len(outputs), "failed": len(errors),
        }
        self._end(batch, status)

    def _layout(self, records: list[str]) -> str:
        if self.batch_file_layout == "no_final_newline":
            return "\n".join(records)
        if self.batch_file_layout == "blank_lines":
            return "\n".join(["", *(f"{r}\n \t" for r in records), ""]) + "\n\n"
        if self.batch_file_layout == "crlf":
            return "".join(f"{r}\r\n" for r in records)
        return "".join(f"{r}\n" for r in records)

    def _batch_answer(
        self, body: dict[str, Any], prompt: str
    ) -> tuple[int | None, dict[str, Any]]:
        """The HTTP status and body of one line, or (None, the line's own ``error``).

        Faults: an HTTP status gives an error-file line with the API's error body,
        "timeout" a line with error code request_timeout, "malformed" an output record cut
        in half, "no_logprobs" an answer without log-probabilities.
        """
        kind = (self._next_fault(prompt) or "").partition(":")[0]
        if kind in ("429", "500", "503", "400"):
            return int(kind), {"error": _BATCH_LINE_ERRORS[kind]}
        if kind == "malformed":
            return TRUNCATED_RECORD, completion_body(prompt, body["model"], 20)
        if kind == "timeout":
            return None, {
                "code": "request_timeout", "message": "The underlying call to the model timed out.",
            }
        k = int(body.get("top_logprobs") or 0)
        if kind == "no_logprobs":
            return 200, completion_body(prompt, body["model"], k, logprobs=False)
        self._record_served(prompt)
        return 200, completion_body(prompt, body["model"], k, extra_tokens=self.extra_top_tokens)


# A line status meaning "write this output record cut in half".
TRUNCATED_RECORD = -1
# The error-file lines of requests an expired or cancelled batch did not run.
_UNRUN_LINE_ERRORS = {
    "expired": {"code": "batch_expired", "message": "This request could not be executed "
                "before the completion window expired."},
    "cancelled": {"code": "batch_cancelled", "message": "This request was not executed "
                  "because the batch was cancelled."},
}
# The error bodies of failed batch lines, shaped like the API's (message, type, param, code).
_BATCH_LINE_ERRORS = {
    "400": {"message": "injected 400: 'messages' is malformed", "type": "invalid_request_error",
            "param": "messages", "code": "invalid_value"},
    "429": {"message": "injected 429: rate limited", "type": "requests", "param": None,
            "code": "rate_limit_exceeded"},
    "500": {"message": "injected 500", "type": "server_error", "param": None, "code": None},
    "503": {"message": "injected 503: overloaded", "type": "server_error", "param": None,
            "code": "server_overloaded"},
}


def _line_prompt(line: dict[str, Any]) -> str:
    return line["body"]["messages"][-1]["content"]


def _result_line(
    number: int, custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None
) -> str:
    """One output or error file record, UTF-8 as the API writes it (no \\u escapes)."""
    result = {"id": f"batch_req_{number}", "custom_id": custom_id, "response": response,
              "error": error}
    return json.dumps(result, ensure_ascii=False)


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _multipart_fields(content_type: str, data: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body (enough for file uploads)."""
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + data, policy=email.policy.HTTP
    )
    return {
        part.get_param("name", header="content-disposition"): (
            part.get_filename(), part.get_payload(decode=True)
        )
        for part in message.iter_parts()
    }


def _handler_for(server: FakeOpenAIServer) -> type[JSONHandler]:
    class Handler(JSONHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            if not self.authorised():
                return
            parts = path.split("/")
            if path == "/v1/batches":
                listed = [_public(b) for b in reversed(server.batches.values())]
                self.send_json(200, {"object": "list", "data": listed, "has_more": False})
            elif len(parts) == 4 and parts[2] == "batches" and parts[3] in server.batches:
                self.send_json(200, server.poll_batch(parts[3]))
            elif len(parts) == 5 and parts[2] == "files" and parts[4] == "content":
                self.send_raw(200, server.files[parts[3]]["data"], content_type="text/plain")
            else:
                self.send_json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            path = self.path.rstrip("/")
            if not self.authorised():
                return
            if path == "/v1/files":
                fields = _multipart_fields(self.headers["Content-Type"], raw)
                filename, data = fields["file"]
                purpose = fields["purpose"][1].decode()
                self.send_json(200, server.add_file(data, purpose, filename or "upload"))
                return
            if path == "/v1/batches":
                self.send_json(200, server.create_batch(json.loads(raw)))
                return
            if path != "/v1/chat/completions":
                self.send_json(404, {"error": {"message": f"no route {self.path}"}})
                return
            request = json.loads(raw)
            prompt = request["messages"][-1]["content"]
            fault = server._next_fault(prompt)
            # The client may have given up (its timeout) before we answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._answer(request, prompt, fault)

        def _answer(self, request: dict[str, Any], prompt: str, fault: str | None) -> None:
            kind, _, arg = (fault or "").partition(":")
            k = int(request.get("top_logprobs") or 0) if request.get("logprobs") else 0
            if kind == "429":
                headers = {"Retry-After": arg} if arg else {}
                self.send_json(429, {"error": {"message": "rate limited"}}, headers)
            elif kind in ("500", "503", "400"):
                self.send_json(int(kind), {"error": {"message": f"injected {kind}"}})
            elif kind == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
            elif kind == "malformed":
                self.send_raw(200, b'{"choices": [ {"index": 0, "logpr')
            elif kind == "no_logprobs":
                self.send_json(200, completion_body(prompt, request["model"], k, logprobs=False))
            elif kind == "empty_top":
                self.send_json(200, completion_body(prompt, request["model"], 0))
            elif server.upstream is not None:
                if kind == "timeout":  # hold the client past its timeout, forward nothing
                    time.sleep(server.timeout_sleep_s)
                    self.send_json(504, {"error": {"message": "injected timeout"}})
                    return
                status, data = server.forward(request, prompt)
                self.send_raw(status, data)
                if status == 200:
                    server._record_served(prompt)
            else:
                time.sleep(server.timeout_sleep_s if kind == "timeout" else server.answer_delay_s)
                self.send_json(200, completion_body(prompt, request["model"], k))
                if kind != "timeout":  # the client has given up on a timed-out answer
                    server._record_served(prompt)

    return Handler


# Entry points for child processes (spawned, so they must live in an importable module).


def write_cache_entries(cache_path: str, writer: int, keys: list[str], start: Any) -> None:
    """Store one answer per key, each in its own transaction, after ``start`` releases."""
    from value_drifts.backends.cache import JudgeCache

    cache = JudgeCache(cache_path)
    start.wait()
    for key in keys:
        cache.put(key, {"top_logprobs": {"support": -0.1}, "writer": writer, "key": key})
    cache.close()


def judge_until_killed(base_url: str, cache_path: str, prompts: list[str]) -> None:
    """Judge ``prompts`` one at a time; the parent kills this process part-way through."""
    from value_drifts.backends.cache import JudgeCache
    from value_drifts.judge.openai_backend import OpenAIJudge, OpenAIJudgeSettings

    settings = OpenAIJudgeSettings(
        model="fake-judge", base_url=base_url, require_api_key=False, concurrency=2
    )
    for _ in OpenAIJudge(settings, JudgeCache(cache_path)).batches(prompts):
        pass
