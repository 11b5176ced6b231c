import polars as pl

from value_drifts.aggregate import trajectory_question_values, trajectory_values
from value_drifts.io import logged

with logged(snakemake.log[0]):
    by_step = {
        step: pl.read_parquet(path)
        for step, path in zip(snakemake.params.steps, snakemake.input, strict=True)
    }
    trajectory_values(by_step, snakemake.params.ci_level).write_parquet(
        snakemake.output.values
    )
    trajectory_question_values(by_step).write_parquet(snakemake.output.question_values)
