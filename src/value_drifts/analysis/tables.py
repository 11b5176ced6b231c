"""Drift tables as CSV and markdown (paper Tables 1 and 9-16)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import polars as pl


def stack_drifts(drifts: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """One drift table per run, stacked with a ``run`` column. Tables written by different
    versions stack too (``diagonal_relaxed``): a column one lacks, e.g. ``magnitude_p`` of
    a drift file made before p-values, is null in its rows."""
    return pl.concat(
        [frame.with_columns(pl.lit(run).alias("run")) for run, frame in drifts.items()],
        how="diagonal_relaxed",
    ).select("run", pl.exclude("run"))


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None or math.isnan(value) else format(value, fmt)


def _with_interval(row: Mapping, name: str, fmt: str) -> str:
    """'0.31 [0.20, 0.42]' when the row has bootstrap bounds, the bare number otherwise."""
    text = _number(row[name], fmt)
    low, high = row.get(f"{name}_low"), row.get(f"{name}_high")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return text
    return f"{text} [{_number(low, fmt)}, {_number(high, fmt)}]"


# A magnitude whose FDR q-value is below this gets a star in the markdown tables.
Q_MARK = 0.05


def _significant(row: Mapping) -> bool:
    """Whether a row's magnitude has a q-value below Q_MARK (False without one: a table
    written before q-values, or a cell without an interval)."""
    q = row.get("magnitude_q")
    return q is not None and not math.isnan(q) and q < Q_MARK


def _cell(row: Mapping) -> str:
    star = "*" if _significant(row) else ""
    return (f"{_with_interval(row, 'magnitude', '+.2f')}{star} / "
            f"{_with_interval(row, 'drift_time', '.2f')}")


def drift_markdown(table: pl.DataFrame, title: str) -> str:
    """Rows: categories; columns: run × stance; cells: 'magnitude / drift time', a
    magnitude with a ``*`` where its Benjamini–Yekutieli q-value (``magnitude_q``, over its
    run's topic × stance cells) is below ``Q_MARK``; the legend says so when the table has
    q-values (drift tables written before them have none, and show no star)."""
    runs = table["run"].unique(maintain_order=True).to_list()
    stances = table["stance"].unique(maintain_order=True).to_list()
    columns = [(run, stance) for run in runs for stance in stances]
    legend = (
        "Cells: drift magnitude M / drift time η, each with its bootstrap CI over "
        "questions in brackets (– where a phase has one checkpoint); each estimated on "
        "the questions its CI resamples (readable at both ends for M, at every step for η)."
    )
    if "magnitude_q" in table.columns:
        legend += (
            f" M* : q < {Q_MARK:g} for M ≠ 0 (two-sided bootstrap p-value, "
            "Benjamini–Yekutieli false-discovery-rate q-value over the run's topic × "
            "stance cells)."
        )
    lines = [
        f"### {title}",
        "",
        legend,
        "",
        "| category | " + " | ".join(f"{run} {stance}" for run, stance in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for category in sorted(table["category"].unique().to_list()):
        rows = table.filter(pl.col("category") == category)
        cells = []
        for run, stance in columns:
            match = rows.filter((pl.col("run") == run) & (pl.col("stance") == stance))
            cells.append(_cell(match.row(0, named=True)) if match.height else "")
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    notes = []
    if "checkpoint_integrity" in table.columns:
        notes += [f"- {run}: {note}" for run, note in table.filter(
            pl.col("checkpoint_integrity") != "").select("run", "checkpoint_integrity")
            .unique(maintain_order=True).rows()]
    if "answers_note" in table.columns:
        notes += [f"- {run}: {note}" for run, note in table.filter(
            pl.col("answers_note") != "").select("run", "answers_note")
            .unique(maintain_order=True).rows()]
    if "note" in table.columns:
        notes += [f"- {run}, {category}: {note}" for run, category, note in table.filter(
            pl.col("note") != "").select("run", "category", "note")
            .unique(maintain_order=True).rows()]
    if notes:
        lines += ["", "Notes:", ""] + notes
    return "\n".join(lines) + "\n"
