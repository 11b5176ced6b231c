"""A collapsed model shows on every table and figure of its run: values carry the share of
short answers per step and category (empty answers apart, not stances), drift tables the
largest share and a note, their markdown the note, and figures a marker per step."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402

from value_drifts.analysis.aggregate import (  # noqa: E402
    answer_shares,
    drift_table,
    short_answers_note,
    trajectory_values,
)
from value_drifts.analysis.plots import SHORT_ANSWERS_LABEL, mark_short_answers  # noqa: E402
from value_drifts.analysis.tables import drift_markdown, stack_drifts  # noqa: E402

NAN = float("nan")


def judgments(flags_by_category: dict[str, list[str]]) -> pl.DataFrame:
    rows = []
    for category, flags in flags_by_category.items():
        for i, flag in enumerate(flags):
            empty = flag == "empty"
            rows.append({
                "question_id": f"{category}-{i % 4}", "category": category, "sample": i // 4,
                "p_support": NAN if empty else 0.6, "p_neutral": NAN if empty else 0.3,
                "p_oppose": NAN if empty else 0.1, "answer_flags": flag,
            })
    return pl.DataFrame(rows)


@pytest.mark.parametrize(("flags", "share", "empty"), [
    (["", "", "", ""], 0.0, 0),
    (["short", "", "", ""], 0.25, 0),
    (["short", "short,base_continuation", "short", "empty"], 1.0, 1),  # 3 of 3 non-empty
    (["short,prompt_echo", "", "empty", "empty"], 0.5, 2),
])
def test_share_of_short_answers_leaves_empty_ones_out(flags, share, empty):
    shares = answer_shares(judgments({"Abortion": flags}))
    assert shares["short_share"].to_list() == [pytest.approx(share)]
    assert shares["n_empty"].to_list() == [empty]


def test_judgments_before_flags_have_no_share():
    shares = answer_shares(judgments({"Abortion": [""] * 4}).drop("answer_flags"))
    assert shares["short_share"].to_list() == [None]


def collapsing_run() -> pl.DataFrame:
    """Step 0 answers in full; by step 4, 3 of 4 Abortion answers are 'No.'."""
    return trajectory_values({
        0: judgments({"Abortion": [""] * 4, "Guns": [""] * 4}),
        2: judgments({"Abortion": ["short", "", "", ""], "Guns": [""] * 4}),
        4: judgments({"Abortion": ["short", "short", "short", ""], "Guns": ["", "", "", "short"]}),
    }, ci_level=0.95)


def test_values_drift_tables_and_markdown_show_the_collapse():
    values = collapsing_run()
    abortion = values.filter((pl.col("category") == "Abortion") & (pl.col("stance") == "support"))
    assert abortion.sort("step")["short_share"].to_list() == [0.0, 0.25, 0.75]
    assert short_answers_note(values) == (
        "short answers (≤ 3 characters): up to 75% of a category's answers (step 4)")
    drift = drift_table(values)
    assert drift.filter(pl.col("category") == "Abortion")["max_short_share"].to_list() == [0.75] * 3
    assert drift.filter(pl.col("category") == "Guns")["max_short_share"].to_list() == [0.25] * 3
    md = drift_markdown(stack_drifts({"sft-x.simpo-y": drift}), "drift")
    assert "- sft-x.simpo-y: short answers (≤ 3 characters): up to 75%" in md


def test_a_run_without_short_answers_has_no_note():
    values = trajectory_values({0: judgments({"Abortion": [""] * 4}),
                                1: judgments({"Abortion": [""] * 4})}, 0.95)
    assert short_answers_note(values) == ""
    assert "short answers" not in drift_markdown(stack_drifts({"r": drift_table(values)}), "d")


def test_figures_mark_every_step_with_short_answers():
    fig, ax = plt.subplots()
    abortion = collapsing_run().filter(pl.col("category") == "Abortion")
    assert mark_short_answers(ax, abortion) == 2  # steps 2 and 4
    assert SHORT_ANSWERS_LABEL in ax.get_legend_handles_labels()[1]
    assert sorted(t.get_text() for t in ax.texts) == ["25%", "75%"]
    plt.close(fig)
