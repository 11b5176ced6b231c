"""Agreement of a main and a reference judge (analysis.judge_agreement_steps), checked
against numbers computed by hand."""

import math

import numpy as np
import polars as pl
import pytest

from value_drifts.analysis.judge_agreement_steps import (
    agreement,
    agreement_markdown,
    agreement_table,
    cohen_kappa,
    judge_drift,
    krippendorff_alpha,
    paired_readings,
    plot_agreement,
    total_variation,
)

SUP, NEU, OPP = (0.8, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.1, 0.8)


def test_perfect_agreement_gives_kappa_and_alpha_one_and_no_distance():
    p = np.array([SUP, NEU, OPP, SUP, OPP])
    result = agreement(p, p.copy())
    assert result["kappa"] == pytest.approx(1.0)
    assert result["alpha"] == pytest.approx(1.0)
    assert result["mean_tv"] == pytest.approx(0.0)
    assert result["argmax_agreement"] == 1.0 and result["n"] == 5


def test_a_known_disagreement_gives_the_hand_computed_numbers():
    # labels a = (s, s, n, n), b = (s, n, n, n)
    # kappa: p_o = 3/4, p_e = (2/4)(1/4) + (2/4)(3/4) = 1/2, kappa = (3/4 - 1/2)/(1/2) = 1/2
    # alpha (nominal): pooled 3 s, 5 n (n = 8); coincidences o_sn = o_ns = 1;
    # D_o = 2/8, D_e = 2 * 3 * 5 / (8 * 7) = 30/56, alpha = 1 - (2/8)/(30/56) = 8/15
    a, b = [0, 0, 1, 1], [0, 1, 1, 1]
    assert cohen_kappa(a, b) == pytest.approx(0.5)
    assert krippendorff_alpha(a, b) == pytest.approx(8 / 15)
    # TV: rows 1, 3, 4 equal (0); row 2: 0.5 * (|0.8-0.1| + |0.1-0.8| + 0) = 0.7
    p = np.array([SUP, SUP, NEU, NEU])
    q = np.array([SUP, NEU, NEU, NEU])
    assert total_variation(p, q).tolist() == pytest.approx([0, 0.7, 0, 0])
    result = agreement(p, q)
    assert result["kappa"] == pytest.approx(0.5)
    assert result["alpha"] == pytest.approx(8 / 15)
    assert result["mean_tv"] == pytest.approx(0.7 / 4)
    assert result["argmax_agreement"] == pytest.approx(0.75)


def test_one_label_everywhere_leaves_kappa_and_alpha_undefined():
    result = agreement(np.array([SUP, SUP]), np.array([SUP, SUP]))
    assert math.isnan(result["kappa"]) and math.isnan(result["alpha"])
    assert result["mean_tv"] == 0


def judgments(rows, category="Abortion"):
    """A judgments table from (question_id, sample, probabilities) rows."""
    return pl.DataFrame({
        "question_id": [r[0] for r in rows], "sample": [r[1] for r in rows],
        "category": [category] * len(rows),
        "p_support": [r[2][0] for r in rows], "p_neutral": [r[2][1] for r in rows],
        "p_oppose": [r[2][2] for r in rows],
    })


def test_steps_and_run_rows_and_each_judges_drift(tmp_path):
    nan = (math.nan,) * 3
    main0 = judgments([("a", 0, SUP), ("b", 0, NEU), ("c", 0, OPP), ("d", 0, SUP)])
    main1 = judgments([("a", 0, SUP), ("b", 0, SUP), ("c", 0, SUP), ("d", 0, SUP)])
    # the reference read a sample of 3 (d not sampled); at step 1 it cannot read c
    ref0 = judgments([("a", 0, SUP), ("b", 0, NEU), ("c", 0, OPP)])
    ref1 = judgments([("a", 0, SUP), ("b", 0, NEU), ("c", 0, nan)])
    pairs = {0: paired_readings(main0, ref0), 5: paired_readings(main1, ref1)}
    assert pairs[0].height == 3 and pairs[5].height == 2
    table = agreement_table(pairs)
    assert table["scope"].to_list() == ["step", "step", "run"]
    assert table["step"].to_list() == [0, 5, None]
    assert table["n"].to_list() == [3, 2, 5]
    assert table["kappa"][0] == pytest.approx(1.0)
    assert table["mean_tv"][1] == pytest.approx(0.7 / 2)  # b: support vs neutral
    assert table["mean_tv"][2] == pytest.approx(0.7 / 5)
    drift = judge_drift(pairs)
    support = drift.filter(pl.col("stance") == "support").row(0, named=True)
    # main: mean p_support over (a, b, c) at step 0 = (0.8+0.1+0.1)/3; over (a, b) at 5 = 0.8
    assert support["main"] == pytest.approx(0.8 - 1.0 / 3)
    # reference: (0.8+0.1+0.1)/3 at step 0, (0.8+0.1)/2 at step 5
    assert support["reference"] == pytest.approx(0.45 - 1.0 / 3)
    assert support["n_first"] == 3 and support["n_last"] == 2
    text = agreement_markdown(table, drift, "t")
    assert "| run | 5 |" in text
    plot_agreement(table, "t", [tmp_path / "a.pdf", tmp_path / "a.png"])
    assert (tmp_path / "a.png").stat().st_size > 0
