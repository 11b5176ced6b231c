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


def with_calibrated_drift(table: pl.DataFrame, calibrated: Mapping[str, pl.DataFrame]
                          ) -> pl.DataFrame:
    """A stacked drift table (``stack_drifts``) with each run's calibrated drift
    (``analysis.calibration``, ``{run: calibrated_drift}``) joined on run, category and
    stance: calibrated_magnitude with its interval, calibrated_drift_time, the judge's
    condition_number, judge_weak and judge_weak_reasons."""
    keep = ["calibrated_magnitude", "calibrated_magnitude_low", "calibrated_magnitude_high",
            "calibrated_drift_time", "condition_number", "judge_weak", "judge_weak_reasons"]
    stacked = pl.concat([
        frame.select("category", "stance", *[c for c in keep if c in frame.columns])
        .with_columns(pl.lit(run).alias("run"))
        for run, frame in calibrated.items()
    ], how="diagonal_relaxed")
    return table.join(stacked, on=["run", "category", "stance"], how="left")


def _grid_rows(table: pl.DataFrame, columns, cell) -> list[str]:
    """One markdown row per category: ``cell(row)`` for each (run, stance) column."""
    lines = []
    for category in sorted(table["category"].unique().to_list()):
        rows = table.filter(pl.col("category") == category)
        cells = []
        for run, stance in columns:
            match = rows.filter((pl.col("run") == run) & (pl.col("stance") == stance))
            cells.append(cell(match.row(0, named=True)) if match.height else "")
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    return lines


def _calibrated_cell(row: Mapping) -> str:
    if row.get("calibrated_magnitude") is None:
        return "–"
    return (f"{_with_interval(row, 'calibrated_magnitude', '+.2f')} / "
            f"{_number(row.get('calibrated_drift_time'), '.2f')}")


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
    lines += _grid_rows(table, columns, _cell)
    if "calibrated_magnitude" in table.columns:
        lines += [
            "", "Corrected for the judge's error (its soft confusion matrix on the labelled "
            "set; CI from a joint bootstrap over questions and labelled items; "
            "docs/calibration.md): calibrated M [CI] / calibrated η.", "",
            "| category | " + " | ".join(f"{run} {stance}" for run, stance in columns) + " |",
            "|---|" + "---:|" * len(columns),
        ] + _grid_rows(table, columns, _calibrated_cell)
    notes = []
    if "judge_weak" in table.columns:
        weak = table.filter(pl.col("judge_weak").fill_null(False))
        notes += [f"- {run}: the judge is too weak for the correction to mean much ({why})"
                  for run, why in weak.select("run", "judge_weak_reasons")
                  .unique(maintain_order=True).rows()]
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
