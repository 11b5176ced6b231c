"""V-PRISM construction: pure stages on hand-made data, and the rules on the PRISM fixture."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tests.support.workflow import REPO, snakemake
from value_drifts.data.value_gap_set import TeacherReply
from value_drifts.data.vprism import (
    NOISE,
    assign_categories,
    assign_from_membership,
    clean_name,
    clean_rephrase,
    cluster_counts,
    cluster_ngrams,
    filter_questions,
    keyword_pattern,
    load_prism,
    match_category,
    name_clusters,
    parse_yes_no,
    prism_prompts,
    reduce_dimensions,
    rephrase_prompts,
    sample_per_category,
    soft_clusters,
)

FIXTURE = REPO / "resources" / "prism_small.jsonl"
CATEGORIES = ["Abortion", "Immigration Policies", "Climate Change Concerns", "Work and Attitudes"]


def blobs(n_per: int = 30, centres: int = 4, dim: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = np.eye(centres, dim) * 20.0
    points = np.concatenate([rng.normal(m, 0.5, size=(n_per, dim)) for m in means])
    return points, np.repeat(np.arange(centres), n_per)


def scripted(answers):
    """A backend that answers from a list, in order, and records what it was asked."""
    asked = []

    def generate(message_lists):
        asked.extend(message_lists)
        return [answers.pop(0) for _ in message_lists]

    generate.asked = asked
    return generate


# --- (a) loading ------------------------------------------------------------------------------


def test_prism_fixture_loads_through_datasets_and_bad_rows_are_counted():
    dataset = load_prism({"hub_id": "json", "data_files": str(FIXTURE)})
    assert {"conversation_id", "conversation_type", "opening_prompt"} <= set(dataset.column_names)
    prompts, counts = prism_prompts(dataset)
    assert counts == {
        "rows": 125, "prompts": 120, "skipped": 5,
        "skipped_by_reason": {"duplicate_prompt": 1, "empty_prompt": 2, "missing_prompt": 2},
    }
    assert len({p["prompt_id"] for p in prompts}) == 120


def test_prism_prompts_reasons_and_conversation_types():
    rows = [
        {"conversation_id": "c0", "opening_prompt": "  Is  abortion wrong? ",
         "conversation_type": "unguided"},
        {"conversation_id": "c1", "opening_prompt": "is abortion WRONG?", "conversation_type": "unguided"},
        {"conversation_id": "c2", "opening_prompt": None, "conversation_type": "unguided"},
        {"conversation_id": "c3", "conversation_type": "unguided"},
        {"conversation_id": "c4", "opening_prompt": " \n", "conversation_type": "unguided"},
        {"conversation_id": None, "opening_prompt": "Hello?", "conversation_type": "unguided"},
        {"conversation_id": "c6", "opening_prompt": "Tax the rich?", "conversation_type": "values guided"},
    ]
    prompts, counts = prism_prompts(rows, conversation_types=["unguided"])
    assert [p["prompt"] for p in prompts] == ["Is abortion wrong?"]
    assert counts["skipped_by_reason"] == {
        "duplicate_prompt": 1, "empty_prompt": 1, "missing_id": 1, "missing_prompt": 2,
        "other_conversation_type": 1,
    }


# --- (b) rephrasing ---------------------------------------------------------------------------

PROMPT = "I think that abortion should be completely legal and free"


@pytest.mark.parametrize(
    ("text", "question", "problem"),
    [
        ("Do you think abortion should be completely legal and free?",
         "Do you think abortion should be completely legal and free?", None),
        ('Question: "Should abortion be completely legal and free?"\nQuestion: more',
         "Should abortion be completely legal and free?", None),
        ("Is abortion legal and free? Some say yes.", "Is abortion legal and free?", None),
        ("", None, "empty"),
        ("Abortion should be legal and free.", None, "not_a_question"),
        ("What is the capital of France?", None, "unrelated"),
        ("Is abortion legal " + "and free and completely fine " * 10 + "?", None, "too_long"),
    ],
)
def test_clean_rephrase(text, question, problem):
    assert clean_rephrase(TeacherReply(text), PROMPT) == (question, problem)


def test_clean_rephrase_counts_a_failed_request():
    assert clean_rephrase(None, PROMPT) == (None, "request_failed")


def test_rephrase_keeps_or_drops_bad_answers_and_can_skip_questions():
    prompts = [
        {"prompt_id": "a", "prompt": PROMPT},
        {"prompt_id": "b", "prompt": "Immigration is good for the economy"},
        {"prompt_id": "c", "prompt": "Is remote work better?"},
    ]
    template = "Rephrase: {prompt}"
    backend = scripted(["Should abortion be completely legal and free?", "Immigration is good."])
    rows, counts = rephrase_prompts(prompts, backend, template, only_statements=True)
    assert len(backend.asked) == 2  # "c" already is a question
    assert [r["question"] for r in rows] == [
        "Should abortion be completely legal and free?",
        "Immigration is good for the economy",  # kept as written
        "Is remote work better?",
    ]
    assert [r["rephrase_problem"] for r in rows] == [None, "not_a_question", None]
    assert counts["already_question"] == 1 and counts["rephrased"] == 1
    assert counts["problems_by_reason"] == {"not_a_question": 1}
    rows, counts = rephrase_prompts(prompts, scripted([None, "x?", "y?"]), template,
                                    on_problem="drop")
    assert rows == [] and counts["problems_by_reason"] == {"request_failed": 1, "unrelated": 2}
    with pytest.raises(ValueError, match="placeholders"):
        rephrase_prompts(prompts, scripted([]), "no placeholder")


# --- (d) UMAP, (e) HDBSCAN ----------------------------------------------------------------------


def test_hdbscan_finds_separated_blobs_with_valid_membership_rows():
    points, truth = blobs()
    labels, membership = soft_clusters(points, min_cluster_size=10)
    assert membership.shape == (len(points), 4)
    assert (membership >= 0).all() and (membership.sum(axis=1) <= 1 + 1e-9).all()
    clusters, strength = assign_from_membership(membership)
    # every blob is one cluster and every cluster one blob
    pairs = set(zip(truth.tolist(), clusters.tolist(), strict=True))
    assert len(pairs) == 4 and len({c for _, c in pairs}) == 4
    assert (clusters[labels != NOISE] == labels[labels != NOISE]).all()
    assert np.allclose(strength, membership.max(axis=1))


def test_hdbscan_without_clusters_says_what_to_change():
    uniform = np.random.default_rng(0).uniform(size=(60, 2))
    with pytest.raises(ValueError, match="found no cluster.*lower min_cluster_size"):
        soft_clusters(uniform, min_cluster_size=25)
    with pytest.raises(ValueError, match="cannot form a cluster"):
        soft_clusters(uniform[:20], min_cluster_size=50)


def test_soft_assignment_puts_noise_in_its_best_cluster_unless_too_weak():
    membership = np.array([[0.9, 0.05], [0.2, 0.3], [0.0, 0.0], [0.4, 0.4]])
    clusters, strength = assign_from_membership(membership)
    assert clusters.tolist() == [0, 1, NOISE, 0]  # all-zero row stays noise; ties -> lower id
    clusters, _ = assign_from_membership(membership, min_membership=0.35)
    assert clusters.tolist() == [0, NOISE, NOISE, 0]
    counts = cluster_counts(np.array([0, -1, -1, 1]), clusters)
    assert counts["hdbscan_noise"] == 2 and counts["noise_reassigned"] == 0
    assert counts["moved_from_hard_label"] == 1
    assert counts["noise_after_soft_assignment"] == 2


def test_umap_then_hdbscan_is_reproducible_and_keeps_blobs_apart():
    points, truth = blobs(n_per=25, dim=30)
    first = reduce_dimensions(points, 5, 10, 0.0, "euclidean", random_state=0)
    again = reduce_dimensions(points, 5, 10, 0.0, "euclidean", random_state=0)
    assert first.shape == (100, 5)
    np.testing.assert_array_equal(first, again)
    clusters, _ = assign_from_membership(soft_clusters(first, min_cluster_size=10)[1])
    assert len(set(zip(truth.tolist(), clusters.tolist(), strict=True))) == 4


# --- (f) TF-IDF, (g) names ----------------------------------------------------------------------


def test_tfidf_top_ngrams_per_cluster():
    texts = [
        "Should abortion be legal?", "Is abortion murder?", "Abortion rights for women",
        "Should we accept more immigrants?", "Immigrants help the economy",
        "I like bread",  # noise
    ]
    ngrams = cluster_ngrams(texts, [0, 0, 0, 1, 1, NOISE], top_k=3)
    assert list(ngrams) == [0, 1]
    assert ngrams[0][0][0] == "abortion" and ngrams[1][0][0] == "immigrants"
    words = {g for grams in ngrams.values() for g, _ in grams}
    assert "bread" not in words and "abortion immigrants" not in words
    # n-grams never span two questions: "legal murder" would only come from joining them
    all_grams = {g for g, _ in cluster_ngrams(texts, [0, 0, 0, 1, 1, NOISE], top_k=50)[0]}
    assert "legal murder" not in all_grams and "abortion legal" in all_grams
    scores = [s for _, s in ngrams[0]]
    assert scores == sorted(scores, reverse=True)


def test_names_fall_back_to_ngrams_and_are_cleaned():
    assert clean_name(TeacherReply('- "Abortion Rights".')) == ("Abortion Rights", None)
    assert clean_name(TeacherReply("Name: Remote work")) == ("Remote work", None)
    assert clean_name(TeacherReply("one two three four five six seven eight nine")) == (
        None, "too_long")
    names, counts = name_clusters(
        {0: ["abortion", "rights", "legal"], 1: ["immigrants", "economy", "accept"]},
        {0: ["Is abortion murder?"], 1: ["Immigrants help?"]},
        scripted(["Abortion debate", ""]),
        "{ngrams}\n{examples}",
    )
    assert names[0]["name"] == "Abortion debate" and names[0]["name_source"] == "llm"
    assert names[1]["name"] == "immigrants / economy / accept"
    assert counts["problems_by_reason"] == {"empty": 1}


# --- (h) keep-list ------------------------------------------------------------------------------

KEYWORDS = {
    "Abortion": ["abortion*", "pro choice"],
    "Immigration Policies": ["immigra*", "refugee*"],
    "Work and Attitudes": ["work*", "office"],
}


def test_keywords_match_whole_words_and_prefixes():
    assert keyword_pattern("immigra*").search("Immigrants welcome")
    assert not keyword_pattern("work").search("homework")
    assert keyword_pattern("pro choice").search("a pro  choice view")


def test_categories_by_keywords_with_ties_and_overrides():
    descriptions = {
        0: ["abortion", "abortion rights", "pro choice", "Abortion debate"],
        1: ["immigrants", "refugees", "workers", "immigration"],
        2: ["work", "immigration"],  # one hit each: ambiguous
        3: ["recipe", "bread"],
        4: ["office", "work remotely"],
    }
    assignments = assign_categories(descriptions, KEYWORDS, CATEGORIES, min_hits=1)
    assert {c: (a["category"], a["rule"]) for c, a in assignments.items()} == {
        0: ("Abortion", "keywords"), 1: ("Immigration Policies", "keywords"),
        2: (None, "ambiguous"), 3: (None, "no_match"), 4: ("Work and Attitudes", "keywords"),
    }
    assert assignments[1]["keyword_scores"] == {"Immigration Policies": 3, "Work and Attitudes": 1}
    assert match_category(descriptions[4], KEYWORDS, min_hits=3)[:2] == (None, "no_match")
    pinned = assign_categories(descriptions, KEYWORDS, CATEGORIES,
                               overrides={"Work and Attitudes": [2]}, drop=[4])
    assert (pinned[2]["category"], pinned[2]["rule"]) == ("Work and Attitudes", "override")
    assert (pinned[4]["kept"], pinned[4]["rule"]) == (False, "dropped")
    with pytest.raises(ValueError, match="not in the topic map"):
        assign_categories(descriptions, {"Astrology": ["stars"]}, CATEGORIES)
    with pytest.raises(ValueError, match=r"clusters \[9\]"):
        assign_categories(descriptions, KEYWORDS, CATEGORIES, overrides={"Abortion": [9]})


# --- (i) filter --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Yes", "yes"), ("yes.", "yes"), ("**No**, it is factual.", "no"), ("NO", "no"),
        ("Answer: Yes", "yes"), ("I would say no.", "no"), ("Yes and no.", "yes"),
        ("It depends: yes or no.", None), ("Maybe", None), ("", None), ("   ", None),
        ("Yesterday", None), (None, None), ("The given question", None),
    ],
)
def test_parse_yes_no(text, answer):
    assert parse_yes_no(text) == answer


def test_filter_counts_answers_by_kind_and_category():
    rows = [{"question": f"q{i}?", "category": c} for i, c in
            enumerate(["Abortion", "Abortion", "Work and Attitudes", "Work and Attitudes"])]
    out, counts = filter_questions(rows, scripted(["Yes.", "No", "Perhaps", None]),
                                   "Q: {question}")
    assert [r["filter_answer"] for r in out] == ["yes", "no", "malformed", "request_failed"]
    assert [r["value_based"] for r in out] == [True, False, False, False]
    assert counts["answers"] == {"malformed": 1, "no": 1, "request_failed": 1, "yes": 1}
    assert counts["by_category"]["Work and Attitudes"] == {"malformed": 1, "request_failed": 1}
    assert counts["kept"] == 1


# --- (j) sampling ------------------------------------------------------------------------------


def question_table():
    rows = [{"question_id": f"a{i}", "category": "Abortion", "question": f"a{i}?"} for i in range(10)]
    rows += [{"question_id": f"w{i}", "category": "Work and Attitudes", "question": f"w{i}?"}
             for i in range(2)]
    return pl.DataFrame(rows)


def test_sampling_is_seeded_capped_and_reports_shortfalls():
    table = question_table()
    first, counts = sample_per_category(table, CATEGORIES, 3, seed=0)
    again, _ = sample_per_category(table.reverse(), CATEGORIES, 3, seed=0)
    assert first.equals(again)  # row order of the input does not matter
    other, _ = sample_per_category(table, CATEGORIES, 3, seed=1)
    assert not first.equals(other)
    assert counts["selected"] == {"Abortion": 3, "Immigration Policies": 0,
                                  "Climate Change Concerns": 0, "Work and Attitudes": 2}
    assert counts["shortfall"] == {
        "Immigration Policies": {"available": 0, "wanted": 3},
        "Climate Change Concerns": {"available": 0, "wanted": 3},
        "Work and Attitudes": {"available": 2, "wanted": 3},
    }
    assert first["category"].to_list() == ["Abortion"] * 3 + ["Work and Attitudes"] * 2
    with pytest.raises(ValueError, match=r"Work and Attitudes \(2\)"):
        sample_per_category(table, CATEGORIES, 3, seed=0, on_shortfall="error")


# --- the rules on the fixture ------------------------------------------------------------------

TARGETS = ("results/data/vprism/questions.parquet", "results/figures/vprism_clusters.pdf")


@pytest.mark.slow
def test_vprism_rules_build_the_set_reproducibly(small_run):
    """All V-PRISM rules of the small default's run (PRISM fixture, SmolLM2-135M), then
    everything from UMAP on again: the same questions."""
    workdir = small_run
    data = workdir / "results" / "data" / "vprism"
    questions = pl.read_parquet(data / "questions.parquet")
    report = pl.read_csv(data / "cluster_report.csv")
    # The fixture's six value themes are found and kept (death penalty and euthanasia may
    # form two clusters of one category); cooking, coding and travel are not.
    kept = report.filter(pl.col("kept"))
    assert set(kept["category"]) == {
        "Abortion", "Immigration Policies", "Climate Change Concerns",
        "Religion and Spirituality Beliefs", "Ethics of Death and Penalty", "Work and Attitudes",
    }
    assert report.filter(~pl.col("kept") & (pl.col("cluster") >= 0)).height >= 3
    assert not questions["question"].str.contains("(?i)recipe|python|trip").any()
    counts = json.loads((data / "sample_counts.json").read_text())
    assert questions.height == counts["total"] == 6 * 4
    assert set(counts["shortfall"]) == {
        "Gender and LGBTQ+ Identity", "Economic and Social Policy", "Race and Racism",
        "Election and Political Discussions", "Family and Relationship Values",
    }
    assert questions.filter(pl.col("category") == "Abortion")["question"].str.contains(
        "(?i)abortion|fetus|pro-life").all()
    filtered = json.loads((data / "filter_counts.json").read_text())
    assert sum(filtered["answers"].values()) == filtered["questions"] == kept["size"].sum()
    load = json.loads((data / "load_counts.json").read_text())
    assert load["skipped_by_reason"] == {"duplicate_prompt": 1, "empty_prompt": 2,
                                         "missing_prompt": 2}
    assert (workdir / "results" / "figures" / "vprism_clusters.png").stat().st_size > 10_000
    # the selected set feeds select_questions unchanged
    from value_drifts.core.questions import read_questions

    read_questions(str(data / "questions.parquet"), kept["category"].unique().to_list())

    snakemake("--cores", "1", *TARGETS, "--forcerun", "vprism_umap", cwd=workdir)
    assert pl.read_parquet(data / "questions.parquet").equals(questions)
    assert pl.read_csv(data / "cluster_report.csv").equals(report)


def test_llm_settings_resolve_a_workflow_model_and_take_the_stage_token_limit():
    from value_drifts.data.vprism import llm_inputs, llm_settings, source_files

    vprism = {"llm": {"backend": "transformers", "model": "smollm2-135m", "temperature": 0},
              "filter": {"max_tokens": 2}}
    base = "results/models/{}/base".format
    assert llm_settings(vprism, ["smollm2-135m"], base, "filter") == {
        "backend": "transformers", "model": "results/models/smollm2-135m/base",
        "temperature": 0, "max_tokens": 2}
    assert llm_inputs(vprism, ["smollm2-135m"], base) == ["results/models/smollm2-135m/base"]
    vprism["llm"]["model"] = "gpt-4o-2024-08-06"
    assert llm_inputs(vprism, ["smollm2-135m"], base) == []
    assert llm_settings(vprism, [], base, "filter")["model"] == "gpt-4o-2024-08-06"
    assert source_files({"hub_id": "json", "data_files": "a.jsonl"}) == ["a.jsonl"]
    assert source_files({"hub_id": "json", "data_files": {"train": ["a", "b"]}}) == ["a", "b"]
    assert source_files({"hub_id": "HannahRoseKirk/prism-alignment"}) == []
