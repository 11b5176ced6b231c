import json

import polars as pl

from value_drifts.analysis.calibration import calibrated_trajectory
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    readings = pl.read_parquet(snakemake.input.readings)
    values, drift, summary = calibrated_trajectory(
        pl.read_parquet(snakemake.input.question_values),
        readings["stance"].to_list(),
        readings.select("p_support", "p_neutral", "p_oppose").to_numpy(),
        ci_level=snakemake.params.ci_level,
        n_resamples=snakemake.params.n_resamples,
        seed=snakemake.params.seed,
    )
    weak = "; ".join(summary["weak_reasons"])
    values = values.with_columns(pl.lit(summary["weak"]).alias("judge_weak"))
    drift = drift.with_columns(
        pl.lit(summary["condition_number"]).alias("condition_number"),
        pl.lit(summary["weak"]).alias("judge_weak"),
        pl.lit(weak).alias("judge_weak_reasons"),
    )
    values.write_parquet(snakemake.output.values)
    drift.write_parquet(snakemake.output.parquet)
    drift.write_csv(snakemake.output.csv)
    print(json.dumps(summary, indent=1))
    print(drift)
