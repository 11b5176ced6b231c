import polars as pl
import yaml

from value_drifts.core.io import logged, write_json
from value_drifts.data.datasets import load_hub_sft_dataset
from value_drifts.data.synthetic import sft_examples

MESSAGES = pl.Schema({"messages": pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))})

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
        # Template sets have no held-out split: the validation file is empty.
        validation, counts = [], {"train": len(rows), "validation": 0, "rejected": {}}
    else:
        rows, validation, counts = load_hub_sft_dataset(spec, seed=snakemake.params.seed)
    if counts["train"] != spec["size"]:
        # The checkpoint steps in the DAG were computed from spec["size"].
        raise ValueError(
            f"dataset has {counts['train']} training rows but config says size {spec['size']};"
            " set size to the real count so checkpoint steps match"
        )
    pl.DataFrame(rows).write_parquet(snakemake.output.train)
    pl.DataFrame(validation, schema=MESSAGES if not validation else None).write_parquet(
        snakemake.output.validation
    )
    write_json(snakemake.output.counts, counts)
    print(counts)
