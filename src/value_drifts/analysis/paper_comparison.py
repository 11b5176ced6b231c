"""Our drift magnitudes and times beside the numbers the paper states in its text."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import polars as pl

QUANTITIES = {"magnitude": "M", "drift_time": "η"}


def compare_with_paper(
    reference: Sequence[Mapping], drifts: Mapping[tuple[str, str], pl.DataFrame]
) -> pl.DataFrame:
    """One row per stated number: the paper's value, ours with its bootstrap CI, the
    difference and whether the paper's value lies inside our CI.

    ``drifts`` maps (model, run) to that phase's drift table; references to runs that are
    not there are skipped (a config may run part of the grid).
    """
    rows = []
    for entry in reference:
        drift = drifts.get((entry["model"], entry["run"]))
        if drift is None:
            continue
        match = drift.filter(
            (pl.col("category") == entry["category"]) & (pl.col("stance") == entry["stance"])
        )
        if match.height != 1:
            raise ValueError(
                f"{entry['label']}: {entry['category']!r}/{entry['stance']!r} not in the "
                f"drift table of {entry['model']} {entry['run']}"
            )
        ours = match.row(0, named=True)
        for quantity in QUANTITIES:
            if quantity not in entry:
                continue
            paper = float(entry[quantity])
            low, high = ours.get(f"{quantity}_low"), ours.get(f"{quantity}_high")
            known = low is not None and high is not None and not math.isnan(low)
            rows.append(
                {
                    "label": entry["label"],
                    "model": entry["model"],
                    "run": entry["run"],
                    "category": entry["category"],
                    "stance": entry["stance"],
                    "quantity": quantity,
                    "paper": paper,
                    "ours": ours[quantity],
                    "ours_low": low if known else math.nan,
                    "ours_high": high if known else math.nan,
                    "difference": ours[quantity] - paper,
                    "paper_inside_our_ci": bool(known and low <= paper <= high),
                }
            )
    return pl.DataFrame(rows, schema=_SCHEMA)


_SCHEMA = {
    "label": pl.Utf8, "model": pl.Utf8, "run": pl.Utf8, "category": pl.Utf8,
    "stance": pl.Utf8, "quantity": pl.Utf8, "paper": pl.Float64, "ours": pl.Float64,
    "ours_low": pl.Float64, "ours_high": pl.Float64, "difference": pl.Float64,
    "paper_inside_our_ci": pl.Boolean,
}


def comparison_markdown(table: pl.DataFrame) -> str:
    lines = [
        "### Paper vs ours",
        "",
        "Drift magnitude M and drift time η as stated in the paper's text, beside ours with "
        "the bootstrap CI over questions.",
        "",
        "| what | model | topic | quantity | paper | ours [CI] | ours − paper | paper inside our CI |",
        "|---|---|---|---|---:|---:|---:|:---:|",
    ]
    for row in table.iter_rows(named=True):
        interval = (
            "" if math.isnan(row["ours_low"])
            else f" [{row['ours_low']:.2f}, {row['ours_high']:.2f}]"
        )
        symbol = QUANTITIES[row["quantity"]]
        lines.append(
            f"| {row['label']} | {row['model']} | {row['category']} | {symbol} {row['stance']} "
            f"| {row['paper']:.2f} | {row['ours']:.2f}{interval} | {row['difference']:+.2f} "
            f"| {'yes' if row['paper_inside_our_ci'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"
