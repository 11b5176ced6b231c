"""A local OpenAI-protocol server for judge tests, with fault injection.

It speaks enough of POST /v1/chat/completions for the judge client, and of /v1/files and
/v1/batches for the Batch API client (a batch finishes after a set number of polls, and
its lines meet the same per-prompt faults as synchronous requests). The answer's top
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

from tests.loopback_http import JSONHandler, LoopbackServer

LABEL_TOKENS = ("support", " Support", "neutral", " Neutral", "oppose", " Opp")
FILLER_TOKENS = (
    "The", "I", "This", "Sorry", "It", "As", "A", "In", "My", "Yes", "No", "Based", "Well",
    "Unfortunately", "To", "There", "We", "That",
)
FAULT_KINDS = (
    "429", "500", "503", "timeout", "drop", "malformed", "no_logprobs", "empty_top", "400",
)


def fake_top_logprobs(prompt: str, k: int = 20) -> list[dict[str, Any]]:
    """The answer's top-k list: label tokens scored from a hash of the prompt, fillers below."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    tokens = LABEL_TOKENS + FILLER_TOKENS
    scores = [digest[i] / 40.0 for i in range(len(LABEL_TOKENS))]
    scores += [digest[len(LABEL_TOKENS) + i] / 80.0 - 3.0 for i in range(len(FILLER_TOKENS))]
    top = max(scores)
    log_norm = top + math.log(sum(math.exp(s - top) for s in scores))
    ranked = sorted(zip(tokens, scores, strict=True), key=lambda ts: -ts[1])[:k]
    return [
        {"token": token, "logprob": score - log_norm, "bytes": list(token.encode("utf-8"))}
        for token, score in ranked
    ]


def expected_top(prompt: str, k: int = 20) -> dict[str, float]:
    """What a correct client should return for ``prompt``."""
    return {entry["token"]: entry["logprob"] for entry in fake_top_logprobs(prompt, k)}


def completion_body(prompt: str, model: str, k: int, logprobs: bool = True) -> dict[str, Any]:
    top = fake_top_logprobs(prompt, k) if k else fake_top_logprobs(prompt, 1)
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
            "prompt_tokens": max(1, len(prompt) // 4),
            "completion_tokens": 1,
            "total_tokens": max(1, len(prompt) // 4) + 1,
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
        self._lock = threading.Lock()
        # Batch API state: uploaded files, batches, and how batches end.
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls_to_finish = 1
        # How the next batches end ("completed", "expired", "failed"); then "completed".
        self.batch_outcomes: deque[str] = deque()
        self.batch_lines_before_expiry = 0
        self.batch_requests_seen: Counter[str] = Counter()
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
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": request["endpoint"],
                "input_file_id": request["input_file_id"], "completion_window": "24h",
                "status": "validating", "created_at": 0, "output_file_id": None,
                "error_file_id": None, "errors": None, "metadata": request.get("metadata"),
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "_polls": 0,
            }
            return _public(self.batches[batch_id])

    def poll_batch(self, batch_id: str) -> dict[str, Any]:
        """Each retrieval is one poll; the batch ends on the configured poll."""
        batch = self.batches[batch_id]
        batch["_polls"] += 1
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
        if batch["status"] == "in_progress" and batch["_polls"] >= self.batch_polls_to_finish:
            self._finish_batch(batch)
        return _public(batch)

    def _finish_batch(self, batch: dict[str, Any]) -> None:
        lines = self.files[batch["input_file_id"]]["data"].decode("utf-8").splitlines()
        outcome = self.batch_outcomes.popleft() if self.batch_outcomes else "completed"
        if outcome == "failed":
            batch.update(status="failed", errors={"data": [{"message": "invalid input"}]})
            return
        if outcome == "expired":
            lines = lines[: self.batch_lines_before_expiry]
        outputs, errors = [], []
        for number, text in enumerate(lines):
            line = json.loads(text)
            prompt = line["body"]["messages"][-1]["content"]
            self.batch_requests_seen[prompt] += 1
            status, body = self._batch_answer(line["body"], prompt)
            result = {
                "id": f"batch_req_{number}", "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": f"req_{number}", "body": body},
                "error": None,
            }
            (outputs if status == 200 else errors).append(json.dumps(result))
        for name, kept in (("output_file_id", outputs), ("error_file_id", errors)):
            if kept:
                data = ("\n".join(kept) + "\n").encode("utf-8")
                batch[name] = self.add_file(data, "batch_output", f"{name}.jsonl")["id"]
        batch["request_counts"] = {
            "total": len(lines), "completed": len(outputs), "failed": len(errors),
        }
        batch["status"] = outcome

    def _batch_answer(self, body: dict[str, Any], prompt: str) -> tuple[int, dict[str, Any]]:
        kind = (self._next_fault(prompt) or "").partition(":")[0]
        if kind in ("429", "500", "503", "400"):
            return int(kind), {"error": {"message": f"injected {kind}"}}
        k = int(body.get("top_logprobs") or 0)
        if kind == "no_logprobs":
            return 200, completion_body(prompt, body["model"], k, logprobs=False)
        self._record_served(prompt)
        return 200, completion_body(prompt, body["model"], k)


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
    from value_drifts.judge.cache import JudgeCache

    cache = JudgeCache(cache_path)
    start.wait()
    for key in keys:
        cache.put(key, {"top_logprobs": {"support": -0.1}, "writer": writer, "key": key})
    cache.close()


def judge_until_killed(base_url: str, cache_path: str, prompts: list[str]) -> None:
    """Judge ``prompts`` one at a time; the parent kills this process part-way through."""
    from value_drifts.judge.cache import JudgeCache
    from value_drifts.judge.openai_backend import OpenAIJudge, OpenAIJudgeSettings

    settings = OpenAIJudgeSettings(
        model="fake-judge", base_url=base_url, require_api_key=False, concurrency=2
    )
    for _ in OpenAIJudge(settings, JudgeCache(cache_path)).batches(prompts):
        pass
