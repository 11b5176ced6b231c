from pathlib import Path

import polars as pl

from value_drifts.core.io import logged
from value_drifts.core.layout import run_generations_dir, step_answers_path
from value_drifts.generation.answers import (
    CheckpointAnswers,
    after_answering,
    copy_answers,
    part_is_current,
    restored_answers,
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
        restored = restored_answers(checkpoint, digest)
        if restored is not None:  # same settings: the answers kept when the weights went
            copy_answers(restored, output)
            return
        if part_is_current(Path(checkpoint.answers), checkpoint, digest):
            # e.g. made by one job per run before generation.one_job_per_run was turned off
            print(f"current answers in {checkpoint.answers}")
            copy_answers(checkpoint.answers, output)
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
