"""The Batch API judge against the local server: round trip, crash resume, bounded rounds,
errors named with their code and message, the enqueued-token budget, JSONL records."""

from __future__ import annotations

import json
import logging
import random
from collections import Counter

import openai
import pytest

from tests.support.judge_test_server import FakeOpenAIServer, expected_top, fake_prompt_tokens
from value_drifts.backends.cache import JudgeCache
from value_drifts.backends.openai_client import ServerAuthError
from value_drifts.core.config import ConfigError, validate_config
from value_drifts.judge.backends import make_backend
from value_drifts.judge.batch_api import (
    BatchStillRunningError,
    OpenAIBatchJudge,
    batch_request_line,
    chunked,
    enqueued_tokens,
    jsonl_lines,
    load_state,
    requests_jsonl,
    save_state,
)
from value_drifts.judge.cost import estimate_tokens
from value_drifts.judge.openai_backend import (
    IncompleteJudgmentsError,
    JudgeConfigError,
    OpenAIJudge,
    OpenAIJudgeSettings,
)

PROMPTS = [f"Batch question {i}: is tea better than coffee? Response: {i}." for i in range(10)]


class Crash(BaseException):
    """Stands in for the job being killed while it waits on a batch."""


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def cache(tmp_path):
    judge_cache = JudgeCache(tmp_path / "judge-cache.sqlite")
    yield judge_cache
    judge_cache.close()


def settings_for(server: FakeOpenAIServer, **overrides) -> OpenAIJudgeSettings:
    options = {"model": "fake-judge", "base_url": server.base_url, "require_api_key": False}
    return OpenAIJudgeSettings(**{**options, **overrides})


def batch_judge(server, cache, tmp_path, sleep=lambda s: None, **options) -> OpenAIBatchJudge:
    return OpenAIBatchJudge(
        settings_for(server), cache, tmp_path / "batch-state.json", poll_interval_s=0.0,
        sleep=sleep, **options,
    )


def judge_all(judge, prompts):
    return [top for _, batch in judge.batches(prompts) for top in batch]


def test_batch_round_trip_fills_the_cache_the_sync_client_reads(server, cache, tmp_path):
    server.batch_polls_to_finish = 3
    judge = batch_judge(server, cache, tmp_path)
    assert judge_all(judge, PROMPTS) == [expected_top(p) for p in PROMPTS]
    assert len(server.batches) == 1
    assert server.batch_requests_seen == Counter({p: 1 for p in PROMPTS})
    assert not (tmp_path / "batch-state.json").exists()
    counts = judge.last_run_counts.as_dict()
    assert counts["batches_created"] == 1 and counts["answered"] == len(PROMPTS)

    sync = OpenAIJudge(settings_for(server), cache, rng=random.Random(0))
    assert [t for _, b in sync.batches(PROMPTS) for t in b] == [expected_top(p) for p in PROMPTS]
    assert sum(server.hits.values()) == len(PROMPTS)  # the batch's requests only


def test_a_crashed_job_collects_its_saved_batch_instead_of_paying_again(
    server, cache, tmp_path
):
    server.batch_polls_to_finish = 4

    def crash(_seconds):
        raise Crash

    with pytest.raises(Crash):
        judge_all(batch_judge(server, cache, tmp_path, sleep=crash), PROMPTS)
    saved = load_state(tmp_path / "batch-state.json")
    assert [b["batch_id"] for b in saved["batches"]] == ["batch-1"]

    resumed = batch_judge(server, cache, tmp_path)
    assert judge_all(resumed, PROMPTS) == [expected_top(p) for p in PROMPTS]
    assert len(server.batches) == 1 and server.batch_requests_seen == Counter(PROMPTS)
    counts = resumed.last_run_counts
    assert counts.batches_resumed == 1 and counts.batches_created == 0


def test_a_batch_created_but_not_recorded_is_found_by_its_input_file(server, cache, tmp_path):
    settings = settings_for(server)
    client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    keys = {OpenAIJudge(settings, cache).key_for(p): p for p in PROMPTS}
    uploaded = client.files.create(
        file=("in.jsonl", requests_jsonl(keys, settings)), purpose="batch"
    )
    client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    state = load_state(tmp_path / "batch-state.json")
    state["pending_input_file_id"] = uploaded.id
    save_state(tmp_path / "batch-state.json", state)

    judge = batch_judge(server, cache, tmp_path)
    assert judge_all(judge, PROMPTS) == [expected_top(p) for p in PROMPTS]
    assert len(server.batches) == 1 and server.batch_requests_seen == Counter(PROMPTS)


def test_a_failed_batch_found_by_its_input_file_is_counted_per_request(
    server, cache, tmp_path, caplog
):
    settings = settings_for(server)
    client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    keys = {OpenAIJudge(settings, cache).key_for(p): p for p in PROMPTS}
    uploaded = client.files.create(
        file=("in.jsonl", requests_jsonl(keys, settings)), purpose="batch"
    )
    client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    save_state(tmp_path / "batch-state.json",
               {**load_state(tmp_path / "batch-state.json"), "pending_input_file_id": uploaded.id})
    server.batch_outcomes.append("failed")
    judge = batch_judge(server, cache, tmp_path, max_rounds=1)
    with caplog.at_level(logging.WARNING):
        assert judge_all(judge, PROMPTS) == [expected_top(p) for p in PROMPTS]
    # Its size came from its input file (the state had none): ten requests, one batch.
    counts = judge.last_run_counts.as_dict()
    assert counts["retries_invalid_request"] == counts["retries"] == 10
    assert counts["batches_failed"] == counts["batch_errors_invalid_request"] == 1
    assert counts["batches_resumed"] == counts["batches_created"] == 1
    assert ("judge batch batch-1 ended failed: invalid_request: invalid input; 10 of its 10 "
            "requests have no line" in caplog.text)


def test_failed_lines_and_an_expired_batch_are_resubmitted_once(server, cache, tmp_path):
    server.batch_outcomes.extend(["expired"])
    server.batch_lines_before_expiry = 4
    server.inject(PROMPTS[1], ["500"])
    server.inject(PROMPTS[2], ["no_logprobs"])
    judge = batch_judge(server, cache, tmp_path)
    assert judge_all(judge, PROMPTS) == [expected_top(p) for p in PROMPTS]
    assert len(server.batches) == 2
    assert server.served == Counter(PROMPTS)  # every answer delivered exactly once
    assert server.batch_requests_seen == Counter(PROMPTS + PROMPTS[1:3])
    counts = judge.last_run_counts.as_dict()
    assert counts["retries_server_error"] == counts["retries_missing_logprobs"] == 1
    # Requests and batches are counted apart: 6 requests expired, in 1 expired batch.
    assert counts["retries_batch_expired"] == 6 and counts["retries"] == 8
    assert counts["batches_expired"] == 1 and counts["batches_completed"] == 1
    assert counts["failures"] == 0


def test_a_request_that_keeps_failing_is_reported_after_the_last_round(
    server, cache, tmp_path
):
    server.inject(PROMPTS[0], ["500"] * 5)
    judge = batch_judge(server, cache, tmp_path, max_rounds=2)
    with pytest.raises(IncompleteJudgmentsError, match="1 judge requests got no answer"):
        judge_all(judge, PROMPTS)
    assert server.batch_requests_seen[PROMPTS[0]] == 2
    assert len(cache) == len(PROMPTS) - 1


def test_max_wait_leaves_the_batch_id_for_a_later_run(server, cache, tmp_path):
    server.batch_polls_to_finish = 100
    with pytest.raises(BatchStillRunningError, match="rerun to collect it"):
        judge_all(batch_judge(server, cache, tmp_path, max_wait_s=0.0), PROMPTS)
    assert load_state(tmp_path / "batch-state.json")["batches"][0]["batch_id"] == "batch-1"


def test_requests_are_split_into_batches_of_the_allowed_size(server, cache, tmp_path):
    judge = batch_judge(server, cache, tmp_path, max_requests_per_batch=4)
    assert judge_all(judge, PROMPTS) == [expected_top(p) for p in PROMPTS]
    assert len(server.batches) == 3


def test_a_refused_key_is_an_auth_error_without_the_key(tmp_path, cache, monkeypatch):
    secret = "sk-batch-SECRET-0123456789"
    monkeypatch.setenv("VD_TEST_BATCH_KEY", secret)
    with FakeOpenAIServer(api_key="sk-other") as refusing:
        judge = OpenAIBatchJudge(
            settings_for(refusing, api_key_env="VD_TEST_BATCH_KEY", require_api_key=True),
            cache, tmp_path / "state.json", poll_interval_s=0.0,
        )
        with pytest.raises(ServerAuthError) as info:
            judge_all(judge, PROMPTS)
    assert secret not in repr(info.value) + str(info.value) + repr(judge)


def test_batch_request_line_carries_the_sync_request_and_the_cache_key(server):
    line = batch_request_line("k" * 64, "prompt", settings_for(server, top_logprobs=7))
    assert line["custom_id"] == "k" * 64 and line["url"] == "/v1/chat/completions"
    assert line["body"]["messages"] == [{"role": "user", "content": "prompt"}]
    assert (line["body"]["logprobs"], line["body"]["top_logprobs"]) == (True, 7)
    assert line["body"]["max_tokens"] == 1 and line["body"]["temperature"] == 0.0
    assert json.loads(json.dumps(line)) == line


# --- Errors are named: a batch's own, a failed batch's status, every failed line ----------

INVALID_LINES = [
    {"code": "invalid_value", "message": f"'model' is not a model (line {n})", "line": n,
     "param": "body.model"}
    for n in range(1, 8)
]
BATCH_FAILURES = {
    "token_limit": (
        ("failed", [{"code": "token_limit_exceeded", "message": "Enqueued token limit "
                     "reached for gpt-4o in organization org-x. Limit: 90,000 enqueued tokens.",
                     "line": None, "param": None}]),
        "token_limit_exceeded",
        [("token_limit_exceeded: Enqueued token limit reached for gpt-4o in organization "
          "org-x. Limit: 90,000 enqueued tokens.")],
    ),
    "validation, with line and param": (
        ("failed", INVALID_LINES[:2]),
        "invalid_value",
        [("invalid_value: 'model' is not a model (line 1) (line 1, param body.model); "
          "invalid_value: 'model' is not a model (line 2) (line 2, param body.model)")],
    ),
    "many errors, five quoted": (
        ("failed", INVALID_LINES),
        "invalid_value",
        ["(line 5, param body.model); and 2 more errors", "not a model (line 5)"],
    ),
    "no errors given": ("failed", "invalid_request", ["invalid_request: invalid input"]),
}


@pytest.mark.parametrize("outcome, code, quoted", BATCH_FAILURES.values(), ids=BATCH_FAILURES)
def test_a_failed_batch_names_its_error_in_the_log_and_the_final_error(
    server, cache, tmp_path, caplog, outcome, code, quoted
):
    server.batch_outcomes.append(outcome)
    judge = batch_judge(server, cache, tmp_path, max_rounds=1)
    with caplog.at_level(logging.WARNING), pytest.raises(IncompleteJudgmentsError) as info:
        judge_all(judge, PROMPTS)
    message, logged = str(info.value), caplog.text
    assert message.startswith(
        f"10 judge requests got no answer from the Batch API after 1 rounds ({code}: 10)"
    )
    assert "batch batch-1 ended failed: " in message and "batch batch-1 ended failed: " in logged
    assert "10 of its 10 requests have no line" in message
    for text in quoted:
        assert text in message and text in logged
    counts = info.value.counts
    # Ten requests failed; one batch failed; the keys never mix the two.
    assert counts["failures"] == counts[f"failures_{code}"] == 10
    assert counts["batches_failed"] == counts[f"batch_errors_{code}"] == 1
    assert counts["batches_created"] == 1 and counts["requests_sent"] == 10
    assert "failures_batch_failed" not in counts and len(cache) == 0


@pytest.mark.parametrize("status, lines_written", [
    ("expired", True), ("expired", False), ("cancelled", True), ("cancelled", False),
])
def test_an_expired_or_cancelled_batch_is_named_per_request_and_per_batch(
    server, cache, tmp_path, caplog, status, lines_written
):
    server.batch_outcomes.extend([status, status])
    server.batch_lines_before_expiry = 3
    server.unrun_lines_in_error_file = lines_written
    judge = batch_judge(server, cache, tmp_path, max_rounds=2)
    with caplog.at_level(logging.WARNING), pytest.raises(IncompleteJudgmentsError) as info:
        judge_all(judge, PROMPTS)
    # Round 1 answers 3 of 10, round 2 answers 3 of the 7 left: 4 never run.
    assert len(cache) == 6 and server.batch_requests_seen == Counter(PROMPTS[:6])
    counts, message = info.value.counts, str(info.value)
    reason = f"batch_{status}"
    assert counts[f"retries_{reason}"] == 7 and counts[f"failures_{reason}"] == 4
    assert counts["failures"] == 4 and counts[f"batches_{status}"] == 2
    assert message.startswith(f"4 judge requests got no answer from the Batch API after 2 "
                              f"rounds ({reason}: 4)")
    assert f"batch batch-2 ended {status}" in message
    if lines_written:  # the error file's own code and message are quoted
        text = {"expired": "could not be executed before the completion window expired",
                "cancelled": "was not executed because the batch was cancelled"}[status]
        assert f"{reason}: This request {text}" in message
        assert f"4 {reason} (e.g. {reason}: This request {text}" in caplog.text
    else:  # no line at all: the batch's status names them
        assert "4 of its 7 requests have no line in its output or error file" in message
        assert "4 of its 7 requests have no line" in caplog.text


def test_every_failed_line_is_named_with_its_code_and_message(
    server, cache, tmp_path, caplog
):
    faults = {PROMPTS[0]: "400", PROMPTS[1]: "429", PROMPTS[2]: "503", PROMPTS[3]: "timeout",
              PROMPTS[4]: "no_logprobs", PROMPTS[5]: "malformed"}
    for prompt, fault in faults.items():
        server.inject(prompt, [fault] * 2)
    judge = batch_judge(server, cache, tmp_path, max_rounds=2)
    with caplog.at_level(logging.WARNING), pytest.raises(IncompleteJudgmentsError) as info:
        judge_all(judge, PROMPTS)
    assert len(cache) == 4 and server.batch_requests_seen == Counter(
        PROMPTS + PROMPTS[:6]
    )
    counts, message = info.value.counts, str(info.value)
    reasons = ["http_400", "rate_limited", "server_error", "request_timeout",
               "missing_logprobs", "malformed_output_line"]
    assert {r: counts[f"failures_{r}"] for r in reasons} == dict.fromkeys(reasons, 1)
    assert {r: counts[f"retries_{r}"] for r in reasons} == dict.fromkeys(reasons, 1)
    assert counts["failures"] == 6 and counts["batches_completed"] == 2
    assert not any(k.startswith("batches_failed") for k in counts)
    for named in [
        "http_400: HTTP 400 invalid_value: injected 400: 'messages' is malformed",
        "rate_limited: HTTP 429 rate_limit_exceeded: injected 429: rate limited",
        "server_error: HTTP 503 server_overloaded: injected 503: overloaded",
        "request_timeout: request_timeout: The underlying call to the model timed out.",
        "missing_logprobs: no choices[0].logprobs.content[0].top_logprobs",
        "malformed_output_line: JSONDecodeError: Unterminated string",
    ]:
        assert named in message
    assert "judge batch batch-2: 6 requests without an answer: 1 http_400 (e.g. HTTP 400 " \
        "invalid_value: injected 400" in caplog.text


# --- JSONL: records end at "\n" only -----------------------------------------------------

LINE_SEPARATORS = ["\u2028", "\u2029", "\x85"]


@pytest.mark.parametrize("separator", LINE_SEPARATORS, ids=ascii)
@pytest.mark.parametrize("layout", ["plain", "no_final_newline", "blank_lines", "crlf"])
def test_an_answer_token_that_is_a_unicode_line_separator_is_read_whole(
    server, cache, tmp_path, separator, layout
):
    server.extra_top_tokens = (separator, f"a{separator}b")
    server.batch_file_layout = layout
    judge = batch_judge(server, cache, tmp_path)
    extras = server.extra_top_tokens
    assert judge_all(judge, PROMPTS) == [expected_top(p, extra_tokens=extras) for p in PROMPTS]
    output = server.files[server.batches["batch-1"]["output_file_id"]]["data"]
    assert output.count(separator.encode("utf-8")) >= len(PROMPTS)  # raw, not \u-escaped
    assert separator in expected_top(PROMPTS[0], extra_tokens=extras)
    counts = judge.last_run_counts.as_dict()
    assert counts["answered"] == len(cache) == 10 and counts["failures"] == 0
    # A rerun finds every answer cached and sends nothing.
    rerun = batch_judge(server, cache, tmp_path)
    assert judge_all(rerun, PROMPTS) == [expected_top(p, extra_tokens=extras) for p in PROMPTS]
    assert len(server.batches) == 1 and rerun.last_run_counts.cache_hits == 10


def test_prompts_holding_line_separators_travel_whole(server, cache, tmp_path):
    odd = [f"Question {i}: a{c}b? Response: c{c}d." for i, c in
           enumerate(["\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c", "\r"])]
    judge = batch_judge(server, cache, tmp_path)
    assert judge_all(judge, odd) == [expected_top(p) for p in odd]
    assert server.batch_requests_seen == Counter(odd)


def test_jsonl_lines_splits_on_newline_only():
    records = [
        '{"t": "a\u2028b\u2029c\x85d"}', '{"t": "\\u001c\\u001d\\u001e\\u000b\\u000c"}',
        '{"t": "\u2028"}',
    ]
    data = ("\n \t\n" + records[0] + "\r\n\n" + records[1] + "\n" + records[2]).encode()
    assert [json.loads(r)["t"] for r in jsonl_lines(data)] == [
        "a\u2028b\u2029c\x85d", "\x1c\x1d\x1e\x0b\x0c", "\u2028",
    ]
    assert list(jsonl_lines(b"")) == list(jsonl_lines(b"\n\r\n  \n")) == []
    # Raw control characters inside a record do not end it either.
    assert list(jsonl_lines(b'{"t": "\x1c\x1d\x1e\x0b\x0c\r"}\n')) == [
        b'{"t": "\x1c\x1d\x1e\x0b\x0c\r"}'
    ]


# --- The enqueued-token budget -------------------------------------------------------------

BUDGET_PROMPTS = [f"Budget question {i:02d}: is tea better than coffee? Response: {i:02d}."
                  for i in range(12)]


def most_in_flight(events) -> int:
    """The most tokens (the fake's count) in batches created and not yet ended."""
    tokens, in_flight, most = {}, 0, 0
    for event in events:
        if event[0] == "created":
            tokens[event[1]] = event[3]
            in_flight += event[3]
        else:
            in_flight -= tokens[event[1]]
        most = max(most, in_flight)
    return most


def test_enqueued_tokens_are_the_cost_plans_estimate_plus_max_tokens(server):
    settings = settings_for(server, max_tokens=5)
    prompt = "x" * 400
    assert enqueued_tokens(prompt, settings) == estimate_tokens(prompt) + 5 == 100 + 7 + 5
    # The estimate errs high against the fake's own count, as the budget needs.
    assert all(enqueued_tokens(p, settings) > fake_prompt_tokens(p) for p in BUDGET_PROMPTS)


def test_chunks_hold_at_most_the_requests_and_the_tokens_allowed():
    items = {f"k{i}": "x" * n for i, n in enumerate([5, 5, 5, 9, 1, 1, 10, 2])}
    chunks = list(chunked(items, size=3, token_budget=10, tokens_of=len))
    assert [(list(c), t) for c, t in chunks] == [
        (["k0", "k1"], 10), (["k2"], 5), (["k3", "k4"], 10), (["k5"], 1), (["k6"], 10),
        (["k7"], 2),
    ]
    assert [list(c) for c, _ in chunked(items, size=3)] == [
        ["k0", "k1", "k2"], ["k3", "k4", "k5"], ["k6", "k7"],
    ]
    with pytest.raises(JudgeConfigError, match=r"estimated at 10 enqueued tokens, more than "
                       r"judge.batch.max_enqueued_tokens \(9\)"):
        list(chunked(items, size=3, token_budget=9, tokens_of=len))


def test_chunks_go_out_only_while_the_batches_in_flight_fit_the_budget(
    server, cache, tmp_path
):
    per_request = enqueued_tokens(BUDGET_PROMPTS[0], settings_for(server))
    assert {enqueued_tokens(p, settings_for(server)) for p in BUDGET_PROMPTS} == {per_request}
    server.batch_polls_to_finish = 2
    server.enqueued_token_limit = 6 * per_request  # the organisation's, as the fake counts
    judge = batch_judge(server, cache, tmp_path, max_requests_per_batch=3,
                        max_enqueued_tokens=6 * per_request)
    assert judge_all(judge, BUDGET_PROMPTS) == [expected_top(p) for p in BUDGET_PROMPTS]
    fake_tokens = 3 * fake_prompt_tokens(BUDGET_PROMPTS[0])
    assert server.batch_events == [
        ("created", "batch-1", 3, fake_tokens), ("created", "batch-2", 3, fake_tokens),
        ("ended", "batch-1", "completed"), ("created", "batch-3", 3, fake_tokens),
        ("ended", "batch-2", "completed"), ("created", "batch-4", 3, fake_tokens),
        ("ended", "batch-3", "completed"), ("ended", "batch-4", "completed"),
    ]
    assert most_in_flight(server.batch_events) == 2 * fake_tokens
    assert server.batch_requests_seen == Counter(BUDGET_PROMPTS)
    counts = judge.last_run_counts.as_dict()
    assert counts["batches_created"] == counts["batches_completed"] == 4
    assert counts["failures"] == counts["retries"] == 0


def test_a_token_limit_failure_stops_the_round_then_batches_go_one_at_a_time(
    server, cache, tmp_path, caplog
):
    # No budget set: the organisation's limit (one chunk) is found the hard way, once.
    server.batch_polls_to_finish = 3
    limit = server.enqueued_token_limit = 3 * fake_prompt_tokens(PROMPTS[0])
    judge = batch_judge(server, cache, tmp_path, max_requests_per_batch=3)
    with caplog.at_level(logging.WARNING):
        assert judge_all(judge, PROMPTS) == [expected_top(p) for p in PROMPTS]
    assert [e[:3] for e in server.batch_events] == [
        ("created", "batch-1", 3), ("created", "batch-2", 3), ("ended", "batch-2", "failed"),
        ("ended", "batch-1", "completed"),
        # Round 2: batch-2's three requests and the four held back, one batch at a time.
        ("created", "batch-3", 3), ("ended", "batch-3", "completed"),
        ("created", "batch-4", 3), ("ended", "batch-4", "completed"),
        ("created", "batch-5", 1), ("ended", "batch-5", "completed"),
    ]
    assert server.batch_requests_seen == Counter(PROMPTS)
    counts = judge.last_run_counts.as_dict()
    assert counts["batches_failed"] == counts["batch_errors_token_limit_exceeded"] == 1
    assert counts["retries_token_limit_exceeded"] == counts["retries"] == 3
    assert counts["failures"] == 0 and counts["batches_completed"] == 4
    assert ("judge batch batch-2 ended failed: token_limit_exceeded: Enqueued token limit "
            f"reached for fake-judge in organization org-fake. Limit: {limit} enqueued tokens."
            in caplog.text)
    assert "holding back 4 requests" in caplog.text


def test_a_token_limit_that_persists_is_reported_with_what_to_lower(server, cache, tmp_path):
    server.enqueued_token_limit = 5  # less than any one request
    judge = batch_judge(server, cache, tmp_path, max_rounds=3, max_requests_per_batch=4,
                        max_enqueued_tokens=10_000)
    with pytest.raises(IncompleteJudgmentsError) as info:
        judge_all(judge, PROMPTS)
    # One refused batch per round, not one per chunk.
    assert len(server.batches) == 3 and server.batch_requests_seen == Counter()
    assert [e for e in server.batch_events if e[0] == "ended"] == [
        ("ended", f"batch-{n}", "failed") for n in (1, 2, 3)
    ]
    message = str(info.value)
    assert message.startswith(
        "10 judge requests got no answer from the Batch API after 3 rounds "
        "(not_submitted_after_token_limit: 6, token_limit_exceeded: 4)"
    )
    assert ("token_limit_exceeded: Enqueued token limit reached for fake-judge in "
            "organization org-fake. Limit: 5 enqueued tokens." in message)
    assert "lower judge.batch.max_enqueued_tokens (now 10000)" in message
    counts = info.value.counts
    assert counts["batches_failed"] == counts["batch_errors_token_limit_exceeded"] == 3
    assert counts["failures"] == 10 and counts["requests_sent"] == 12


def test_a_crash_during_a_budgeted_run_resumes_within_the_budget(server, cache, tmp_path):
    per_request = enqueued_tokens(BUDGET_PROMPTS[0], settings_for(server))
    server.batch_polls_to_finish = 3

    def crash(_seconds):
        raise Crash

    options = {"max_requests_per_batch": 4, "max_enqueued_tokens": 4 * per_request}
    with pytest.raises(Crash):
        judge_all(batch_judge(server, cache, tmp_path, sleep=crash, **options), BUDGET_PROMPTS)
    saved = load_state(tmp_path / "batch-state.json")
    assert [(b["batch_id"], b["requests"], b["enqueued_tokens"]) for b in saved["batches"]] == [
        ("batch-1", 4, 4 * per_request)
    ]
    assert len(server.batches) == 1  # the second chunk waited for the first

    resumed = batch_judge(server, cache, tmp_path, **options)
    assert judge_all(resumed, BUDGET_PROMPTS) == [expected_top(p) for p in BUDGET_PROMPTS]
    assert server.batch_requests_seen == Counter(BUDGET_PROMPTS)
    assert [e[:2] for e in server.batch_events] == [
        ("created", "batch-1"), ("ended", "batch-1"), ("created", "batch-2"),
        ("ended", "batch-2"), ("created", "batch-3"), ("ended", "batch-3"),
    ]
    counts = resumed.last_run_counts
    assert (counts.batches_resumed, counts.batches_created, counts.answered) == (1, 2, 12)
    assert not (tmp_path / "batch-state.json").exists()


def test_max_enqueued_tokens_is_a_config_key_the_backend_receives(paper_config, tmp_path):
    paper_config["judge"]["batch"]["max_enqueued_tokens"] = 45_000
    validate_config(paper_config)
    judge = {**paper_config["judge"], "backend": "openai_batch", "require_api_key": False,
             "cache": str(tmp_path / "cache.sqlite")}
    backend = make_backend(judge, "unused", tmp_path / "state.json", threads=1)
    assert backend.max_enqueued_tokens == 45_000 and backend.max_rounds == 3
    backend.cache.close()
    paper_config["judge"]["batch"]["max_enqueued_tokens"] = 0
    with pytest.raises(ConfigError, match="judge.batch.max_enqueued_tokens"):
        validate_config(paper_config)
