import polars as pl
import yaml

from value_drifts.io import logged, write_json
from value_drifts.judge.backends import backend_counts, make_backend
from value_drifts.judge.prompt import load_template
from value_drifts.judge.run import judge_generations

with logged(snakemake.log[0]):
    judge = snakemake.params.judge
    backend = make_backend(
        judge,
        model_path=snakemake.params.model_path,
        state_path=snakemake.params.batch_state,
        threads=snakemake.threads,
    )
    judgments, counts = judge_generations(
        pl.read_parquet(snakemake.input.generations),
        yaml.safe_load(open(snakemake.input.topics)),
        load_template(snakemake.input.prompt),
        backend,
    )
    counts.update(backend_counts(backend))
    judgments.write_parquet(snakemake.output.judgments)
    write_json(snakemake.output.counts, counts)
    print(counts)
