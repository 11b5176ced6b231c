from pathlib import Path

import polars as pl
import yaml

from value_drifts.core.io import logged, write_json
from value_drifts.core.layout import step_answers_path, step_judge_counts_path
from value_drifts.judge.backends import make_backend
from value_drifts.judge.canary import CanarySettings
from value_drifts.judge.prompt import load_template
from value_drifts.judge.run import judge_checkpoint


def main():
    with logged(snakemake.log[0]):
        judge = snakemake.params.judge
        # one backend for the run's checkpoints: a vLLM judge starts its engine once (at
        # its first prompt not in the cache); a rerun answers from the cache
        backend = make_backend(
            judge, model_path=snakemake.params.model_path,
            state_path=snakemake.params.batch_state,
            threads=snakemake.threads,
        )
        template = load_template(snakemake.input.prompt)
        topics = yaml.safe_load(open(snakemake.input.topics))
        output = Path(snakemake.output[0])
        output.mkdir(parents=True, exist_ok=True)
        for step, generations in zip(snakemake.params.steps, snakemake.input.generations,
                                     strict=True):
            print(f"step {step}: {generations}")
            judgments, counts = judge_checkpoint(
                judge, backend, template, pl.read_parquet(generations), topics,
                snakemake.params.fingerprint_settings, where=str(Path(generations).parent),
                canaries=CanarySettings.from_judge(judge),
            )
            judgments.write_parquet(step_answers_path(output, step))
            write_json(step_judge_counts_path(output, step), counts)


# vLLM's worker processes may re-import this script: run only in the main process.
if __name__ == "__main__":
    main()
