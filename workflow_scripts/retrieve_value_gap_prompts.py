import polars as pl
import yaml

from value_drifts.core.io import logged, write_json
from value_drifts.data.value_gap_set import candidate_prompts, load_encoder, retrieve_prompts

with logged(snakemake.log[0]):
    value_gap = snakemake.params.value_gap
    prompts, counts = [], {}
    for path in snakemake.input.sources:
        source_prompts, source_counts = candidate_prompts(
            pl.read_parquet(path).to_dicts(),
            multi_turn=value_gap["multi_turn"],
            max_chars=value_gap["max_prompt_chars"],
        )
        prompts += source_prompts
        counts[path] = source_counts
    retrieved = retrieve_prompts(
        prompts,
        yaml.safe_load(open(snakemake.input.topics)),
        load_encoder(value_gap["encoder"]),
        per_category=value_gap["per_category"],
        min_similarity=value_gap["min_similarity"],
    )
    pl.DataFrame(retrieved).write_parquet(snakemake.output.retrieved)
    counts["retrieved"] = len(retrieved)
    write_json(snakemake.output.counts, counts)
    print(counts)
