import polars as pl

from value_drifts.analysis.calibration import with_calibrated
from value_drifts.analysis.plots import plot_trajectories
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    category = snakemake.params.category
    panels = [
        (run, with_calibrated(pl.read_parquet(path), pl.read_parquet(calibrated))
         .filter(pl.col("category") == category))
        for run, path, calibrated in zip(snakemake.params.runs, snakemake.input.values,
                                         snakemake.input.calibrated, strict=True)
    ]
    plot_trajectories(
        panels,
        title=snakemake.params.title,
        outputs=[snakemake.output.pdf, snakemake.output.png],
        start_label=snakemake.params.start_label,
    )
