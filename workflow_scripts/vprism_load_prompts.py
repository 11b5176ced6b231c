import polars as pl

from value_drifts.core.io import logged, write_json
from value_drifts.data.vprism import load_prism, prism_prompts

with logged(snakemake.log[0]):
    source = snakemake.params.source
    dataset = load_prism(source)
    prompts, counts = prism_prompts(
        dataset,
        prompt_column=source["prompt_column"],
        conversation_types=snakemake.params.conversation_types,
    )
    if not prompts:
        raise ValueError(f"no usable prompts in {source}: {counts}")
    pl.DataFrame(prompts).write_parquet(snakemake.output.prompts)
    write_json(snakemake.output.counts, counts)
    print(counts)
