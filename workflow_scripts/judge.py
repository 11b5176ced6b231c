from pathlib import Path

import polars as pl
import yaml

from value_drifts.core.io import logged, write_json
from value_drifts.judge.backends import make_backend
from value_drifts.judge.canary import CanarySettings, unsupported
from value_drifts.judge.prompt import load_template
from value_drifts.judge.reference import sample_answers
from value_drifts.judge.run import judge_checkpoint

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
    generations = pl.read_parquet(snakemake.input.generations)
    # rule reference_judge: the reference judge's fixed seeded sample of the answers
    # (judge.reference.answers_per_checkpoint; rule judge has no such param: all answers)
    if hasattr(snakemake.params, "answers_per_checkpoint"):
        generations = sample_answers(
            generations, snakemake.params.answers_per_checkpoint, snakemake.params.seed
        )
    judgments, counts = judge_checkpoint(
        judge,
        backend,
        load_template(snakemake.input.prompt),
        generations,
        yaml.safe_load(open(snakemake.input.topics)),
        snakemake.params.fingerprint_settings,
        where=str(Path(snakemake.output.judgments).parent),
        canaries=canaries,
    )
    judgments.write_parquet(snakemake.output.judgments)
    write_json(snakemake.output.counts, counts)
