from pathlib import Path

import polars as pl

from value_drifts.analysis.contrasts import contrast_markdown, paired_contrast
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    run_a, run_b = snakemake.params.runs
    contrast = paired_contrast(
        pl.read_parquet(snakemake.input.a),
        pl.read_parquet(snakemake.input.b),
        level=snakemake.params.ci_level,
        n_resamples=snakemake.params.n_resamples,
        seed=snakemake.params.seed,
    )
    contrast.write_csv(snakemake.output.csv)
    Path(snakemake.output.md).write_text(
        contrast_markdown(contrast, snakemake.params.title, run_a, run_b)
    )
    print(contrast)
