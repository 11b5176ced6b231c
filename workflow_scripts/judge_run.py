from pathlib import Path

import polars as pl
import yaml

from value_drifts.core.io import logged, write_json
from value_drifts.core.layout import step_answers_path, step_judge_counts_path
from value_drifts.judge.backends import make_backend
from value_drifts.judge.canary import CanarySettings
from value_drifts.judge.prompt import load_template
from value_drifts.judge.run import judge_checkpoint, judge_prompts
from value_drifts.judge.stance import UnreadableJudgeError


def main():
    with logged(snakemake.log[0]):
        judge = snakemake.params.judge
        # one backend for the run's checkpoints: a vLLM judge starts its engine once (at
        # its first prompt not in the cache); a rerun answers from the cache
        backend = make_backend(
            judge, model_path=snakemake.params.model_path,
            state_path=snakemake.params.batch_state, threads=snakemake.threads,
        )
        template = load_template(snakemake.input.prompt)
        topics = yaml.safe_load(open(snakemake.input.topics))
        steps = list(zip(snakemake.params.steps, snakemake.input.generations, strict=True))
        # every checkpoint's prompts first: the engine is sized once for the longest
        if prepare := getattr(backend, "prepare", None):
            prepare([
                prompt for _, generations in steps
                for prompt in judge_prompts(pl.read_parquet(generations), topics, template,
                                            backend.answer_fit)[0]
            ])
        output = Path(snakemake.output[0])
        output.mkdir(parents=True, exist_ok=True)
        canaries = CanarySettings.from_judge(judge)
        unreadable = []
        for step, generations in steps:
            print(f"step {step}: {generations}")
            try:
                judgments, counts = judge_checkpoint(
                    judge, backend, template, pl.read_parquet(generations), topics,
                    snakemake.params.fingerprint_settings,
                    where=str(Path(generations).parent),
                    canaries=canaries,
                )
            except UnreadableJudgeError as error:  # judge the others, then name them all
                unreadable.append(str(error))
                continue
            judgments.write_parquet(step_answers_path(output, step))
            write_json(step_judge_counts_path(output, step), counts)
        if unreadable:
            raise UnreadableJudgeError("\n".join(unreadable))


# vLLM's worker processes may re-import this script: run only in the main process.
if __name__ == "__main__":
    main()
