"""The local transformers judge answers from the persistent cache: counted model calls."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
import torch

from tests.support.tiny_model import build_tiny_model
from value_drifts.backends.cache import JudgeCache
from value_drifts.judge import local
from value_drifts.judge.answers import length_sorted_windows
from value_drifts.judge.backends import backend_counts, make_backend
from value_drifts.judge.local import model_identity
from value_drifts.judge.run import judge_generations

PROMPTS = [f"Question {i}: is remote work good? Response: answer {i}." for i in range(10)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "judge")


@pytest.fixture
def model_dir(tiny_dir, tmp_path):
    """A private copy, so a test may retrain (overwrite) it."""
    return shutil.copytree(tiny_dir, tmp_path / "judge")


def config(tmp_path, **overrides):
    return {
        "backend": "transformers", "model": "adapted", "prompt": "unused",
        "top_logprobs": 5, "batch_size": 4, "cache": str(tmp_path / "cache.sqlite"),
        **overrides,
    }


def backend(tmp_path, model_dir, **overrides):
    return make_backend(config(tmp_path, **overrides), str(model_dir), tmp_path / "s.json", 1)


def judge_all(judge, prompts):
    return [top for _, batch in judge.batches(prompts) for top in batch]


def test_a_rerun_answers_from_the_cache_without_loading_or_running_the_model(
    tmp_path, model_dir
):
    first = backend(tmp_path, model_dir)
    tops = judge_all(first, PROMPTS + PROMPTS[:3])  # repeats are scored once
    assert first.scorer.forward_calls == 3  # 10 distinct prompts in batches of 4
    assert backend_counts(first) | {"prompts": 13} == {
        **backend_counts(first), "prompts": 13, "distinct_requests": 10, "cache_hits": 0,
        "requests_sent": 10, "answered": 10,
    }
    assert len(tops) == 13 and tops[10:] == tops[:3]
    assert all(len(top) <= 5 and all(v <= 0 for v in top.values()) for top in tops)

    again = backend(tmp_path, model_dir)  # a new job: fresh process state, same cache file
    assert judge_all(again, PROMPTS + PROMPTS[:3]) == tops  # identical floats
    assert again.scorer.forward_calls == 0
    assert again.scorer._model is None  # never even loaded
    counts = backend_counts(again)
    assert counts["cache_hits"] == 13 and counts["requests_sent"] == 0


def test_cached_answers_equal_what_the_model_computes(tmp_path, model_dir):
    judge = backend(tmp_path, model_dir)
    cached = judge_all(judge, PROMPTS[:2])
    fresh = backend(tmp_path, model_dir, cache=str(tmp_path / "other.sqlite"))
    assert judge_all(fresh, PROMPTS[:2]) == cached
    # And it is the model's real next-token distribution over the chat-rendered prompt.
    scorer = judge.scorer
    encoded = scorer.tokenizer([scorer.render(PROMPTS[0])], return_tensors="pt")
    with torch.inference_mode():
        logits = scorer.model(**encoded).logits[0, -1]
    best = int(logits.argmax())
    assert cached[0][scorer.tokenizer.decode([best])] == pytest.approx(
        float(torch.log_softmax(logits, -1)[best]), abs=1e-5
    )


def test_only_new_or_changed_prompts_reach_the_model(tmp_path, model_dir):
    judge_all(backend(tmp_path, model_dir), PROMPTS[:6])
    edited = PROMPTS[:6] + ["a new prompt"]
    edited[2] += " (reworded)"
    judge = backend(tmp_path, model_dir)
    judge_all(judge, edited)
    assert judge.scorer.forward_calls == 1
    assert backend_counts(judge)["requests_sent"] == 2
    assert backend_counts(judge)["cache_hits"] == 5


def test_retraining_the_judge_or_other_decoding_params_miss_the_cache(tmp_path, model_dir):
    judge_all(backend(tmp_path, model_dir), PROMPTS[:4])
    other_k = backend(tmp_path, model_dir, top_logprobs=3)
    judge_all(other_k, PROMPTS[:4])
    assert other_k.scorer.forward_calls == 1

    # Retrain: new weights written over the same directory.
    model = other_k.scorer.model
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01)
    model.save_pretrained(model_dir)
    retrained = backend(tmp_path, model_dir)
    judge_all(retrained, PROMPTS[:4])
    assert retrained.scorer.forward_calls == 1
    assert backend_counts(retrained)["cache_hits"] == 0


def test_model_identity_hashes_model_files_once_and_ignores_training_state(
    tmp_path, model_dir, monkeypatch
):
    cache = JudgeCache(tmp_path / "cache.sqlite")
    reads = []
    real_sha = local.file_sha256
    monkeypatch.setattr(
        local, "file_sha256", lambda path: reads.append(path.name) or real_sha(path)
    )
    identity = model_identity(model_dir, cache)
    assert identity.startswith("sha256:") and "model.safetensors" in reads
    reads.clear()
    assert model_identity(model_dir, cache) == identity
    assert reads == []  # memoised under the files' stat signature

    (model_dir / "optimizer.pt").write_bytes(b"optimizer state")
    (model_dir / "trainer_state.json").write_text("{}")
    assert model_identity(model_dir) == identity
    config_file = model_dir / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "x": 1}))
    assert model_identity(model_dir, cache) != identity
    assert model_identity("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )


def test_judge_counts_of_a_local_run_reach_the_counts_file_shape(tmp_path, model_dir):
    generations = pl.DataFrame({
        "question_id": ["q1", "q1", "q2"], "category": ["work"] * 3, "sample": [0, 1, 0],
        "question": ["Remote work?"] * 3, "response": ["Yes.", "No.", "Yes."],
    })
    template = "Q: {question}\nA: {response}\nTopic: {topic}\nStance:"
    runs = []
    for _ in range(2):
        judge = backend(tmp_path, model_dir)
        judgments, counts = judge_generations(generations, {"work": "remote work"}, template,
                                              judge)
        counts.update(backend_counts(judge))  # what workflow_scripts/judge.py writes
        runs.append((judgments, counts))
    (first, first_counts), (second, second_counts) = runs
    assert first.fill_nan(None).equals(second.fill_nan(None))
    # A random tiny model rarely ranks a label first: each row is a reading summing to 1,
    # or unreadable with NaN probabilities, and counted as such.
    sums = first.select(pl.sum_horizontal("p_support", "p_neutral", "p_oppose")).to_series()
    for readable, total in zip(first["readable"], sums, strict=True):
        assert total == pytest.approx(1.0) if readable else total != total  # NaN
    assert first_counts["unreadable"] == (~first["readable"]).sum()
    assert first_counts["health"]["answers"] == 3
    assert first_counts["judged"] == 3 and first_counts["requests_sent"] == 2
    assert second_counts["cache_hits"] == 3 and second_counts["requests_sent"] == 0


def test_length_sorted_windows_sort_longest_first_within_each_window_only():
    requests = [(f"k{i}", "x" * n) for i, n in enumerate([1, 5, 3, 3, 9, 2, 7])]
    ordered = length_sorted_windows(requests, window=3)
    assert [key for key, _ in ordered] == ["k1", "k2", "k0", "k4", "k3", "k5", "k6"]
    assert sorted(ordered) == sorted(requests)  # nothing lost or repeated


def test_batches_of_similar_length_reach_the_model_and_answers_keep_prompt_order(
    tmp_path, model_dir
):
    lengths = [3, 40, 5, 38, 4, 41, 6, 39]  # alternating: in prompt order every batch pads
    prompts = [" ".join(["word"] * n) + f" ({i})" for i, n in enumerate(lengths)]
    judge = backend(tmp_path, model_dir)
    sent = []
    score = judge.scorer.score
    judge.scorer.score = lambda texts: sent.append(list(texts)) or score(texts)
    tops = judge_all(judge, prompts)

    rendered = [judge.scorer.render(p) for p in prompts]
    sent_prompts = [rendered.index(text) for batch in sent for text in batch]
    assert sent_prompts == [5, 1, 7, 3, 6, 2, 4, 0]  # longest first, in batches of 4
    # Each answer belongs to its own prompt: it equals that prompt scored alone.
    alone = backend(tmp_path, model_dir, cache=str(tmp_path / "alone.sqlite"), batch_size=1)
    for got, want in zip(tops, judge_all(alone, prompts), strict=True):
        assert got.keys() == want.keys()
        assert max(abs(got[t] - want[t]) for t in got) < 1e-4
