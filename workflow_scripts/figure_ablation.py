import polars as pl

from value_drifts.analysis.plots import plot_ablation
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    category = snakemake.params.category
    lines = [
        (label, pl.read_parquet(path).filter(pl.col("category") == category))
        for label, path in zip(snakemake.params.labels, snakemake.input.values, strict=True)
    ]
    plot_ablation(
        lines,
        stance="support",
        title=snakemake.params.title,
        outputs=[snakemake.output.pdf, snakemake.output.png],
    )
