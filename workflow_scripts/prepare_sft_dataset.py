import polars as pl
import yaml

from value_drifts.datasets import load_hub_sft_dataset
from value_drifts.io import logged, write_json
from value_drifts.synthetic import sft_examples

with logged(snakemake.log[0]):
    spec = snakemake.params.spec
    if spec["source"] == "synthetic":
        rows = sft_examples(
            templates=yaml.safe_load(open(snakemake.input.templates)),
            topics=yaml.safe_load(open(snakemake.input.topics)),
            stance_mix=spec["stance_mix"],
            size=spec["size"],
            on_topic_share=spec["on_topic_share"],
            seed=snakemake.params.seed,
        )
        counts = {"train": len(rows), "rejected": {}}
    else:
        rows, counts = load_hub_sft_dataset(spec, seed=snakemake.params.seed)
    if counts["train"] != spec["size"]:
        # The checkpoint steps in the DAG were computed from spec["size"].
        raise ValueError(
            f"dataset has {counts['train']} training rows but config says size {spec['size']};"
            " set size to the real count so checkpoint steps match"
        )
    pl.DataFrame(rows).write_parquet(snakemake.output.train)
    write_json(snakemake.output.counts, counts)
    print(counts)
