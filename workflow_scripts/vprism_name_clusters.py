from pathlib import Path

import polars as pl

from value_drifts.core.io import logged, write_json
from value_drifts.data.teacher import make_teacher
from value_drifts.data.vprism import central_questions, name_clusters

with logged(snakemake.log[0]):
    clusters = pl.read_parquet(snakemake.input.clusters)
    ngrams = {
        c: group.sort("rank")["ngram"].to_list()
        for (c,), group in pl.read_parquet(snakemake.input.ngrams).group_by("cluster")
    }
    examples = {
        c: central_questions(
            clusters["question"].to_list(),
            clusters["cluster"].to_list(),
            clusters["membership"].to_list(),
            c,
            snakemake.params.examples,
        )
        for c in ngrams
    }
    teacher = make_teacher(snakemake.params.llm)
    names, counts = name_clusters(
        ngrams, examples, teacher, Path(snakemake.input.template).read_text()
    )
    pl.DataFrame([{"cluster": c, **v} for c, v in sorted(names.items())]).write_parquet(
        snakemake.output.names
    )
    write_json(snakemake.output.counts, counts)
    print(counts)
    for c, v in sorted(names.items()):
        print(c, v["name"], f"({v['name_source']})")
