"""The OpenAI-compatible judge over real HTTP on loopback: cache, faults, resume, secrecy."""

from __future__ import annotations

import json
import logging
import multiprocessing
import pickle
import random
import sqlite3
import time
import traceback
from collections import Counter

import polars as pl
import pytest

from tests.support.judge_test_server import (
    FakeOpenAIServer,
    expected_top,
    judge_until_killed,
    write_cache_entries,
)
from value_drifts.backends.cache import JudgeCache, request_key
from value_drifts.backends.openai_client import (
    DUMMY_API_KEY,
    ChatConfigError,
    ServerAuthError,
    parse_retry_after,
    resolve_api_key,
    retry_delay_s,
)
from value_drifts.judge.cost import CHAT_OVERHEAD_TOKENS, JudgePrices, cost_plan
from value_drifts.judge.openai_backend import (
    IncompleteJudgmentsError,
    JudgeConfigError,
    OpenAIJudge,
    OpenAIJudgeSettings,
    distinct_missing,
    judge_request_key,
    ready_prefix_end,
    top_logprobs_from_body,
    uncached_requests,
)
from value_drifts.judge.run import judge_generations
from value_drifts.judge.stance import read_stance

PROMPTS = [
    f"Question {i}: should cities ban cars? Response: answer number {i}. Topic: t{i % 3}"
    for i in range(24)
]
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def server():
    with FakeOpenAIServer(timeout_sleep_s=1.5) as fake:
        yield fake


@pytest.fixture
def cache(tmp_path):
    judge_cache = JudgeCache(tmp_path / "judge-cache.sqlite")
    yield judge_cache
    judge_cache.close()


def make_judge(server: FakeOpenAIServer, cache: JudgeCache, **overrides) -> OpenAIJudge:
    settings = {
        "model": "fake-judge",
        "base_url": server.base_url,
        "require_api_key": False,
        "concurrency": 4,
        "request_timeout_s": 10.0,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        **overrides,
    }
    return OpenAIJudge(OpenAIJudgeSettings(**settings), cache, rng=random.Random(0))


def judge_all(judge: OpenAIJudge, prompts: list[str]) -> list[dict[str, float]]:
    return [top for _, batch in judge.batches(prompts) for top in batch]


def probabilities(tops: list[dict[str, float]]) -> list[tuple[float, float, float]]:
    return [read_stance(top).probabilities for top in tops]


# --- real round trip -------------------------------------------------------------------


def test_round_trip_returns_the_servers_top_logprobs_in_prompt_order(server, cache):
    judge = make_judge(server, cache)
    progress = []
    tops = []
    for done, batch in judge.batches(PROMPTS):
        assert done == len(batch)
        progress.append(done)
        tops.extend(batch)
    assert sum(progress) == len(PROMPTS)
    assert tops == [expected_top(p) for p in PROMPTS]
    assert probabilities(tops) == [read_stance(expected_top(p)).probabilities for p in PROMPTS]
    assert all(read_stance(top).missing_labels == () for top in tops)
    assert server.hits == Counter({p: 1 for p in PROMPTS})
    counts = judge.last_run_counts.as_dict()
    assert counts["requests_sent"] == counts["answered"] == len(PROMPTS)
    assert counts["cache_hits"] == counts["failures"] == counts["retries"] == 0
    assert counts["prompt_tokens"] > 0 and counts["completion_tokens"] == len(PROMPTS)


def test_judge_generations_runs_on_the_openai_backend(server, cache):
    generations = pl.DataFrame({
        "question_id": ["q1", "q1", "q2"],
        "category": ["cars", "cars", "food"],
        "sample": [0, 1, 0],
        "question": ["Ban cars?", "Ban cars?", "Eat meat?"],
        "response": ["Yes {surely}.", "No.", "Maybe."],
    })
    topics = {"cars": "car bans", "food": "meat"}
    template = "Q: {question}\nA: {response}\nTopic: {topic}\nStance:"
    judgments, counts = judge_generations(generations, topics, template, make_judge(server, cache))
    prompt = template.format_map({"question": "Ban cars?", "response": "Yes {surely}.",
                                  "topic": "car bans"})
    assert judgments["p_support"][0] == read_stance(expected_top(prompt)).probabilities[0]
    assert counts["judged"] == 3


def test_a_prompt_repeated_within_a_run_is_sent_once(server, cache):
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[0]]
    judge = make_judge(server, cache)
    assert judge_all(judge, prompts) == [expected_top(p) for p in prompts]
    assert server.hits == Counter({PROMPTS[0]: 1, PROMPTS[1]: 1})


def test_no_prompts_yield_nothing(server, cache):
    assert list(make_judge(server, cache).batches([])) == []


# --- faults ---------------------------------------------------------------------------

FAULT_PLAN = {
    0: ["429"],
    1: ["500", "503"],
    2: ["timeout"],
    3: ["malformed"],
    4: ["no_logprobs"],
    5: ["empty_top"],
    6: ["drop"],
    9: ["429", "malformed", "500"],
}
EXPECTED_RETRIES = {
    "rate_limited": 2, "server_error": 3, "timeout": 1, "malformed_body": 2,
    "missing_logprobs": 2, "connection": 1,
}


def test_faults_lose_no_judgment_pay_nothing_twice_and_match_a_fault_free_run(
    server, cache, tmp_path
):
    for index, faults in FAULT_PLAN.items():
        server.inject(PROMPTS[index], faults)
    judge = make_judge(server, cache, request_timeout_s=1.0)
    faulty = judge_all(judge, PROMPTS)

    injected = {PROMPTS[i]: len(f) for i, f in FAULT_PLAN.items()}
    assert server.hits == Counter({p: 1 + injected.get(p, 0) for p in PROMPTS})
    assert server.served == Counter({p: 1 for p in PROMPTS})  # each answer delivered once
    counts = judge.last_run_counts.as_dict()
    assert counts["failures"] == 0
    assert {k.removeprefix("retries_"): v for k, v in counts.items()
            if k.startswith("retries_")} == EXPECTED_RETRIES
    assert counts["requests_sent"] == sum(server.hits.values())

    server.reset_counts()
    clean = judge_all(make_judge(server, JudgeCache(tmp_path / "clean.sqlite")), PROMPTS)
    assert faulty == clean
    assert probabilities(faulty) == probabilities(clean)


def test_retry_after_is_honoured(server, cache):
    server.inject(PROMPTS[0], ["429:1"])
    judge_all(make_judge(server, cache), PROMPTS[:1])
    first, second = server.hit_times[PROMPTS[0]]
    assert second - first >= 1.0  # backoff alone would have waited about 0.01 s


def test_bad_answers_are_retried_a_bounded_number_of_times_then_reported(server, cache):
    prompts = PROMPTS[:6]
    server.inject(prompts[2], ["no_logprobs"] * 5)
    judge = make_judge(server, cache, max_bad_answer_attempts=3, concurrency=2)
    received = []
    failed = "1 of 6 distinct judge requests failed"
    with pytest.raises(IncompleteJudgmentsError, match=failed) as info:
        for _, batch in judge.batches(prompts):
            received.extend(batch)
    assert received == [expected_top(p) for p in prompts[:2]]  # in order, up to the failure
    assert info.value.counts["failures_missing_logprobs"] == 1
    assert info.value.counts["retries_missing_logprobs"] == 2
    assert server.hits[prompts[2]] == 3
    assert len(cache) == 5  # every other answer is stored

    server.reset_counts()  # the prompt still has 2 faults queued; 3 attempts get through
    assert judge_all(judge, prompts) == [expected_top(p) for p in prompts]
    assert server.hits == Counter({prompts[2]: 3})


@pytest.mark.parametrize(
    ("faults", "reason", "hits"),
    [(["500"] * 3, "server_error", 2), (["400"], "http_400", 1)],
)
def test_transient_faults_stop_at_max_attempts_and_client_errors_at_once(
    server, cache, faults, reason, hits
):
    server.inject(PROMPTS[0], faults)
    judge = make_judge(server, cache, max_attempts=2)
    with pytest.raises(IncompleteJudgmentsError) as info:
        judge_all(judge, PROMPTS[:3])
    assert info.value.counts[f"failures_{reason}"] == 1
    assert server.hits[PROMPTS[0]] == hits
    assert len(cache) == 2


# --- cache and resume -----------------------------------------------------------------


def test_an_interrupted_run_resumes_with_only_the_remaining_prompts(server, cache):
    server.answer_delay_s = 0.05
    prompts = PROMPTS[:12]
    judge = make_judge(server, cache, concurrency=2)
    run = judge.batches(prompts)
    _, first_batch = next(run)
    run.close()  # what a KeyboardInterrupt in the consuming loop does
    assert first_batch == [expected_top(p) for p in prompts[: len(first_batch)]]

    stored = cache.get_many(judge.key_for(p) for p in prompts)
    done = {p for p in prompts if judge.key_for(p) in stored}
    assert 1 <= len(done) < len(prompts)
    server.reset_counts()
    assert judge_all(judge, prompts) == [expected_top(p) for p in prompts]
    assert server.hits == Counter({p: 1 for p in prompts if p not in done})
    assert judge.last_run_counts.cache_hits == len(done)


def test_a_killed_process_keeps_its_finished_answers(server, cache):
    server.answer_delay_s = 0.1
    prompts = PROMPTS[:20]
    child = SPAWN.Process(
        target=judge_until_killed, args=(server.base_url, str(cache.path), prompts)
    )
    child.start()
    deadline = time.monotonic() + 30
    while sum(server.served.values()) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    child.kill()
    child.join()
    assert cache.integrity_ok()
    judge = make_judge(server, cache)
    stored = cache.get_many(judge.key_for(p) for p in prompts)
    assert 1 <= len(stored) < len(prompts)
    server.reset_counts()
    assert judge_all(judge, prompts) == [expected_top(p) for p in prompts]
    assert sum(server.hits.values()) == len(prompts) - len(stored)


def test_editing_prompts_requeries_only_the_changed_ones(server, cache):
    judge = make_judge(server, cache)
    judge_all(judge, PROMPTS)
    edited = list(PROMPTS)
    for index in (3, 7, 11):
        edited[index] = PROMPTS[index] + " (reworded)"
    server.reset_counts()
    assert judge_all(judge, edited) == [expected_top(p) for p in edited]
    assert server.hits == Counter({edited[i]: 1 for i in (3, 7, 11)})


def test_other_decoding_parameters_or_model_are_other_requests(server, cache):
    judge_all(make_judge(server, cache), PROMPTS[:3])
    server.reset_counts()
    judge_all(make_judge(server, cache, top_logprobs=5), PROMPTS[:3])
    judge_all(make_judge(server, cache, model="other-judge"), PROMPTS[:3])
    assert server.hits == Counter({p: 2 for p in PROMPTS[:3]})


def test_concurrent_processes_write_one_cache_without_corrupting_it(cache):
    shared = [f"shared-{i}" for i in range(100)]
    keys_a = [f"a-{i}" for i in range(200)] + shared
    keys_b = shared + [f"b-{i}" for i in range(200)]
    start = SPAWN.Barrier(2)
    writers = [
        SPAWN.Process(target=write_cache_entries, args=(str(cache.path), n, keys, start))
        for n, keys in ((0, keys_a), (1, keys_b))
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert [w.exitcode for w in writers] == [0, 0]
    assert cache.integrity_ok()
    assert len(cache) == 500
    stored = cache.get_many(keys_a + keys_b)
    assert all(value["key"] == key for key, value in stored.items())
    assert {stored[k]["writer"] for k in keys_a[:200]} == {0}
    assert {stored[k]["writer"] for k in keys_b[100:]} == {1}
    # the rollback journal, safe on network filesystems: no WAL or shared-memory files
    mode = sqlite3.connect(cache.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "delete"
    assert not list(cache.path.parent.glob(cache.path.name + "-*"))


def test_a_cache_written_in_wal_mode_is_converted_to_the_rollback_journal(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                "stored_at REAL NOT NULL)")
    old.execute("INSERT INTO answers VALUES ('k', '{\"top_logprobs\": {}}', 0)")
    old.commit()
    old.close()
    cache = JudgeCache(path)
    assert cache.get("k") == {"top_logprobs": {}}
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    cache.close()


def test_cache_persists_keeps_the_first_answer_and_reads_many_keys(tmp_path):
    path = tmp_path / "sub" / "cache.sqlite"
    with JudgeCache(path) as first:
        first.put("k", {"top_logprobs": {"support": -1.0}})
        first.put("k", {"top_logprobs": {"oppose": -1.0}})
        first.put_many((f"bulk-{i}", {"i": i}) for i in range(2000))
    reopened = pickle.loads(pickle.dumps(JudgeCache(path)))
    assert reopened.get("k") == {"top_logprobs": {"support": -1.0}}
    assert reopened.get("absent") is None
    found = reopened.get_many([f"bulk-{i}" for i in range(2000)] + ["absent"])
    assert len(found) == 2000 and found["bulk-1999"] == {"i": 1999}
    assert "k" in reopened and len(reopened) == 2001


def test_request_key_is_canonical_and_sensitive_to_what_determines_the_answer():
    params = {"temperature": 0.0, "top_logprobs": 20, "max_tokens": 1}
    key = request_key("p", "m", params)
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == request_key("p", "m", dict(reversed(list(params.items()))))
    assert len({
        key,
        request_key("p2", "m", params),
        request_key("p", "m2", params),
        request_key("p", "m", {**params, "top_logprobs": 5}),
        request_key("p", "m", params, backend="vllm"),
    }) == 5


def test_uncached_requests_and_cost_plan(server, cache):
    settings = OpenAIJudgeSettings(model="fake-judge", base_url=server.base_url)
    judge_all(make_judge(server, cache), PROMPTS[:2])
    prompts = PROMPTS[:5] + PROMPTS[:1]
    to_send = list(uncached_requests(prompts, settings, cache).values())
    assert to_send == PROMPTS[2:5]
    plan = cost_plan(prompts, to_send, JudgePrices(2.5, 10.0))
    expected_input = sum(round(len(p) / 4) + CHAT_OVERHEAD_TOKENS for p in to_send)
    assert plan.as_dict() == {
        "calls": 6, "distinct_requests": 5, "cached": 2, "to_send": 3,
        "input_tokens": expected_input, "output_tokens": 3,
        "sync_cost_usd": pytest.approx((expected_input * 2.5 + 3 * 10.0) / 1e6),
        "batch_cost_usd": pytest.approx((expected_input * 2.5 + 3 * 10.0) / 2e6),
    }


# --- the API key ----------------------------------------------------------------------

SECRET = "sk-test-DO-NOT-LEAK-7f3a9c1e5b2d"


def test_the_api_key_never_appears_in_logs_exceptions_or_outputs(
    tmp_path, caplog, capsys, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx2", "httpcore2", "value_drifts"):
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.setenv("VD_TEST_JUDGE_KEY", SECRET)
    cache = JudgeCache(tmp_path / "cache.sqlite")
    with FakeOpenAIServer(api_key=SECRET) as accepting:
        accepting.inject(PROMPTS[0], ["500", "429"])
        judge = make_judge(accepting, cache, api_key_env="VD_TEST_JUDGE_KEY",
                           require_api_key=True)
        assert judge_all(judge, PROMPTS[:3]) == [expected_top(p) for p in PROMPTS[:3]]
    # This server wants another key and echoes the one it got in its error message.
    with FakeOpenAIServer(api_key="sk-the-one-it-wants") as refusing:
        judge = make_judge(refusing, cache, api_key_env="VD_TEST_JUDGE_KEY",
                           require_api_key=True)
        with pytest.raises(ServerAuthError) as info:
            judge_all(judge, PROMPTS[3:6])
    assert "[redacted]" in str(info.value) and "VD_TEST_JUDGE_KEY" in str(info.value)
    captured = capsys.readouterr()
    texts = [
        caplog.text,
        captured.out,
        captured.err,
        str(info.value),
        repr(info.value),
        "".join(traceback.format_exception(info.value)),
        repr(judge),
        repr(judge.settings),
        repr(vars(judge)),
        json.dumps(judge.last_run_counts.as_dict()),
        *(p.read_bytes().decode("latin-1") for p in tmp_path.iterdir()),
    ]
    assert "HTTP Request" in caplog.text  # the client's debug logging really was captured
    for text in texts:
        assert SECRET not in text
    with pytest.raises(TypeError):
        pickle.dumps(judge)


def test_the_key_comes_only_from_the_named_environment_variable():
    with pytest.raises(ChatConfigError, match="MY_JUDGE_KEY") as info:
        resolve_api_key("MY_JUDGE_KEY", required=True, environ={"OPENAI_API_KEY": SECRET})
    assert SECRET not in str(info.value)
    assert resolve_api_key("MY_JUDGE_KEY", required=False, environ={}).reveal() == DUMMY_API_KEY
    found = resolve_api_key("MY_JUDGE_KEY", environ={"MY_JUDGE_KEY": f" {SECRET}\n"})
    assert found.reveal() == SECRET and SECRET not in repr(found) + str(found)


# --- small pure functions -------------------------------------------------------------


def test_parse_retry_after_reads_seconds_milliseconds_and_dates():
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert parse_retry_after({"Retry-After": date}, now=1445412480.0) == 10.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_retry_delay_grows_exponentially_with_jitter_and_respects_retry_after():
    rng = random.Random(1)
    for retry in range(6):
        ceiling = min(8.0, 0.5 * 2**retry)
        assert ceiling / 2 <= retry_delay_s(retry, 0.5, 8.0, rng=rng) <= ceiling
    assert 3.0 <= retry_delay_s(0, 0.5, 8.0, retry_after_s=3.0, rng=rng) <= 3.5
    assert retry_delay_s(0, 0.5, 8.0, retry_after_s=1e6, max_retry_after_s=10, rng=rng) <= 10.5


def test_top_logprobs_from_body_merges_same_text_tokens_and_rejects_missing_lists():
    body = {"choices": [{"logprobs": {"content": [{"token": "a", "top_logprobs": [
        {"token": "a", "logprob": -1.0}, {"token": "a", "logprob": -1.0},
        {"token": "b", "logprob": -2.0}]}]}}], "usage": {"prompt_tokens": 5}}
    top, meta = top_logprobs_from_body(body)
    assert top["a"] == pytest.approx(-1.0 + 0.6931471805599453) and top["b"] == -2.0
    assert meta["prompt_tokens"] == 5 and meta["answer_token"] == "a"
    for broken in ({}, {"choices": []}, {"choices": [{"logprobs": None}]},
                   {"choices": [{"logprobs": {"content": [{"top_logprobs": []}]}}]},
                   {"choices": [{"logprobs": {"content": [{"top_logprobs": [{"t": 1}]}]}}]}):
        with pytest.raises(Exception, match=r"missing_logprobs|malformed_body"):
            top_logprobs_from_body(broken)


def test_prefix_and_missing_helpers():
    keys = ["a", "b", "a", "c"]
    assert distinct_missing(keys, ["pa", "pb", "pa", "pc"], {"b": 1}) == {"a": "pa", "c": "pc"}
    assert ready_prefix_end(keys, {"a": 1, "b": 1}, 0) == 3
    assert ready_prefix_end(keys, {"a": 1, "b": 1}, 3) == 3


def test_settings_validate_and_ignore_other_backends_keys():
    settings = OpenAIJudgeSettings.from_config(
        {"backend": "openai", "model": "gpt-4o", "batch_size": 16, "concurrency": 32}
    )
    assert settings.model == "gpt-4o" and settings.concurrency == 32
    with pytest.raises(JudgeConfigError):
        OpenAIJudgeSettings(model="m", top_logprobs=21)


def test_another_server_under_the_same_model_name_is_asked_again(server, cache):
    """Two OpenAI-protocol servers serving a model named alike: pointing the judge at the
    second sends every request there, never the first server's cached answers."""
    judge_all(make_judge(server, cache), PROMPTS[:4])
    with FakeOpenAIServer() as second:
        second.reset_counts()
        judge_all(make_judge(second, cache), PROMPTS[:4])
        assert second.hits == Counter({p: 1 for p in PROMPTS[:4]})
    server.reset_counts()
    judge_all(make_judge(server, cache), PROMPTS[:4])  # the first server's answers stay
    assert server.hits == Counter()


def test_the_default_endpoint_keeps_the_keys_stored_before_endpoints_were_keyed():
    settings = OpenAIJudgeSettings(model="gpt-4o")
    assert settings.base_url is None
    # request_key's payload as it was: version, backend, model, params, prompt
    assert request_key("Question: x", "gpt-4o", {"temperature": 0, "top_logprobs": 5},
                       "openai") == "7261ca9b331eaa09aed22da3cfbf2f3bc0f286b8fbe312db565536193e8f8be1"
    assert judge_request_key("p", settings) == request_key(
        "p", "gpt-4o", settings.decoding_params(), "openai_chat")
    local = OpenAIJudgeSettings(model="gpt-4o", base_url="http://127.0.0.1:8000/v1/")
    assert judge_request_key("p", local) != judge_request_key("p", settings)
    assert judge_request_key("p", local) == judge_request_key(
        "p", OpenAIJudgeSettings(model="gpt-4o", base_url="http://127.0.0.1:8000/v1"))
