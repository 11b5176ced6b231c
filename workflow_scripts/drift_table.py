from pathlib import Path

import polars as pl

from value_drifts.analysis.tables import drift_markdown, stack_drifts, with_calibrated_drift
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    table = stack_drifts(
        {
            run: pl.read_parquet(path)
            for run, path in zip(snakemake.params.runs, snakemake.input.drifts, strict=True)
        }
    )
    table = with_calibrated_drift(table, {
        run: pl.read_parquet(path)
        for run, path in zip(snakemake.params.runs, snakemake.input.calibrated, strict=True)
    })
    table.write_csv(snakemake.output.csv)
    Path(snakemake.output.md).write_text(drift_markdown(table, snakemake.params.title))
