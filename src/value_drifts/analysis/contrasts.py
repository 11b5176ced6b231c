"""Paired contrasts: how much more one run moves a stance than another, on the same questions.

Drift within a run is paired by question already (its bootstrap follows each question from
the first to the last step). A contrast compares two runs of one model that answered the
same questions, e.g. support- vs oppose-aligned DPO from one SFT model: per (category,
stance) the difference of their drift magnitudes, M_a − M_b, with a percentile bootstrap
CI and a two-sided p-value that resample questions *jointly* (a resampled question brings
its drift in both runs), and Benjamini–Yekutieli q-values over the table's cells.
``analysis.contrasts`` names the pairs; rule ``contrast_table`` writes one table each.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from value_drifts.analysis.aggregate import MIN_INTERVAL_QUESTIONS, PROB_COLUMNS, readable_answers
from value_drifts.analysis.metrics import bootstrap_mean_tests, fdr_q_values
from value_drifts.core.stances import STANCES

CONTRAST_COLUMNS = (
    "category", "stance", "magnitude_a", "magnitude_b", "difference", "difference_low",
    "difference_high", "difference_p", "difference_q", "n_questions", "note",
)
PAIRED_QUESTIONS = "questions readable at the first and the last step of both runs"


def question_drifts(question_values: pl.DataFrame, category: str) -> pl.DataFrame:
    """One run's per-question drift of every stance, ``d_<stance>`` = its probability at
    the run's last step minus its first (the category's first and last step), on the
    category's questions readable at both (a question with an unreadable end is no
    measurement); columns question_id and ``d_support``, ``d_neutral``, ``d_oppose``."""
    rows = question_values.filter(pl.col("category") == category)
    if rows.is_empty():
        return pl.DataFrame(schema={"question_id": pl.Utf8,
                                    **{f"d_{s}": pl.Float64 for s in STANCES}})
    first, last = rows["step"].min(), rows["step"].max()
    start, end = (rows.filter((pl.col("step") == step) & readable_answers())
                  .select("question_id", *PROB_COLUMNS) for step in (first, last))
    return (start.join(end, on="question_id", suffix="_end")
            .select("question_id", *[(pl.col(f"p_{s}_end") - pl.col(f"p_{s}")).alias(f"d_{s}")
                                     for s in STANCES])
            .with_columns(pl.col("question_id").cast(pl.Utf8)))


def paired_contrast(
    question_values_a: pl.DataFrame,
    question_values_b: pl.DataFrame,
    level: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Per (category, stance): run a's drift magnitude, run b's, and their difference
    a − b, on the questions readable at the first and the last step of both runs (paired
    by ``question_id``; ``n_questions`` of them), with a percentile bootstrap CI of the
    difference (``difference_low``, ``difference_high``) and its two-sided p-value of
    "≠ 0" (``difference_p``, ``metrics.bootstrap_p_value``) from the same resamples of
    questions, which carry each question's drift in both runs and in all three stances at
    once. ``difference_q``: Benjamini–Yekutieli q-values over the table's category ×
    stance cells (a topic's three differences sum to zero: dependent tests).

    The inputs are two runs' ``question_values`` tables (``aggregate.
    trajectory_question_values``: step, question_id, category, p_*). Each magnitude here
    is the mean per-question drift over the paired questions, so it can differ from the
    run's own drift table where a question is readable at both ends in one run only.
    Below ``MIN_INTERVAL_QUESTIONS`` paired questions the CI and p-value are NaN and
    ``note`` says why; a category in one run only gets a row with ``n_questions`` 0.
    """
    rows: list[dict[str, Any]] = []
    categories = sorted(set(question_values_a["category"].unique().to_list())
                        | set(question_values_b["category"].unique().to_list()))
    for category in categories:
        paired = (question_drifts(question_values_a, category)
                  .join(question_drifts(question_values_b, category), on="question_id",
                        suffix="_b")
                  .sort("question_id"))
        a = paired.select([f"d_{s}" for s in STANCES]).to_numpy().reshape(-1, len(STANCES))
        b = paired.select([f"d_{s}_b" for s in STANCES]).to_numpy().reshape(-1, len(STANCES))
        difference = a - b
        n = paired.height
        note = ""
        if n < MIN_INTERVAL_QUESTIONS:
            bounds = np.full((len(STANCES), 2), math.nan)
            p_values = np.full(len(STANCES), math.nan)
            note = (f"{n} {PAIRED_QUESTIONS}, fewer than {MIN_INTERVAL_QUESTIONS}: "
                    "no interval")
        else:
            bounds, p_values = bootstrap_mean_tests(difference, level, n_resamples, seed)
        with np.errstate(invalid="ignore"):
            means = [(float(a[:, i].mean()) if n else math.nan,
                      float(b[:, i].mean()) if n else math.nan,
                      float(difference[:, i].mean()) if n else math.nan)
                     for i in range(len(STANCES))]
        for index, stance in enumerate(STANCES):
            magnitude_a, magnitude_b, diff = means[index]
            rows.append({
                "category": category, "stance": stance,
                "magnitude_a": magnitude_a, "magnitude_b": magnitude_b, "difference": diff,
                "difference_low": float(bounds[index][0]),
                "difference_high": float(bounds[index][1]),
                "difference_p": float(p_values[index]), "n_questions": n, "note": note,
            })
    q = fdr_q_values([row["difference_p"] for row in rows], method="by")
    for row, q_value in zip(rows, q, strict=True):
        row["difference_q"] = float(q_value)
    schema = {c: pl.Float64 for c in CONTRAST_COLUMNS} | {
        "category": pl.Utf8, "stance": pl.Utf8, "n_questions": pl.Int64, "note": pl.Utf8}
    return pl.DataFrame(rows, schema=schema).select(CONTRAST_COLUMNS)


def planned_contrasts(
    contrasts: Iterable[Mapping[str, str]], runs: Iterable[tuple[str, str]]
) -> list[tuple[str, str, str]]:
    """(model, run a, run b) for every configured contrast (``analysis.contrasts``: ``a``,
    ``b`` and optionally ``model``) among the study's runs (``(model, run)`` pairs of its
    phases), in the config's order, each once. Without ``model`` a contrast holds for every
    model that has both runs. Raises ValueError for a run no such model has, or a run
    contrasted with itself."""
    known: dict[str, set[str]] = {}
    for model, run in runs:
        known.setdefault(model, set()).add(run)
    planned: dict[tuple[str, str, str], None] = {}
    for number, spec in enumerate(contrasts, 1):
        a, b, model = spec["a"], spec["b"], spec.get("model")
        where = f"analysis.contrasts[{number}] ({a} vs {b})"
        if a == b:
            raise ValueError(f"{where}: a run contrasted with itself")
        models = [model] if model else sorted(known)
        matched = [m for m in models if {a, b} <= known.get(m, set())]
        if not matched:
            scope = f"model {model}" if model else "any one model"
            runs_known = ", ".join(sorted(known.get(model, set()) if model
                                          else set().union(*known.values())))
            raise ValueError(f"{where}: {scope} has not both runs; run ids: {runs_known}")
        for m in matched:
            planned[(m, a, b)] = None
    return list(planned)


def contrast_markdown(table: pl.DataFrame, title: str, run_a: str, run_b: str,
                      stances: Sequence[str] = STANCES) -> str:
    """Rows: categories; columns: stances; cells 'M_a − M_b [low, high]' with a ``*``
    where q < 0.05; then the paired question counts and notes."""
    lines = [
        f"### {title}",
        "",
        f"Cells: drift magnitude of {run_a} minus that of {run_b}, paired by question "
        f"(the {PAIRED_QUESTIONS}), with its bootstrap CI over questions in brackets; "
        "* : q < 0.05 for a difference ≠ 0 (two-sided bootstrap p-value, "
        "Benjamini–Yekutieli false-discovery-rate q-value over the table's cells).",
        "",
        "| category | " + " | ".join(stances) + " | questions |",
        "|---|" + "---:|" * (len(stances) + 1),
    ]
    notes = []
    for category in table["category"].unique(maintain_order=True).to_list():
        rows = {row["stance"]: row for row in
                table.filter(pl.col("category") == category).iter_rows(named=True)}
        cells = [_contrast_cell(rows[s]) if s in rows else "" for s in stances]
        n = next(iter(rows.values()))["n_questions"]
        lines.append(f"| {category} | " + " | ".join(cells) + f" | {n} |")
        notes += sorted({f"- {category}: {row['note']}" for row in rows.values() if row["note"]})
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def _number(value: float | None, fmt: str = "+.2f") -> str:
    return "–" if value is None or math.isnan(value) else format(value, fmt)


def _contrast_cell(row: Mapping[str, Any]) -> str:
    text = _number(row["difference"])
    if not math.isnan(row["difference_low"]):
        text += f" [{_number(row['difference_low'])}, {_number(row['difference_high'])}]"
    q = row.get("difference_q")
    return text + ("*" if q is not None and not math.isnan(q) and q < 0.05 else "")
