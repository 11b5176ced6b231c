import numpy as np
import polars as pl
import pytest

from value_drifts.analysis.aggregate import planted_effect, question_drifts


def _values(drift_by_topic, n=6, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for topic, drift in drift_by_topic.items():
        for q in range(n):
            start = 0.3 + rng.uniform(-0.1, 0.1)
            for step, p in ((0, start), (4, start + drift + rng.normal(0, noise)), (2, start)):
                rows.append({"step": step, "question_id": f"{topic}-{q}", "category": topic,
                             "p_support": p, "p_neutral": 0.0, "p_oppose": 0.0})
    return pl.DataFrame(rows)

def test_planted_effect_recovers_a_planted_rise_and_its_absence():
    up = _values({"A": 0.4, "B": 0.2, "C": 0.3})
    mean, low, high = planted_effect(up, ["A", "B", "C"], "support")
    assert mean == pytest.approx(0.3, abs=0.03) and 0 < low < mean < high
    flat = _values({"A": 0.0, "B": 0.0, "C": 0.0}, seed=1)
    mean, low, high = planted_effect(flat, ["A", "B", "C"], "support")
    assert abs(mean) < 0.05 and low < 0 < high
    # against a baseline that rose as much, nothing is left
    mean, low, high = planted_effect(up, ["A", "B", "C"], "support", baseline=up)
    assert mean == pytest.approx(0.0) and low == pytest.approx(0.0) and high == pytest.approx(0.0)
    assert question_drifts(up, ["A"], "support").height == 6
    # a question with no readable answer at an end is left out, not read as a number
    unreadable = up.with_columns(
        pl.when((pl.col("question_id") == "A-0") & (pl.col("step") == 4)).then(float("nan"))
        .otherwise(pl.col("p_support")).alias("p_support"))
    assert question_drifts(unreadable, ["A"], "support")["question_id"].to_list() == [
        f"A-{q}" for q in range(1, 6)]
    assert np.isfinite(planted_effect(unreadable, ["A", "B", "C"], "support")).all()
    with pytest.raises(ValueError, match="two questions"):
        planted_effect(_values({"A": 0.1}, n=1), ["A"], "support")


def test_questions_of_the_chosen_categories_only():
    import yaml

    from tests.support.workflow import REPO
    from value_drifts.core.questions import read_questions, sample_questions

    topics = yaml.safe_load((REPO / "config/topics.yaml").read_text())
    questions = read_questions(str(REPO / "resources/vprism_small.csv"), list(topics))
    assert questions["category"].n_unique() == 11
    chosen = sample_questions(questions, None, 0, ["Abortion", "Work and Attitudes"])
    assert dict(chosen.group_by("category").len().iter_rows()) == {
        "Abortion": 20, "Work and Attitudes": 3}
    assert sample_questions(questions, 2, 0, ["Abortion"]).height == 2
    with pytest.raises(ValueError, match="no question in categories"):
        sample_questions(questions, None, 0, ["Abortion", "Astrology"])
    # the small default evaluates its three planted topics and two controls
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    small = sample_questions(questions, config["questions"].get("per_category"),
                             config["seed"], config["questions"]["categories"])
    assert small.height == 66
