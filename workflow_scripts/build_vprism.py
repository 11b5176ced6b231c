from pathlib import Path

import polars as pl
import yaml

from value_drifts.core.io import logged, write_json
from value_drifts.data.vprism import sample_per_category, shortfall_warnings

QUESTION_COLUMNS = ["question_id", "category", "question", "prompt", "cluster", "cluster_name"]

with logged(snakemake.log[0]):
    categories = list(yaml.safe_load(Path(snakemake.input.topics).read_text()))
    filtered = pl.read_parquet(snakemake.input.filtered)
    enforce = snakemake.params.enforce_filter
    # Without enforcement the filter's answers are recorded (filter_counts.json) but every
    # question of a kept cluster stays a candidate.
    pool = filtered.filter(pl.col("value_based")) if enforce else filtered
    pool = pool.rename({"prompt_id": "question_id"}).select(QUESTION_COLUMNS)
    questions, counts = sample_per_category(
        pool,
        categories,
        snakemake.params.per_category,
        snakemake.params.seed,
        on_shortfall=snakemake.params.on_shortfall,
    )
    counts["filter_enforced"] = enforce
    counts["candidates"] = pool.height
    questions.write_parquet(snakemake.output.questions)
    write_json(snakemake.output.counts, counts)
    for warning in shortfall_warnings(counts):
        print(warning)
    print(questions.group_by("category", maintain_order=True).len())
