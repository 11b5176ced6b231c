import os
import shutil
from pathlib import Path

import polars as pl

from value_drifts.core.io import logged
from value_drifts.core.layout import step_answers_path
from value_drifts.generation.answers import (
    CheckpointAnswers,
    after_answering,
    copy_answers,
    parts_dir,
    reusable_answers,
    sampled_answers,
    write_answers,
)


def main():
    with logged(snakemake.log[0]):
        checkpoints = [CheckpointAnswers(**checkpoint) for checkpoint in snakemake.params.checkpoints]
        digest = snakemake.params.answers_digest
        output = Path(snakemake.output[0])
        # each checkpoint's answers as soon as they exist: a job cut short (preemption, a
        # time limit, Ctrl-C) resumes at the first checkpoint without current ones
        parts = parts_dir(output)
        to_sample = []
        for checkpoint in checkpoints:
            part = step_answers_path(parts, checkpoint.step)
            # kept beside deleted weights, an earlier attempt's, or made by one job per
            # checkpoint before generation.one_job_per_run
            reused = reusable_answers(checkpoint, digest, [part, checkpoint.answers])
            if reused is None:
                to_sample.append(checkpoint)
                continue
            if reused != part:
                copy_answers(reused, part)
            after_answering(checkpoint, part)
        print(f"{len(to_sample)} of {len(checkpoints)} checkpoints to sample")
        questions = pl.read_parquet(snakemake.input.questions)
        for checkpoint, answers in sampled_answers(
            to_sample, questions, snakemake.params.settings, snakemake.params.seed, digest,
            gpus=snakemake.resources.gpu, threads=snakemake.threads,
        ):
            part = step_answers_path(parts, checkpoint.step)
            write_answers(answers, part)
            after_answering(checkpoint, part)
        # only this run's checkpoints (a part of a step no longer evaluated stays out)
        wanted = {step_answers_path(parts, c.step).name for c in checkpoints}
        for stale in parts.iterdir():
            if stale.name not in wanted:
                stale.unlink()
        shutil.rmtree(output, ignore_errors=True)
        os.replace(parts, output)


# vLLM's worker processes may re-import this script: run only in the main process.
if __name__ == "__main__":
    main()
