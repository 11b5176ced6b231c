from pathlib import Path

import polars as pl
import yaml

from value_drifts.core.io import logged, write_json
from value_drifts.judge.backends import backend_counts, make_backend
from value_drifts.judge.canary import CanarySettings, canary_counts, unsupported
from value_drifts.judge.prompt import load_template
from value_drifts.judge.reference import sample_answers
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
    # judge.canaries: the openai backend first re-asks a few cached prompts and fails on a
    # changed server (value_drifts.judge.canary); other backends send none (recorded).
    canaries = CanarySettings.from_judge(judge)
    if canaries.count and hasattr(backend, "canaries"):
        backend.canaries = canaries
    elif canaries.count:
        print(f"judge.canaries = {canaries.count}: {unsupported(judge['backend'])}")
    template = load_template(snakemake.input.prompt)
    generations = pl.read_parquet(snakemake.input.generations)
    # rule reference_judge: the reference judge's fixed seeded sample of the answers
    # (judge.reference.answers_per_checkpoint; rule judge has no such param: all answers)
    if hasattr(snakemake.params, "answers_per_checkpoint"):
        generations = sample_answers(
            generations, snakemake.params.answers_per_checkpoint, snakemake.params.seed
        )
    judgments, counts = judge_generations(
        generations,
        yaml.safe_load(open(snakemake.input.topics)),
        template,
        backend,
        label_mass=min_label_mass(judge),
    )
    counts.update(backend_counts(backend))
    counts["canaries"] = canary_counts(
        canaries, getattr(backend, "last_canaries", None), judge["backend"]
    )
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
