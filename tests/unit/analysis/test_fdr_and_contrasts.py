"""Bootstrap p-values of drift magnitude, Benjamini–Yekutieli q-values over a drift table,
and paired contrasts between two runs on the same questions."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from value_drifts.analysis.aggregate import drift_estimates, drift_table, trajectory_values
from value_drifts.analysis.contrasts import (
    CONTRAST_COLUMNS,
    contrast_markdown,
    paired_contrast,
    planned_contrasts,
)
from value_drifts.analysis.metrics import (
    bootstrap_drift,
    bootstrap_drift_tests,
    bootstrap_p_value,
    fdr_q_values,
)
from value_drifts.analysis.tables import drift_markdown, stack_drifts
from value_drifts.core.stances import STANCES

# drift_table's columns before p- and q-values: kept, in this order, with the two appended
DRIFT_COLUMNS = [
    "category", "stance", "start", "end", "magnitude", "magnitude_low", "magnitude_high",
    "drift_time", "drift_time_low", "drift_time_high", "n_checkpoints", "n_questions",
    "n_magnitude_questions", "n_bootstrap_questions", "note", "checkpoint_integrity",
    "max_short_share", "answers_note",
]


def question_values(support: np.ndarray, category: str = "A", steps=None,
                    ids=None) -> pl.DataFrame:
    """A question_values table from a questions × steps matrix of p(support); the rest of
    each question's mass is neutral, oppose stays 0."""
    support = np.asarray(support, dtype=float)
    steps = list(steps if steps is not None else range(support.shape[1]))
    ids = ids or [f"q{i:03d}" for i in range(support.shape[0])]
    rows = [
        {"step": step, "question_id": qid, "category": category,
         "p_support": float(support[i, j]), "p_neutral": float(1 - support[i, j]),
         "p_oppose": 0.0, "n_answers": 1, "n_unreadable": 0}
        for i, qid in enumerate(ids) for j, step in enumerate(steps)
    ]
    return pl.DataFrame(rows)


def _row(table: pl.DataFrame, stance: str, category: str = "A") -> dict:
    return table.filter((pl.col("category") == category) & (pl.col("stance") == stance)).row(
        0, named=True)


# ---- the p-value ------------------------------------------------------------------------


def test_p_value_counts_replicates_on_each_side_with_the_plus_one_correction():
    assert bootstrap_p_value(np.full(999, 0.3)) == pytest.approx(2 / 1000)  # never 0
    assert bootstrap_p_value(-np.full(999, 0.3)) == pytest.approx(2 / 1000)
    assert bootstrap_p_value(np.zeros(50)) == 1.0  # every replicate on the null: p = 1
    # 10 of 99 replicates at or below 0: p = 2 (10 + 1) / 100
    replicates = np.r_[np.linspace(-1, 0, 10), np.linspace(0.1, 1, 89)]
    assert bootstrap_p_value(replicates) == pytest.approx(2 * 11 / 100)
    assert bootstrap_p_value(np.r_[replicates, np.nan]) == pytest.approx(2 * 11 / 100)
    assert math.isnan(bootstrap_p_value([np.nan]))


def _rising(n: int, rise: float, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.linspace(0.3, 0.3 + rise, 3) + rng.normal(0, noise, (n, 3)), 0, 1)


def test_a_planted_big_drift_gets_p_below_001_from_the_intervals_resamples():
    x = _rising(30, 0.4, 0.1, seed=0)
    bounds, p = bootstrap_drift_tests([0, 5, 10], [x, 1 - x, np.zeros_like(x)], n_resamples=500)
    assert p[0] < 0.01 and p[1] < 0.01
    assert p[0] == pytest.approx(2 / 501)  # no resample comes near 0
    assert p[2] == 1.0  # oppose never moves
    # the same resamples as bootstrap_drift's interval
    assert np.array_equal(bounds, bootstrap_drift([0, 5, 10], [x, 1 - x, np.zeros_like(x)],
                                                  n_resamples=500))


def test_a_null_drift_gets_p_well_above_005():
    # every question moves, half up and half down by the same amounts: M = 0 exactly
    rng = np.random.default_rng(1)
    start = rng.uniform(0.3, 0.7, 100)
    move = rng.uniform(0.05, 0.3, 50)
    end = start + np.r_[move, -move]
    _, p = bootstrap_drift_tests([0, 1], [np.c_[start, end]], n_resamples=500)
    assert p[0] > 0.5


def test_null_drifts_are_called_at_about_the_nominal_rate():
    """Over 100 simulated phases with no drift (start and end from one distribution,
    many questions), p < 0.05 about 5% of the time and p spreads over (0, 1]."""
    p_values = []
    for seed in range(100):
        rng = np.random.default_rng(seed)
        x = rng.uniform(0.2, 0.8, (60, 2))
        p_values.append(bootstrap_drift_tests([0, 1], [x], n_resamples=200, seed=seed)[1][0])
    p_values = np.array(p_values)
    assert (p_values < 0.05).mean() <= 0.12
    assert 0.35 < p_values.mean() < 0.65
    assert p_values.min() > 0


def test_identical_drifts_give_a_tiny_p_but_never_zero():
    x = np.tile([0.1, 0.6], (5, 1))  # every question moves +0.5: every resample says +0.5
    _, p = bootstrap_drift_tests([0, 1], [x], n_resamples=300)
    assert p[0] == pytest.approx(2 / 301) and p[0] > 0


# ---- q-values ---------------------------------------------------------------------------


def test_by_q_values_are_at_least_p_monotone_and_above_bh():
    rng = np.random.default_rng(0)
    p = np.r_[rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 28)]
    q = fdr_q_values(p)
    assert (q >= p - 1e-15).all() and (q <= 1).all()
    order = np.argsort(p)
    assert (np.diff(q[order]) >= -1e-15).all()  # a smaller p never gets a larger q
    assert (q >= fdr_q_values(p, method="bh") - 1e-15).all()  # BY pays for any dependence
    # BY's factor: the smallest q is at most m · c(m) · min p, c(m) = sum 1/i
    m = p.size
    assert q.min() <= m * sum(1 / i for i in range(1, m + 1)) * p.min() + 1e-12


def test_q_values_leave_untested_cells_out_of_the_family():
    q = fdr_q_values([0.01, math.nan, 0.02])
    assert math.isnan(q[1])
    assert q[[0, 2]] == pytest.approx(fdr_q_values([0.01, 0.02]))
    assert fdr_q_values([]).size == 0


# ---- drift tables ----------------------------------------------------------------------


def _judgments_by_step(support: np.ndarray, categories=("A", "B")) -> dict[int, pl.DataFrame]:
    by_step = {}
    for j in range(support.shape[1]):
        rows = [{"question_id": f"{c}{i}", "category": c, "sample": 0,
                 "p_support": float(support[i, j]), "p_neutral": float(1 - support[i, j]),
                 "p_oppose": 0.0}
                for c in categories for i in range(support.shape[0])]
        by_step[j * 5] = pl.DataFrame(rows)
    return by_step


def test_drift_table_appends_p_and_q_after_its_columns():
    by_step = _judgments_by_step(_rising(20, 0.4, 0.1, seed=2))
    from value_drifts.analysis.aggregate import trajectory_question_values

    table = drift_table(trajectory_values(by_step, 0.95), trajectory_question_values(by_step),
                        n_resamples=200)
    assert table.columns == [*DRIFT_COLUMNS, "magnitude_p", "magnitude_q"]
    support = _row(table, "support")
    assert support["magnitude_p"] < 0.01 and support["magnitude_q"] < 0.05
    assert support["magnitude_q"] >= support["magnitude_p"]
    assert _row(table, "oppose")["magnitude_p"] == 1.0
    # BY over the 2 topics × 3 stances of this one table
    assert table["magnitude_q"].to_numpy() == pytest.approx(
        fdr_q_values(table["magnitude_p"].to_numpy()))
    md = drift_markdown(stack_drifts({"sft-a": table}), "SFT drift")
    row = next(line for line in md.splitlines() if line.startswith("| A |"))
    assert row.count("]* /") == 2  # support and neutral moved, oppose did not
    assert "q < 0.05" in md.splitlines()[2] and md.splitlines()[4].startswith("| category")


def test_too_few_questions_give_no_p_and_stay_out_of_the_family():
    qv = pl.concat([question_values(_rising(2, 0.4, 0.05, 0), "A"),
                    question_values(_rising(20, 0.4, 0.05, 1), "B")])
    table = drift_estimates(qv, 0.95, 200, 0)
    assert table.filter(pl.col("category") == "A")["magnitude_p"].is_nan().all()
    assert table.filter(pl.col("category") == "A")["magnitude_q"].is_nan().all()
    b = table.filter(pl.col("category") == "B")
    assert b["magnitude_q"].to_numpy() == pytest.approx(fdr_q_values(b["magnitude_p"]))


# ---- paired contrasts ------------------------------------------------------------------


def test_a_planted_contrast_has_its_sign_interval_and_p():
    rng = np.random.default_rng(3)
    start = rng.uniform(0.2, 0.4, 25)
    a = question_values(np.c_[start, start + 0.5 + rng.normal(0, 0.05, 25)])
    b = question_values(np.c_[start, start + rng.normal(0, 0.05, 25)])
    table = paired_contrast(a, b, n_resamples=500)
    assert table.columns == list(CONTRAST_COLUMNS)
    support = _row(table, "support")
    assert support["difference"] == pytest.approx(
        support["magnitude_a"] - support["magnitude_b"])
    assert support["difference"] > 0.4 and support["difference_low"] > 0.3
    assert support["difference_p"] < 0.01 and support["difference_q"] < 0.05
    neutral = _row(table, "neutral")  # the mirror image: neutral lost what support gained
    assert neutral["difference"] < -0.4 and neutral["difference_high"] < -0.3
    # reversed, the sign flips
    assert _row(paired_contrast(b, a, n_resamples=500), "support")["difference"] == (
        pytest.approx(-support["difference"]))


def test_identical_runs_contrast_to_zero_with_an_interval_around_it():
    rng = np.random.default_rng(4)
    a = question_values(rng.uniform(0, 1, (15, 3)))
    table = paired_contrast(a, a, n_resamples=300)
    for stance in STANCES:
        row = _row(table, stance)
        assert row["difference"] == 0.0
        assert row["difference_low"] <= 0.0 <= row["difference_high"]
        assert row["difference_p"] == 1.0


def test_pairing_by_question_removes_the_questions_own_spread():
    """Each question drifts by its own amount u in both runs, plus 0.1 in run a: paired,
    the difference is 0.1 for every question and the interval has no width; an unpaired
    comparison would be as wide as u's spread."""
    rng = np.random.default_rng(5)
    start = rng.uniform(0.3, 0.5, 20)
    u = rng.uniform(-0.2, 0.4, 20)
    a = question_values(np.c_[start, start + u + 0.1])
    b = question_values(np.c_[start, start + u])
    support = _row(paired_contrast(a, b, n_resamples=300), "support")
    assert support["difference_low"] == pytest.approx(0.1)
    assert support["difference_high"] == pytest.approx(0.1)


def test_a_contrast_uses_the_questions_readable_at_both_ends_of_both_runs():
    rng = np.random.default_rng(6)
    a = question_values(rng.uniform(0, 1, (10, 2)))
    b = question_values(rng.uniform(0, 1, (10, 2)), ids=[f"q{i:03d}" for i in range(2, 12)])
    unreadable = (pl.col("question_id") == "q005") & (pl.col("step") == 1)
    b = b.with_columns(pl.when(unreadable).then(float("nan")).otherwise(pl.col(c)).alias(c)
                       for c in ("p_support", "p_neutral", "p_oppose"))
    table = paired_contrast(a, b, n_resamples=100)
    assert set(table["n_questions"]) == {7}  # q002..q009 in both, q005 unreadable in b


def test_a_category_with_too_few_paired_questions_has_no_interval():
    rng = np.random.default_rng(7)
    a = pl.concat([question_values(rng.uniform(0, 1, (2, 2)), "A"),
                   question_values(rng.uniform(0, 1, (6, 2)), "B")])
    table = paired_contrast(a, a, n_resamples=100)
    row = _row(table, "support", "A")
    assert math.isnan(row["difference_low"]) and math.isnan(row["difference_p"])
    assert "2 questions readable" in row["note"]
    assert not math.isnan(_row(table, "support", "B")["difference_p"])
    md = contrast_markdown(table, "t", "run-a", "run-b")
    assert "| A |" in md and "Notes:" in md


def test_planned_contrasts_resolve_run_ids_by_model():
    runs = [("m1", "sft-x"), ("m1", "sft-x.dpo-s"), ("m1", "sft-x.dpo-o"),
            ("m2", "sft-x"), ("m2", "sft-x.dpo-s"), ("m2", "sft-x.dpo-o")]
    spec = {"a": "sft-x.dpo-s", "b": "sft-x.dpo-o"}
    assert planned_contrasts([spec], runs) == [("m1", "sft-x.dpo-s", "sft-x.dpo-o"),
                                               ("m2", "sft-x.dpo-s", "sft-x.dpo-o")]
    assert planned_contrasts([{**spec, "model": "m2"}, spec], runs)[0] == (
        "m2", "sft-x.dpo-s", "sft-x.dpo-o")
    with pytest.raises(ValueError, match="has not both runs"):
        planned_contrasts([{"a": "sft-x.dpo-s", "b": "sft-y"}], runs)
    with pytest.raises(ValueError, match="itself"):
        planned_contrasts([{"a": "sft-x", "b": "sft-x"}], runs)
    assert planned_contrasts([], runs) == []


def test_drift_tables_with_and_without_p_values_stack():
    """A drift file made before p-values (an existing results tree) and a new one go into
    one table: the old rows get nulls and no star."""
    old = pl.DataFrame({"category": ["A"], "stance": ["support"], "magnitude": [0.5],
                        "drift_time": [0.2]})
    new = old.with_columns(pl.lit(0.001).alias("magnitude_p"), pl.lit(0.01).alias("magnitude_q"))
    table = stack_drifts({"old": old, "new": new})
    assert table["magnitude_q"].to_list() == [None, 0.01]
    assert "| A | +0.50 / 0.20 | +0.50* / 0.20 |" in drift_markdown(table, "t")
