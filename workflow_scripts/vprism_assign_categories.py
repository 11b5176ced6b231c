import json
from pathlib import Path

import polars as pl
import yaml

from value_drifts.core.io import logged
from value_drifts.data.vprism import NOISE, assign_categories, cluster_report, report_markdown

with logged(snakemake.log[0]):
    settings = snakemake.params.categories
    categories = list(yaml.safe_load(Path(snakemake.input.topics).read_text()))
    clusters = pl.read_parquet(snakemake.input.clusters)
    ngrams = {
        c: group.sort("rank")["ngram"].to_list()
        for (c,), group in pl.read_parquet(snakemake.input.ngrams).group_by("cluster")
    }
    names = {row["cluster"]: row for row in pl.read_parquet(snakemake.input.names).to_dicts()}
    # A cluster is described by its top n-grams and its name (see vprism.match_category).
    descriptions = {c: [*grams, names[c]["name"]] for c, grams in ngrams.items()}
    assignments = assign_categories(
        descriptions,
        settings["keywords"],
        categories,
        overrides=settings.get("clusters"),
        drop=settings["drop_clusters"],
        min_hits=settings["min_hits"],
    )
    sizes = dict(clusters.group_by("cluster").len().iter_rows())
    report = cluster_report(sizes, ngrams, names, assignments, noise=sizes.get(NOISE, 0))
    report.write_csv(snakemake.output.report_csv)
    counts = json.loads(Path(snakemake.input.cluster_counts).read_text())
    Path(snakemake.output.report_md).write_text(report_markdown(report, counts))
    category_of = {c: a["category"] for c, a in assignments.items() if a["kept"]}
    name_of = {c: names[c]["name"] for c in names}
    categorised = clusters.filter(pl.col("cluster").is_in(list(category_of))).with_columns(
        pl.col("cluster").replace_strict(category_of, return_dtype=pl.Utf8).alias("category"),
        pl.col("cluster").replace_strict(name_of, return_dtype=pl.Utf8).alias("cluster_name"),
    )
    categorised.drop("membership_vector").write_parquet(snakemake.output.categorised)
    print(report)
    print(categorised.group_by("category").len().sort("category"))
