import polars as pl
import yaml

from value_drifts.io import logged, write_json
from value_drifts.judge.prompt import load_template
from value_drifts.judge.run import judge_generations
from value_drifts.judge.transformers_backend import TransformersJudge

with logged(snakemake.log[0]):
    judge = snakemake.params.judge
    if judge["backend"] != "transformers":
        raise NotImplementedError("API judge backends arrive with the judge issue")
    import torch

    torch.set_num_threads(snakemake.threads)
    backend = TransformersJudge(
        snakemake.params.model_path,
        top_logprobs=judge.get("top_logprobs", 20),
        batch_size=judge.get("batch_size", 8),
    )
    judgments, counts = judge_generations(
        pl.read_parquet(snakemake.input.generations),
        yaml.safe_load(open(snakemake.input.topics)),
        load_template(snakemake.input.prompt),
        backend,
    )
    judgments.write_parquet(snakemake.output.judgments)
    write_json(snakemake.output.counts, counts)
    print(counts)
