import polars as pl

from value_drifts.analysis.calibration import with_calibrated
from value_drifts.analysis.plots import plot_ablation
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    category = snakemake.params.category
    lines = [
        (label, with_calibrated(pl.read_parquet(path), pl.read_parquet(calibrated))
         .filter(pl.col("category") == category))
        for label, path, calibrated in zip(snakemake.params.labels, snakemake.input.values,
                                           snakemake.input.calibrated, strict=True)
    ]
    plot_ablation(
        lines,
        stance="support",
        title=snakemake.params.title,
        outputs=[snakemake.output.pdf, snakemake.output.png],
    )
