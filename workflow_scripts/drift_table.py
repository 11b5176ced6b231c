from pathlib import Path

import polars as pl

from value_drifts.io import logged
from value_drifts.tables import drift_markdown, stack_drifts

with logged(snakemake.log[0]):
    table = stack_drifts(
        {
            run: pl.read_parquet(path)
            for run, path in zip(snakemake.params.runs, snakemake.input.drifts, strict=True)
        }
    )
    table.write_csv(snakemake.output.csv)
    Path(snakemake.output.md).write_text(drift_markdown(table, snakemake.params.title))
