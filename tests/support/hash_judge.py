"""Judges on a local OpenAI-protocol server for workflow tests: the chat-completion body
with first-token log-probabilities they answer with, the config's ``judge:`` mapping for
such a server, and a hash judge whose stance log-probabilities are a fixed function of the
prompt (the same answer always reads the same, different answers differently)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

from tests.support.loopback_http import JSONHandler, LoopbackServer


def logprobs_body(model: str, top: Sequence[tuple[str, float]],
                  prompt_tokens: int = 50) -> dict[str, Any]:
    """A /v1/chat/completions answer whose one token is ``top[0]``, with ``top`` as its
    top_logprobs (OpenAI's chat completion object, the fields the judge reads)."""
    token, logprob = top[0]
    return {
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": token},
                     "logprobs": {"content": [{
                         "token": token, "logprob": logprob,
                         "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top],
                     }]}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1},
    }


def judge_config(server: LoopbackServer, model: str) -> dict[str, Any]:
    """The config's ``judge:`` mapping for a judge on ``server``."""
    return {
        "backend": "openai", "model": model, "base_url": server.base_url,
        "require_api_key": False, "prompt": "config/prompts/judge_response.txt",
        "top_logprobs": 5, "cache": "results/judge_cache.sqlite", "concurrency": 4,
        "backoff_initial_s": 0.01, "backoff_max_s": 0.05,
    }


class HashJudgeServer(LoopbackServer):
    def __init__(self):
        class Handler(JSONHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                digest = hashlib.sha256(request["messages"][-1]["content"].encode()).digest()
                weights = [1 + digest[i] for i in range(3)]
                total = sum(weights)
                top = sorted(((label, math.log(w / total)) for label, w in
                              zip(("support", "neutral", "oppose"), weights, strict=True)),
                             key=lambda item: -item[1])
                self.send_json(200, logprobs_body("hash-judge", top))

        super().__init__(Handler)


def hash_judge(server: HashJudgeServer) -> dict[str, Any]:
    """The config's ``judge:`` mapping for ``server``."""
    return judge_config(server, "hash-judge")
