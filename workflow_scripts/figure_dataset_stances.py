import polars as pl

from value_drifts.analysis.dataset_stances import (
    markdown_table,
    plot_stance_distributions,
    stance_distribution,
)
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    stances = pl.concat(
        [
            pl.read_parquet(path).with_columns(pl.lit(name).alias("dataset"))
            for name, path in zip(snakemake.params.datasets, snakemake.input.stances, strict=True)
        ],
        how="diagonal_relaxed",
    )
    distribution = stance_distribution(stances)
    distribution.write_csv(snakemake.output.csv)
    with open(snakemake.output.md, "w") as handle:
        handle.write(markdown_table(distribution))
    plot_stance_distributions(distribution, [snakemake.output.pdf, snakemake.output.png])
    print(distribution)
