import math

import polars as pl
import pytest

from value_drifts.analysis.paper_comparison import compare_with_paper, comparison_markdown

REFERENCE = [
    {"label": "SFT-WildChat", "model": "m", "run": "sft-w", "category": "Immigration",
     "stance": "neutral", "magnitude": 0.38, "drift_time": 0.09},
    {"label": "DPO", "model": "m", "run": "sft-w.dpo-s", "category": "Immigration",
     "stance": "support", "magnitude": 0.53},
    {"label": "not run", "model": "other", "run": "sft-w", "category": "Immigration",
     "stance": "neutral", "magnitude": 0.1},
]


def _drift(stance, magnitude, low, high, time=math.nan, time_low=math.nan, time_high=math.nan):
    return pl.DataFrame(
        {
            "category": ["Immigration"], "stance": [stance], "magnitude": [magnitude],
            "magnitude_low": [low], "magnitude_high": [high], "drift_time": [time],
            "drift_time_low": [time_low], "drift_time_high": [time_high],
        }
    )


def test_comparison_puts_ours_beside_the_paper_and_checks_the_ci():
    drifts = {
        ("m", "sft-w"): _drift("neutral", 0.30, 0.25, 0.41, 0.2, 0.1, 0.4),
        ("m", "sft-w.dpo-s"): _drift("support", 0.20, 0.1, 0.3),
    }
    table = compare_with_paper(REFERENCE, drifts)
    assert table.height == 3  # the run that is not in this config is skipped
    rows = {(r["label"], r["quantity"]): r for r in table.iter_rows(named=True)}
    neutral = rows[("SFT-WildChat", "magnitude")]
    assert neutral["difference"] == pytest.approx(-0.08)
    assert neutral["paper_inside_our_ci"]
    assert not rows[("SFT-WildChat", "drift_time")]["paper_inside_our_ci"]  # 0.09 < 0.1
    assert not rows[("DPO", "magnitude")]["paper_inside_our_ci"]
    md = comparison_markdown(table)
    assert "| SFT-WildChat | m | Immigration | M neutral | 0.38 | 0.30 [0.25, 0.41] | -0.08 | yes |" in md


def test_a_reference_to_a_missing_topic_is_an_error():
    with pytest.raises(ValueError, match="'Immigration'/'neutral' not in"):
        compare_with_paper(REFERENCE[:1], {("m", "sft-w"): _drift("support", 0.1, 0.0, 0.2)})
