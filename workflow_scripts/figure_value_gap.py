import polars as pl

from value_drifts.analysis.dataset_stances import (
    markdown_table,
    plot_value_gap_histograms,
    value_gap_summary,
)
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    names = snakemake.params.preference_sets
    frames = {
        name: pl.read_parquet(path)
        for name, path in zip(names, snakemake.input.gaps, strict=True)
    }
    gaps = pl.concat(
        [f.with_columns(pl.lit(n).alias("preference_set")) for n, f in frames.items()],
        how="diagonal_relaxed",
    )
    summary = value_gap_summary(gaps, snakemake.params.threshold)
    summary.write_csv(snakemake.output.csv)
    with open(snakemake.output.md, "w") as handle:
        handle.write(markdown_table(summary))
    plot_value_gap_histograms(
        {n: f["distance"].to_numpy() for n, f in frames.items()},
        [snakemake.output.pdf, snakemake.output.png],
    )
    print(summary)
