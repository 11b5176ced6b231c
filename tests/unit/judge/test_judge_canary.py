"""Canary prompts (judge.canaries): a judge job re-asks a few cached prompts of the server
behind its URL, storing nothing, and fails when the server now answers them differently
(weights swapped under the same URL and model name). Over real HTTP on loopback with the
fake OpenAI-protocol server, plus the pure comparison on hand-made top lists."""

from __future__ import annotations

import json
import math
import random
import runpy
import sqlite3
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import polars as pl
import pytest
import yaml

from tests.support.judge_test_server import FakeOpenAIServer, expected_top
from value_drifts.backends.cache import JudgeCache
from value_drifts.core.config import _schema, schema_default
from value_drifts.judge.canary import (
    NOTHING_CACHED,
    SWITCHED_OFF,
    CanaryCheckError,
    CanaryMismatchError,
    CanaryOutcome,
    CanarySettings,
    CanaryUnansweredError,
    canary_counts,
    canary_error,
    compare_canaries,
    pick_canaries,
    stance_distance,
)
from value_drifts.judge.openai_backend import (
    OpenAIJudge,
    OpenAIJudgeSettings,
    cache_value,
    judge_request_key,
)
from value_drifts.judge.stance import read_stance

REPO = Path(__file__).resolve().parents[3]
PROMPTS = [f"Question {i}: should cities ban cars? Response: answer {i}. Topic: t{i % 3}"
           for i in range(8)]
MASS = schema_default("judge", "min_label_mass")
TOLERANCE = schema_default("judge", "canary_tolerance")


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def cache(tmp_path):
    judge_cache = JudgeCache(tmp_path / "judge-cache.sqlite")
    yield judge_cache
    judge_cache.close()


def settings_for(server: FakeOpenAIServer) -> OpenAIJudgeSettings:
    return OpenAIJudgeSettings(
        model="fake-judge", base_url=server.base_url, require_api_key=False, concurrency=2,
        request_timeout_s=10.0, backoff_initial_s=0.01, backoff_max_s=0.05,
    )


def make_judge(server, cache, count: int | None, tolerance: float = TOLERANCE) -> OpenAIJudge:
    canaries = None if count is None else CanarySettings(count, tolerance, MASS)
    return OpenAIJudge(settings_for(server), cache, rng=random.Random(0), canaries=canaries)


def judge_all(judge: OpenAIJudge, prompts: list[str]) -> list[dict[str, float]]:
    return [top for _, batch in judge.batches(prompts) for top in batch]


def tv(a: dict[str, float], b: dict[str, float]) -> float:
    p, q = read_stance(a).probabilities, read_stance(b).probabilities
    return 0.5 * sum(abs(x - y) for x, y in zip(p, q, strict=True))


def swapped_top(prompt: str) -> dict[str, float]:
    """What 'other weights' answer to ``prompt``: another prompt's fake answer, chosen to
    read clearly differently (total variation above 0.2)."""
    for n in range(100):
        other = expected_top(f"{prompt} (other weights {n})")
        if tv(other, expected_top(prompt)) > 0.2:
            return other
    raise AssertionError("no clearly different answer found")


def store(cache: JudgeCache, server, prompt: str, top: dict[str, float]) -> None:
    """A cached answer, keyed exactly as the backend keys ``prompt`` for this server."""
    meta = {"answer_token": None, "served_model": "fake-judge", "prompt_tokens": 1,
            "completion_tokens": 1}
    settings = settings_for(server)
    cache.put(judge_request_key(prompt, settings), cache_value(top, meta, settings, "test"))


def rows(cache: JudgeCache) -> list[tuple]:
    with sqlite3.connect(cache.path) as conn:
        return conn.execute("SELECT key, value, stored_at FROM answers ORDER BY key").fetchall()


def spy_on_writes(cache: JudgeCache, monkeypatch) -> list[str]:
    written: list[str] = []
    original = cache.put_many

    def put_many(items):
        items = list(items)
        written.extend(key for key, _ in items)
        original(items)

    monkeypatch.setattr(cache, "put_many", put_many)
    return written


# --- against the server ----------------------------------------------------------------


def test_same_server_passes_sends_k_canaries_and_leaves_the_cache_untouched(
    server, cache, monkeypatch
):
    prompts = [PROMPTS[0], PROMPTS[0], *PROMPTS[1:6]]  # a repeat is one canary
    judge_all(make_judge(server, cache, None), prompts)
    before = rows(cache)
    server.reset_counts()
    written = spy_on_writes(cache, monkeypatch)

    judge = make_judge(server, cache, 3)
    tops = judge_all(judge, prompts)

    assert tops == [expected_top(p) for p in prompts]
    # the first three distinct cached prompts, in prompt order, sent once each
    assert server.hits == Counter({p: 1 for p in PROMPTS[:3]})
    assert written == [] and rows(cache) == before
    outcome = judge.last_canaries
    assert outcome == CanaryOutcome(requested=3, sent=3, answered=3, differed=0,
                                    max_distance=0.0, tolerance=TOLERANCE, requests_sent=3)
    counts = judge.last_run_counts.as_dict()
    # canaries are paid calls: counted as sent, not as answers or failures
    assert counts["requests_sent"] == 3 and counts["answered"] == 0
    assert counts["cache_hits"] == len(prompts) and counts["failures"] == 0
    assert counts["completion_tokens"] == 3 and counts["prompt_tokens"] > 0


def test_canaries_are_the_cached_prompts_and_are_asked_before_the_rest(server, cache):
    for i in (1, 3, 4):
        store(cache, server, PROMPTS[i], expected_top(PROMPTS[i]))
    judge = make_judge(server, cache, 2)
    tops = judge_all(judge, PROMPTS[:6])
    assert tops == [expected_top(p) for p in PROMPTS[:6]]
    # canaries: prompts 1 and 3 (not 4: N = 2); the uncached 0, 2, 5 are judged as usual
    assert server.hits == Counter({PROMPTS[i]: 1 for i in (0, 1, 2, 3, 5)})
    assert judge.last_canaries.sent == 2 and judge.last_canaries.differed == 0
    counts = judge.last_run_counts.as_dict()
    assert counts["requests_sent"] == 3 + 2 and counts["answered"] == 3


def test_a_server_answering_otherwise_under_the_same_url_fails_the_job(server, cache):
    """The cache holds what 'other weights' answered at this URL and model name; the
    server now answers as itself: the job stops before any cached answer is used."""
    for prompt in PROMPTS[:4]:
        store(cache, server, prompt, swapped_top(prompt))
    before = rows(cache)
    judge = make_judge(server, cache, 2)
    batches = judge.batches(PROMPTS[:6])
    with pytest.raises(CanaryMismatchError) as caught:
        next(batches)
    message = str(caught.value)
    largest = max(tv(swapped_top(p), expected_top(p)) for p in PROMPTS[:2])
    assert server.base_url in message and "'fake-judge'" in message
    assert "2 of 2 canary prompts" in message and f"{largest:.4f}" in message
    assert "judge.cache" in message and "judge.canaries: 0" in message
    assert str(cache.path) in message
    assert caught.value.outcome["differed"] == 2
    assert caught.value.outcome["max_distance"] == pytest.approx(largest)
    # only the canaries were sent: the uncached prompts 4 and 5 were not judged
    assert server.hits == Counter({PROMPTS[0]: 1, PROMPTS[1]: 1})
    assert rows(cache) == before
    # the same readings within a looser tolerance pass
    loose = make_judge(server, cache, 2, tolerance=min(1.0, largest + 0.01))
    judge_all(loose, PROMPTS[:6])
    assert loose.last_canaries.differed == 0
    assert loose.last_canaries.max_distance == pytest.approx(largest)


def test_a_cached_unreadable_answer_the_server_now_reads_is_a_mismatch(server, cache):
    store(cache, server, PROMPTS[0], {"<think>": -0.01, "The": -5.0})
    with pytest.raises(CanaryMismatchError, match="1 of 1 canary prompts"):
        judge_all(make_judge(server, cache, 1), PROMPTS[:2])


def test_canaries_zero_or_unset_send_nothing_extra(server, cache):
    judge_all(make_judge(server, cache, None), PROMPTS[:4])
    for count in (0, None):
        server.reset_counts()
        judge = make_judge(server, cache, count)
        judge_all(judge, PROMPTS[:4])
        assert server.hits == Counter()
        assert judge.last_canaries is None
        assert judge.last_run_counts.requests_sent == 0


def test_nothing_cached_skips_the_check_and_says_so(server, cache):
    judge = make_judge(server, cache, 3)
    judge_all(judge, PROMPTS[:4])
    assert server.hits == Counter({p: 1 for p in PROMPTS[:4]})
    assert judge.last_canaries == CanaryOutcome(
        requested=3, sent=0, answered=0, differed=0, max_distance=None, tolerance=TOLERANCE,
        skipped=NOTHING_CACHED,
    )
    assert judge.last_run_counts.requests_sent == 4


def test_a_canary_the_server_never_answers_fails_the_check(server, cache):
    judge_all(make_judge(server, cache, None), PROMPTS[:3])
    server.reset_counts()
    server.inject(PROMPTS[1], ["400"])  # a client error: not retried
    judge = make_judge(server, cache, 2)
    with pytest.raises(CanaryUnansweredError, match="answered 1 of 2 canary prompts"):
        judge_all(judge, PROMPTS[:3])
    assert judge.last_canaries.answered == 1 and judge.last_canaries.differed == 0
    # a failed canary is no failed judge request
    assert judge.last_run_counts.failures == Counter()
    assert judge.last_run_counts.requests_sent == 2


# --- the judge job (workflow_scripts/judge.py) -----------------------------------------


def run_judge_script(tmp_path: Path, server, **judge_keys) -> dict:
    generations = pl.DataFrame({
        "question_id": ["q1", "q1", "q2", "q3"],
        "category": ["cars", "cars", "food", "food"],
        "sample": [0, 1, 0, 0],
        "question": ["Ban cars?", "Ban cars?", "Eat meat?", "Eat fish?"],
        "response": ["Yes.", "No.", "Maybe.", "Rarely."],
    })
    generations.write_parquet(tmp_path / "generations.parquet")
    (tmp_path / "out").mkdir(exist_ok=True)  # Snakemake makes output folders
    (tmp_path / "topics.yaml").write_text(yaml.safe_dump({"cars": "car bans", "food": "meat"}))
    judge = {"backend": "openai", "model": "fake-judge", "base_url": server.base_url,
             "require_api_key": False, "prompt": str(REPO / "config/prompts/judge_response.txt"),
             "cache": str(tmp_path / "cache.sqlite"), **judge_keys}
    snakemake = SimpleNamespace(
        log=[str(tmp_path / "judge.log")],
        threads=1,
        input=SimpleNamespace(generations=str(tmp_path / "generations.parquet"),
                              topics=str(tmp_path / "topics.yaml"), prompt=judge["prompt"]),
        output=SimpleNamespace(judgments=str(tmp_path / "out/judgments.parquet"),
                               counts=str(tmp_path / "out/judge_counts.json")),
        params=SimpleNamespace(judge=judge, model_path="unused", fingerprint_settings=None,
                               batch_state=str(tmp_path / "state.json")),
    )
    runpy.run_path(str(REPO / "workflow_scripts/judge.py"), {"snakemake": snakemake})
    return json.loads(Path(snakemake.output.counts).read_text())


def test_the_judge_job_passes_the_setting_and_records_the_canaries(tmp_path, server):
    first = run_judge_script(tmp_path, server, canaries=2)
    assert first["canaries"]["skipped"] == NOTHING_CACHED and first["canaries"]["sent"] == 0
    assert first["requests_sent"] == 4
    server.reset_counts()
    second = run_judge_script(tmp_path, server, canaries=2)
    assert second["canaries"] == {
        "requested": 2, "sent": 2, "answered": 2, "differed": 0, "max_distance": 0.0,
        "tolerance": TOLERANCE, "requests_sent": 2, "skipped": None,
    }
    assert second["requests_sent"] == 2 and sum(server.hits.values()) == 2
    server.reset_counts()
    off = run_judge_script(tmp_path, server)  # the schema's default: off
    assert off["canaries"]["skipped"] == SWITCHED_OFF and off["requests_sent"] == 0
    assert sum(server.hits.values()) == 0


def test_the_judge_job_fails_on_a_mismatch_and_writes_nothing(tmp_path, server):
    run_judge_script(tmp_path, server)
    counts_file = tmp_path / "out/judge_counts.json"
    counts_file.unlink()
    with sqlite3.connect(tmp_path / "cache.sqlite") as conn:  # 'other weights', same keys
        for key, value in conn.execute("SELECT key, value FROM answers").fetchall():
            stored = {**json.loads(value), "top_logprobs": {"<think>": -0.01, "The": -5.0}}
            conn.execute("UPDATE answers SET value = ? WHERE key = ?", (json.dumps(stored), key))
    server.reset_counts()
    with pytest.raises(CanaryMismatchError, match="1 of 1 canary prompts") as caught:
        run_judge_script(tmp_path, server, canaries=1)
    assert server.base_url in str(caught.value)
    assert not counts_file.exists() and sum(server.hits.values()) == 1


# --- pure parts ------------------------------------------------------------------------

SUPPORT = {"support": math.log(0.8), "neutral": math.log(0.15), "oppose": math.log(0.05)}
SUPPORT_NOISY = {"support": math.log(0.79), "neutral": math.log(0.16), "oppose": math.log(0.05)}
OPPOSE = {"support": math.log(0.05), "neutral": math.log(0.15), "oppose": math.log(0.8)}
THINKING = {"<think>": math.log(0.97), "support": math.log(0.01), "The": math.log(0.02)}


def test_stance_distance_is_total_variation_and_readability_changes_always_differ():
    assert stance_distance(SUPPORT, SUPPORT, MASS) == (0.0, False)
    distance, changed = stance_distance(SUPPORT, SUPPORT_NOISY, MASS)
    assert distance == pytest.approx(0.01) and not changed
    assert stance_distance(SUPPORT, OPPOSE, MASS)[0] == pytest.approx(0.75)
    # readable in the cache, unreadable now (or the reverse): the largest distance
    assert stance_distance(SUPPORT, THINKING, MASS) == (1.0, True)
    assert stance_distance(THINKING, SUPPORT, MASS) == (1.0, True)
    # both unreadable: no stance to compare
    assert stance_distance(THINKING, {"**": -0.01}, MASS) == (0.0, False)


def test_compare_canaries_counts_differences_against_the_tolerance():
    settings = CanarySettings(count=4, tolerance=0.05, min_label_mass=MASS)
    outcome = compare_canaries(
        [(SUPPORT, SUPPORT_NOISY), (SUPPORT, OPPOSE), (SUPPORT, None), (OPPOSE, OPPOSE)],
        settings, requests_sent=5,
    )
    assert (outcome.sent, outcome.answered, outcome.differed) == (4, 3, 1)
    assert outcome.max_distance == pytest.approx(0.75) and outcome.requests_sent == 5
    # the full tolerance still catches a readability change, not a stance change
    full = CanarySettings(count=2, tolerance=1.0, min_label_mass=MASS)
    assert compare_canaries([(SUPPORT, OPPOSE)], full).differed == 0
    assert compare_canaries([(SUPPORT, THINKING)], full).differed == 1
    assert compare_canaries([], settings).skipped == NOTHING_CACHED


def test_canary_error_names_server_model_count_distance_and_remedy():
    settings = CanarySettings(count=3, tolerance=0.05, min_label_mass=MASS)
    outcome = compare_canaries([(SUPPORT, OPPOSE), (SUPPORT, SUPPORT)], settings)
    error = canary_error(outcome, "http://judge:8000/v1", "qwen", "results/judge_cache.sqlite")
    assert isinstance(error, CanaryMismatchError)
    text = str(error)
    for part in ("http://judge:8000/v1", "'qwen'", "1 of 2 canary prompts", "0.7500",
                 "0.05", "judge.cache", "results/judge_cache.sqlite", "judge.canaries: 0"):
        assert part in text, part
    assert "default URL" in str(canary_error(outcome, None, "gpt-4o", "c.sqlite"))
    passed = compare_canaries([(SUPPORT, SUPPORT_NOISY)], settings)
    assert canary_error(passed, "u", "m", "c") is None
    assert canary_error(compare_canaries([], settings), "u", "m", "c") is None
    unanswered = canary_error(compare_canaries([(SUPPORT, None)], settings), "u", "m", "c")
    assert isinstance(unanswered, CanaryUnansweredError)
    assert isinstance(unanswered, CanaryCheckError)


def test_pick_canaries_takes_the_first_distinct_cached_requests_in_order():
    keys = ["a", "b", "a", "c", "d", "e"]
    prompts = ["pa", "pb", "pa", "pc", "pd", "pe"]
    cached = {"a": {}, "c": {}, "e": {}}
    assert pick_canaries(keys, prompts, cached, 2) == {"a": "pa", "c": "pc"}
    assert pick_canaries(keys, prompts, cached, 9) == {"a": "pa", "c": "pc", "e": "pe"}
    assert pick_canaries(keys, prompts, cached, 0) == {}
    assert pick_canaries(keys, prompts, {}, 3) == {}


def test_settings_come_from_the_schema_and_are_validated():
    bare = {"backend": "openai", "model": "m", "prompt": "p"}
    settings = CanarySettings.from_judge(bare)
    assert settings.count == schema_default("judge", "canaries") == 0
    assert settings.tolerance == schema_default("judge", "canary_tolerance") == 0.05
    assert settings.min_label_mass == MASS
    assert CanarySettings.from_judge({**bare, "canaries": 5}).count == 5
    for bad in ({"count": -1}, {"tolerance": 0.0}, {"tolerance": 1.5}):
        with pytest.raises(ValueError):
            CanarySettings(**{"count": 1, "tolerance": 0.05, "min_label_mass": MASS, **bad})
    schema = _schema()
    section = jsonschema.Draft202012Validator({"$defs": schema["$defs"],
                                               **schema["properties"]["judge"]})
    assert section.is_valid({**bare, "canaries": 3, "canary_tolerance": 1})
    for bad in ({"canaries": -1}, {"canaries": 1.5}, {"canary_tolerance": 0},
                {"canary_tolerance": 1.01}):
        assert not section.is_valid({**bare, **bad}), bad


def test_counts_say_why_no_canary_was_sent():
    off = CanarySettings(count=0, tolerance=0.05, min_label_mass=MASS)
    on = CanarySettings(count=2, tolerance=0.05, min_label_mass=MASS)
    assert canary_counts(off, None, "openai")["skipped"] == SWITCHED_OFF
    assert "openai_batch" in canary_counts(on, None, "openai_batch")["skipped"]
    outcome = compare_canaries([(SUPPORT, SUPPORT)], on)
    assert canary_counts(on, outcome, "openai") == outcome.as_dict()
