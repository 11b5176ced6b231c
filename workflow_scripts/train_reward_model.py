import shutil

import polars as pl

from value_drifts.io import logged
from value_drifts.training.common import TrainerSettings
from value_drifts.training.preference import train_reward_model

with logged(snakemake.log[0]):
    output = snakemake.output[0]
    settings = TrainerSettings.from_config(
        snakemake.params.trainer,
        model_path=snakemake.params.model_path,
        output_dir=output + ".training",
        save_steps=10**9,  # only the final model is needed; a crash restarts (1 epoch)
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    trainer = train_reward_model(settings, pl.read_parquet(snakemake.input.data).to_dicts())
    trainer.save_model(output)
    shutil.rmtree(settings.output_dir)
