from pathlib import Path

import polars as pl

from value_drifts.core.io import logged
from value_drifts.core.layout import run_generations_dir, step_answers_path
from value_drifts.generation.answers import (
    CheckpointAnswers,
    after_answering,
    copy_answers,
    reusable_answers,
    sampled_answers,
    write_answers,
)


def main():
    with logged(snakemake.log[0]):
        checkpoint = CheckpointAnswers(
            step=int(snakemake.wildcards.step),
            path=snakemake.params.model_path,
            model=snakemake.params.model,  # prompt style, tokenizer source, hub revision
            delete_weights=snakemake.params.delete_weights,
            # what one job per run made (generation.one_job_per_run), if it ran
            answers=str(step_answers_path(
                run_generations_dir(snakemake.wildcards.model, snakemake.wildcards.run),
                snakemake.wildcards.step)),
        )
        digest = snakemake.params.answers_digest
        output = Path(snakemake.output[0])
        # kept beside deleted weights, or made by one job per run before
        # generation.one_job_per_run was turned off
        reused = reusable_answers(checkpoint, digest, [checkpoint.answers])
        if reused is not None:
            copy_answers(reused, output)
            after_answering(checkpoint, output)
            return
        questions = pl.read_parquet(snakemake.input.questions)
        for _, answers in sampled_answers(
            [checkpoint], questions, snakemake.params.settings, snakemake.params.seed,
            digest, gpus=snakemake.resources.gpu, threads=snakemake.threads,
        ):
            write_answers(answers, output)
        after_answering(checkpoint, output)


# vLLM's worker processes may re-import this script: run only in the main process.
if __name__ == "__main__":
    main()
