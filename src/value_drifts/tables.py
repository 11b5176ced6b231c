"""Drift tables as CSV and markdown (paper Tables 1 and 9-16)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import polars as pl


def stack_drifts(drifts: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """One drift table per run, stacked with a ``run`` column."""
    return pl.concat(
        [frame.with_columns(pl.lit(run).alias("run")) for run, frame in drifts.items()]
    ).select("run", pl.exclude("run"))


def _cell(magnitude: float, time: float) -> str:
    time_text = "–" if time is None or math.isnan(time) else f"{time:.2f}"
    return f"{magnitude:+.2f} / {time_text}"


def drift_markdown(table: pl.DataFrame, title: str) -> str:
    """Rows: categories; columns: run × stance; cells: 'magnitude / drift time'."""
    runs = table["run"].unique(maintain_order=True).to_list()
    stances = table["stance"].unique(maintain_order=True).to_list()
    columns = [(run, stance) for run in runs for stance in stances]
    lines = [
        f"### {title}",
        "",
        "Cells: drift magnitude M / drift time η (– where a phase has one checkpoint).",
        "",
        "| category | " + " | ".join(f"{run} {stance}" for run, stance in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for category in sorted(table["category"].unique().to_list()):
        rows = table.filter(pl.col("category") == category)
        cells = []
        for run, stance in columns:
            match = rows.filter((pl.col("run") == run) & (pl.col("stance") == stance))
            cells.append(
                _cell(match["magnitude"][0], match["drift_time"][0]) if match.height else ""
            )
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
