"""The small judge's adaptation data and the labelled set that scores it are written apart:
no labelled answer shares a run of 8 words with any adaptation item."""

import re
from collections import Counter

import yaml

from tests.support.workflow import REPO
from value_drifts.data.synthetic import fill_template, labelled_stance_items
from value_drifts.judge.agreement import load_labelled_set

SPEC = REPO / "config/synthetic/judge_training.yaml"
LABELLED = REPO / "resources/stance_agreement.yaml"
RUN = 8


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9+']+", text.lower())


def _runs(text: str, n: int = RUN) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _template_strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _template_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _template_strings(value)


def _adaptation_texts() -> list[str]:
    spec = yaml.safe_load(SPEC.read_text())
    items = labelled_stance_items(spec, seed=0)
    texts = [item["response"] for item in items] + [item["question"] for item in items]
    # every template part with every topic too, so parts a seeded sample skipped count
    parts = [s for key, value in spec.items() if key != "topics" for s in _template_strings(value)]
    texts += [fill_template(part, topic) for part in parts for topic in spec["topics"]]
    return texts


def test_no_labelled_answer_shares_an_8_word_run_with_the_adaptation_data():
    adaptation = set().union(*map(_runs, _adaptation_texts()))
    labelled, _ = load_labelled_set(LABELLED)
    shared = {
        row["question_id"]: sorted(" ".join(run) for run in _runs(row["response"]) & adaptation)
        for row in labelled.iter_rows(named=True)
    }
    assert {qid: runs for qid, runs in shared.items() if runs} == {}


def test_the_check_finds_a_shared_run():
    adaptation = set().union(*map(_runs, _adaptation_texts()))
    copied = "Well, honestly: " + yaml.safe_load(SPEC.read_text())["answers"]["support"][2]
    assert _runs(fill_template(copied, "nuclear power")) & adaptation


def test_labelled_set_has_paper_style_answers_balanced_over_stances():
    items, _ = load_labelled_set(LABELLED)
    assert items.height >= 90
    counts = Counter(items["stance"])
    assert counts["support"] == counts["neutral"] == counts["oppose"]
    assert items["category"].n_unique() == 11
    kinds = set(items["kind"])
    assert {"ai_disclaimer_lean", "both_sides_lean", "reframing", "refusal"} <= kinds
    assert items["question_id"].is_unique().all()
    # several sentences for the paper-style kinds
    paper_style = items.filter(items["kind"].is_in(["ai_disclaimer_lean", "both_sides_lean"]))
    sentences = [len(re.findall(r"[.!?](\s|$)", text)) for text in paper_style["response"]]
    assert min(sentences) >= 2
