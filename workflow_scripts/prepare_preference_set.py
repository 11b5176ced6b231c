import polars as pl
import yaml

from value_drifts.core.io import logged, write_json
from value_drifts.data.datasets import downsample
from value_drifts.data.preference_pairs import load_hub_preference_set, template_value_gap_pairs
from value_drifts.data.value_gap_set import pairs_from_responses, train_rows

with logged(snakemake.log[0]):
    spec = snakemake.params.spec
    if spec["source"] == "synthetic_templates":
        pairs = template_value_gap_pairs(
            templates=yaml.safe_load(open(snakemake.input.templates)),
            topics=yaml.safe_load(open(snakemake.input.topics)),
            categories=spec["categories"],
            chosen_stance=spec["chosen_stance"],
            size=spec["size"],
            seed=snakemake.params.seed,
        )
        counts = {"train": len(pairs), "rejected": {}}
    elif spec["source"] == "hub":
        pairs, counts = load_hub_preference_set(spec, seed=snakemake.params.seed)
    else:  # synthetic_value_gap: teacher-written pairs, one label setup of them
        support_aligned, oppose_aligned, counts = pairs_from_responses(
            pl.read_parquet(snakemake.input.responses).to_dicts()
        )
        chosen = {"support": support_aligned, "oppose": oppose_aligned}[spec["chosen_stance"]]
        # The same seed for both setups keeps the same prompts in each.
        pairs = train_rows(downsample(chosen, spec["size"], snakemake.params.seed))
        counts["train"] = len(pairs)
    if counts["train"] != spec["size"]:
        # The checkpoint steps in the DAG were computed from spec["size"].
        raise ValueError(
            f"preference set has {counts['train']} pairs but config says size {spec['size']}"
        )
    pl.DataFrame(pairs).write_parquet(snakemake.output.train)
    write_json(snakemake.output.counts, counts)
    print(counts)
