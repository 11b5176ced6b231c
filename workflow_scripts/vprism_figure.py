import numpy as np
import polars as pl

from value_drifts.core.io import logged
from value_drifts.data.vprism import plot_clusters

with logged(snakemake.log[0]):
    clusters = pl.read_parquet(snakemake.input.clusters)["cluster"].to_list()
    report = pl.read_csv(snakemake.input.report).filter(pl.col("cluster") >= 0)
    labels = {
        row["cluster"]: f"{row['cluster']}: {row['name']}"
        + (f" -> {row['category']}" if row["kept"] else "")
        for row in report.iter_rows(named=True)
    }
    plot_clusters(
        np.load(snakemake.input.projection),
        clusters,
        labels,
        [snakemake.output.pdf, snakemake.output.png],
    )
