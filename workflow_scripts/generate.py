import polars as pl

from value_drifts.generation import SamplingSettings, generate_transformers
from value_drifts.io import logged

with logged(snakemake.log[0]):
    settings_config = snakemake.params.settings
    if settings_config["backend"] != "transformers":
        raise NotImplementedError("the vLLM backend arrives with the cluster/GPU issue")
    settings = SamplingSettings(
        samples=settings_config["samples"],
        temperature=settings_config["temperature"],
        max_new_tokens=settings_config["max_new_tokens"],
        seed=snakemake.params.seed,
        prompt_style=snakemake.params.prompt_style,
        base_prompt_suffix=settings_config.get("base_prompt_suffix", "\nResponse:"),
    )
    generations = generate_transformers(
        snakemake.params.model_path,
        pl.read_parquet(snakemake.input.questions),
        settings,
        batch_size=settings_config.get("batch_size", 8),
        threads=snakemake.threads,
    )
    generations.write_parquet(snakemake.output[0])
