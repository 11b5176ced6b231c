from pathlib import Path

import polars as pl

from value_drifts.generation import SamplingSettings, generate_transformers, generate_vllm
from value_drifts.io import logged
from value_drifts.training.checkpoints import delete_checkpoint_weights, require_weights


def main():
    with logged(snakemake.log[0]):
        settings_config = snakemake.params.settings
        settings = SamplingSettings(
            samples=settings_config["samples"],
            temperature=settings_config["temperature"],
            max_new_tokens=settings_config["max_new_tokens"],
            seed=snakemake.params.seed,
            prompt_style=snakemake.params.prompt_style,
            base_prompt_suffix=settings_config.get("base_prompt_suffix", "\nResponse:"),
        )
        require_weights(Path(snakemake.params.model_path))
        questions = pl.read_parquet(snakemake.input.questions)
        if settings_config["backend"] == "vllm":
            generations = generate_vllm(
                snakemake.params.model_path,
                questions,
                settings,
                tensor_parallel_size=max(snakemake.resources.gpu, 1),
                engine_args=settings_config.get("vllm_engine_args"),
            )
        else:
            generations = generate_transformers(
                snakemake.params.model_path,
                questions,
                settings,
                batch_size=settings_config.get("batch_size", 8),
                threads=snakemake.threads,
            )
        generations.write_parquet(snakemake.output[0])
        if snakemake.params.delete_weights:
            deleted = delete_checkpoint_weights(Path(snakemake.params.model_path))
            print(f"deleted checkpoint weights: {deleted}")


# vLLM's worker processes may re-import this script: run only in the main process.
if __name__ == "__main__":
    main()
