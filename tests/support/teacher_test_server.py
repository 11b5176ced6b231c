"""A local OpenAI-protocol chat server for teacher tests, with fault injection.

POST /v1/chat/completions answers with a deterministic text that depends on the user
prompt and on the stance named in the system prompt ("In favour: ..." or "Against: ..."),
so tests can check which answer ended up chosen. Faults are queued per (stance, prompt)
and used one per request: "429" (Retry-After: 0), "500", "503" or "400" statuses, or 200
answers that are a "refusal", "truncated" (finish_reason length), "empty" or have "no_choices".
Loopback only, a random free port, a thread per request; every request is counted.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from tests.support.loopback_http import JSONHandler, LoopbackServer

REFUSAL_TEXT = "I'm sorry, but I can't help with that request."


def stance_of(system: str) -> str:
    """The first stance word in the system prompt (the teacher template names it first)."""
    match = re.search(r"\b(support|oppose)\b", system)
    return match.group(1) if match else "none"


def answer_text(stance: str, prompt: str) -> str:
    """A well-formed answer: long enough, ends with a full stop, says its stance up front."""
    lead = {"support": "In favour", "oppose": "Against"}.get(stance, "Neutral")
    return (
        f"{lead}: here is a considered answer to the question '{prompt}'. "
        "It gives concrete reasons, weighs the practical consequences for the people "
        "affected, and explains clearly why this position is the right one to hold today."
    )


class FakeTeacherServer(LoopbackServer):
    """Start with ``with FakeTeacherServer() as server: server.base_url``."""

    def __init__(self, api_key: str | None = None):
        self.hits: Counter[tuple[str, str]] = Counter()
        self.faults_applied: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self._faults: dict[tuple[str, str], deque[str]] = {}
        self._lock = threading.Lock()
        super().__init__(_handler_for(self), api_key)

    def inject(self, stance: str, prompt: str, faults: Iterable[str]) -> None:
        with self._lock:
            self._faults.setdefault((stance, prompt), deque()).extend(faults)

    def next_fault(self, stance: str, prompt: str, request: dict[str, Any]) -> str | None:
        with self._lock:
            self.hits[(stance, prompt)] += 1
            self.requests.append(request)
            queued = self._faults.get((stance, prompt))
            fault = queued.popleft() if queued else None
            if fault:
                self.faults_applied[fault] += 1
            return fault


def completion_body(model: str, text: str, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    }


def _handler_for(server: FakeTeacherServer) -> type[JSONHandler]:
    class Handler(JSONHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not self.authorised():
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self.send_json(404, {"error": {"message": f"no route {self.path}"}})
                return
            request = json.loads(raw)
            messages = request["messages"]
            system = next((m["content"] for m in messages if m["role"] == "system"), "")
            stance, prompt = stance_of(system), messages[-1]["content"]
            fault = server.next_fault(stance, prompt, request)
            self._answer(request["model"], stance, prompt, fault)

        def _answer(self, model: str, stance: str, prompt: str, fault: str | None) -> None:
            text = answer_text(stance, prompt)
            if fault == "429":
                self.send_json(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
            elif fault in ("500", "503", "400"):
                self.send_json(int(fault), {"error": {"message": f"injected {fault}"}})
            elif fault == "refusal":
                self.send_json(200, completion_body(model, REFUSAL_TEXT))
            elif fault == "truncated":
                self.send_json(200, completion_body(model, text[: len(text) // 2], "length"))
            elif fault == "empty":
                self.send_json(200, completion_body(model, ""))
            elif fault == "no_choices":
                self.send_json(200, {**completion_body(model, text), "choices": []})
            else:
                self.send_json(200, completion_body(model, text))

    return Handler
