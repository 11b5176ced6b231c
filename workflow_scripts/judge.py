from pathlib import Path

import polars as pl
import yaml

from value_drifts.core.io import logged, write_json
from value_drifts.judge.backends import backend_counts, make_backend
from value_drifts.judge.prompt import load_template
from value_drifts.judge.run import (
    check_readable,
    judge_fingerprint,
    judge_generations,
    min_label_mass,
)

with logged(snakemake.log[0]):
    judge = snakemake.params.judge
    backend = make_backend(
        judge,
        model_path=snakemake.params.model_path,
        state_path=snakemake.params.batch_state,
        threads=snakemake.threads,
    )
    template = load_template(snakemake.input.prompt)
    judgments, counts = judge_generations(
        pl.read_parquet(snakemake.input.generations),
        yaml.safe_load(open(snakemake.input.topics)),
        template,
        backend,
        label_mass=min_label_mass(judge),
    )
    counts.update(backend_counts(backend))
    fingerprint = judge_fingerprint(
        judge, template, getattr(backend, "identity", None),
        settings=snakemake.params.fingerprint_settings,
    )
    counts["judge_fingerprint"] = fingerprint
    print(counts)
    check_readable(counts["health"], judge, str(Path(snakemake.output.judgments).parent))
    judgments.with_columns(
        pl.lit(fingerprint["id"], dtype=pl.Utf8).alias("judge_fingerprint")
    ).write_parquet(snakemake.output.judgments)
    write_json(snakemake.output.counts, counts)
