import polars as pl

from value_drifts.aggregate import trajectory_values
from value_drifts.io import logged

with logged(snakemake.log[0]):
    by_step = {
        step: pl.read_parquet(path)
        for step, path in zip(snakemake.params.steps, snakemake.input, strict=True)
    }
    values = trajectory_values(by_step, snakemake.params.ci_level)
    values.write_parquet(snakemake.output[0])
