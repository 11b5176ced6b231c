from pathlib import Path

import polars as pl
import yaml

from value_drifts.analysis.paper_comparison import compare_with_paper, comparison_markdown
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    reference = yaml.safe_load(Path(snakemake.input.reference).read_text())
    drifts = {
        tuple(run): pl.read_parquet(path)
        for run, path in zip(snakemake.params.runs, snakemake.input.drifts, strict=True)
    }
    table = compare_with_paper(reference, drifts)
    table.write_csv(snakemake.output.csv)
    Path(snakemake.output.md).write_text(comparison_markdown(table))
    print(table)
