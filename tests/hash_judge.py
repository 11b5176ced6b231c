"""A judge on a local OpenAI-protocol server whose stance log-probabilities are a fixed
function of the prompt: the same answer always reads the same, different answers
differently. For workflow tests that need a fast, deterministic, real-protocol judge."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from tests.loopback_http import JSONHandler, LoopbackServer


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
                body = {
                    "model": "hash-judge",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": top[0][0]},
                                 "logprobs": {"content": [{
                                     "token": top[0][0], "logprob": top[0][1],
                                     "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top],
                                 }]}, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 1},
                }
                self.send_json(200, body)

        super().__init__(Handler)


def hash_judge(server: HashJudgeServer) -> dict[str, Any]:
    """The config's ``judge:`` mapping for ``server``."""
    return {
        "backend": "openai", "model": "hash-judge", "base_url": server.base_url,
        "require_api_key": False, "prompt": "config/prompts/judge_response.txt",
        "top_logprobs": 5, "cache": "results/judge_cache.sqlite", "concurrency": 4,
        "backoff_initial_s": 0.01, "backoff_max_s": 0.05,
    }
