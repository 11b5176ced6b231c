import polars as pl

from value_drifts.analysis.aggregate import drift_table
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    drift = drift_table(
        pl.read_parquet(snakemake.input.values),
        pl.read_parquet(snakemake.input.question_values),
        ci_level=snakemake.params.ci_level,
        n_resamples=snakemake.params.n_resamples,
        seed=snakemake.params.seed,
    )
    drift.write_parquet(snakemake.output.parquet)
    drift.write_csv(snakemake.output.csv)
    print(drift)
