import math

import polars as pl

from value_drifts.analysis.tables import drift_markdown, stack_drifts


def _drift(magnitude, low, high, time, time_low, time_high):
    return pl.DataFrame(
        {
            "category": ["Abortion"],
            "stance": ["support"],
            "magnitude": [magnitude],
            "magnitude_low": [low],
            "magnitude_high": [high],
            "drift_time": [time],
            "drift_time_low": [time_low],
            "drift_time_high": [time_high],
        }
    )


def test_markdown_cells_show_each_number_with_its_bootstrap_interval():
    table = stack_drifts(
        {
            "sft-a": _drift(0.384, 0.2, 0.51, 0.09, 0.0, 0.25),
            "sft-b": _drift(-0.012, -0.05, 0.03, math.nan, math.nan, math.nan),
        }
    )
    md = drift_markdown(table, "SFT drift")
    row = next(line for line in md.splitlines() if line.startswith("| Abortion"))
    assert "+0.38 [+0.20, +0.51] / 0.09 [0.00, 0.25]" in row
    assert "-0.01 [-0.05, +0.03] / –" in row
    assert md.splitlines()[4] == "| category | sft-a support | sft-b support |"


def test_markdown_without_intervals_keeps_bare_numbers():
    table = stack_drifts(
        {"run": _drift(0.5, 0.5, 0.5, 0.2, 0.2, 0.2).drop(pl.selectors.ends_with("_low", "_high"))}
    )
    assert "| Abortion | +0.50 / 0.20 |" in drift_markdown(table, "t")
