import numpy as np
import polars as pl

from value_drifts.core.io import logged, write_json
from value_drifts.data.vprism import (
    assign_from_membership,
    cluster_counts,
    cluster_ngrams,
    soft_clusters,
)

with logged(snakemake.log[0]):
    settings = dict(snakemake.params.hdbscan)
    min_membership = settings.pop("min_membership")
    ngram_settings = snakemake.params.ngrams
    questions = pl.read_parquet(snakemake.input.questions)
    labels, membership = soft_clusters(np.load(snakemake.input.reduced), **settings)
    clusters, strength = assign_from_membership(membership, min_membership)
    counts = cluster_counts(labels, clusters)
    questions.with_columns(
        pl.Series("hdbscan_label", labels),
        pl.Series("cluster", clusters),
        pl.Series("membership", strength),
        pl.Series("membership_vector", membership.tolist()),
    ).write_parquet(snakemake.output.clusters)
    ngrams = cluster_ngrams(
        questions["question"].to_list(),
        clusters.tolist(),
        top_k=ngram_settings["top_k"],
        ngram_range=tuple(ngram_settings["ngram_range"]),
        stop_words=ngram_settings["stop_words"],
    )
    pl.DataFrame(
        [
            {"cluster": c, "rank": r, "ngram": g, "tfidf": s}
            for c, grams in ngrams.items()
            for r, (g, s) in enumerate(grams)
        ],
        schema={"cluster": pl.Int64, "rank": pl.Int64, "ngram": pl.Utf8, "tfidf": pl.Float64},
    ).write_parquet(snakemake.output.ngrams)
    write_json(snakemake.output.counts, counts)
    print(counts)
    for c, grams in ngrams.items():
        print(c, [g for g, _ in grams])
