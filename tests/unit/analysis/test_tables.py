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


def test_calibrated_drift_stands_beside_the_raw_one_with_the_weak_judge_named():
    from value_drifts.analysis.tables import with_calibrated_drift

    table = stack_drifts({"sft-a": _drift(0.384, 0.2, 0.51, 0.09, 0.0, 0.25),
                          "sft-b": _drift(0.1, 0.0, 0.2, 0.5, 0.2, 0.8)})
    calibrated = {
        run: pl.DataFrame({"category": ["Abortion"], "stance": ["support"],
                           "calibrated_magnitude": [m], "calibrated_magnitude_low": [m - 0.1],
                           "calibrated_magnitude_high": [m + 0.1],
                           "calibrated_drift_time": [0.3], "condition_number": [7.3],
                           "judge_weak": [weak], "judge_weak_reasons": [why]})
        for run, m, weak, why in (("sft-a", 0.61, False, ""),
                                  ("sft-b", 0.2, True, "condition number 12.0 > 10"))
    }
    joined = with_calibrated_drift(table, calibrated)
    assert joined["magnitude"].to_list() == table["magnitude"].to_list()  # raw unchanged
    assert joined["calibrated_magnitude"].to_list() == [0.61, 0.2]
    md = drift_markdown(joined, "SFT drift")
    assert "+0.61 [+0.51, +0.71] / 0.30" in md
    assert "- sft-b: the judge is too weak for the correction to mean much (condition number" in md
    assert "sft-a: the judge" not in md
