import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from value_drifts.core.checkpoints import (
    KEPT_ANSWERS,
    SETTINGS_COLUMN,
    delete_checkpoint_weights,
    kept_answers,
    require_weights,
    weights_deleted,
)
from value_drifts.core.integrity import shard_columns, shard_digests
from value_drifts.core.io import logged
from value_drifts.generation.sampling import SamplingSettings, generate_transformers, generate_vllm


def main():
    with logged(snakemake.log[0]):
        settings_config = snakemake.params.settings
        settings = SamplingSettings(
            samples=settings_config["samples"],
            temperature=settings_config["temperature"],
            max_new_tokens=settings_config["max_new_tokens"],
            seed=snakemake.params.seed,
            prompt_style=snakemake.params.model["prompt_style"],
            base_prompt_suffix=settings_config["base_prompt_suffix"],
        )
        checkpoint = Path(snakemake.params.model_path)
        digest = snakemake.params.answers_digest
        if weights_deleted(checkpoint):
            kept = kept_answers(checkpoint, digest)
            if kept is not None:  # same settings: the answers kept when the weights went
                shutil.copyfile(kept, snakemake.output[0])
                print(f"weights deleted; restored the answers kept in {kept}")
                return
        require_weights(checkpoint)
        model = snakemake.params.model  # prompt style, tokenizer source, hub revision
        questions = pl.read_parquet(snakemake.input.questions)
        # the checkpoint's weights, per shard (integrity), hashed in a thread while the
        # engine loads them (hashlib releases the GIL): an 8B checkpoint's 16 GB no longer
        # delay every generation job's start; a hub revision is named by the hub, not hashed
        with ThreadPoolExecutor(max_workers=1) as pool:
            hashing = pool.submit(shard_digests, checkpoint) if checkpoint.exists() else None
            generations = _generate(settings, settings_config, model, questions)
            weights = shard_columns(hashing.result()) if hashing else {}
        generations = generations.with_columns(
            pl.lit(digest).alias(SETTINGS_COLUMN),
            *[pl.lit(value).alias(name) for name, value in weights.items()],
        )
        generations.write_parquet(snakemake.output[0])
        if snakemake.params.delete_weights:
            shutil.copyfile(snakemake.output[0], checkpoint / KEPT_ANSWERS)
            deleted = delete_checkpoint_weights(checkpoint)
            print(f"deleted checkpoint weights: {deleted}")


def _generate(settings, settings_config, model, questions):
    if settings_config["backend"] == "vllm":
        return generate_vllm(
            snakemake.params.model_path,
            questions,
            settings,
            tensor_parallel_size=max(snakemake.resources.gpu, 1),
            engine_args=settings_config.get("vllm_engine_args"),
            tokenizer_path=model["tokenizer"],
            revision=model["revision"],
        )
    return generate_transformers(
        snakemake.params.model_path,
        questions,
        settings,
        batch_size=settings_config["batch_size"],
        threads=snakemake.threads,
        tokenizer_path=model["tokenizer"],
        revision=model["revision"],
    )


# vLLM's worker processes may re-import this script: run only in the main process.
if __name__ == "__main__":
    main()
