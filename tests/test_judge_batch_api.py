"""The Batch API judge against the local server: round trip, crash resume, bounded rounds."""

from __future__ import annotations

import json
import random
from collections import Counter

import openai
import pytest

from tests.judge_test_server import FakeOpenAIServer, expected_top
from value_drifts.judge.batch_api import (
    BatchStillRunningError,
    OpenAIBatchJudge,
    batch_request_line,
    load_state,
    requests_jsonl,
    save_state,
)
from value_drifts.judge.cache import JudgeCache
from value_drifts.judge.openai_backend import (
    IncompleteJudgmentsError,
    OpenAIJudge,
    OpenAIJudgeSettings,
)
from value_drifts.openai_chat import ServerAuthError

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
    assert counts["retries_batch_expired"] == 1 and counts["failures"] == 0


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
