import polars as pl

from value_drifts.analysis.aggregate import (
    judge_fingerprint_of,
    trajectory_question_values,
    trajectory_values,
)
from value_drifts.core.integrity import integrity_notes, recorded_shards, steps_with_notes
from value_drifts.core.io import logged, recorded_value
from value_drifts.core.job_settings import SETTINGS_COLUMN
from value_drifts.judge.run import check_one_generation, check_one_judge

with logged(snakemake.log[0]):
    paths = dict(zip(snakemake.params.steps, snakemake.input.judgments, strict=True))
    by_step = {step: pl.read_parquet(path) for step, path in paths.items()}
    check_one_judge({path: judge_fingerprint_of(by_step[step]) for step, path in paths.items()})
    check_one_generation({
        path: recorded_value(by_step[step], SETTINGS_COLUMN, "generation settings")
        for step, path in paths.items()
    })
    notes = integrity_notes(
        {step: recorded_shards(frame, f"step {step}") for step, frame in by_step.items()}
    )
    for line in steps_with_notes(notes):
        print(f"WARNING: {line}")
    trajectory_values(by_step, snakemake.params.ci_level).with_columns(
        pl.col("step").replace_strict(notes, default="", return_dtype=pl.Utf8)
        .alias("checkpoint_note")
    ).write_parquet(snakemake.output.values)
    trajectory_question_values(by_step).write_parquet(snakemake.output.question_values)
