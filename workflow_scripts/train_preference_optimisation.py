from pathlib import Path

import polars as pl

from value_drifts.io import logged, write_json
from value_drifts.training.checkpoints import saved_steps
from value_drifts.training.common import TrainerSettings
from value_drifts.training.preference import train_dpo, train_ppo, train_simpo

with logged(snakemake.log[0]):
    hyper = snakemake.params.hyper
    settings = TrainerSettings.from_config(
        hyper,
        model_path=snakemake.params.model_path,
        output_dir=snakemake.params.output_dir,
        save_steps=hyper["save_steps"],
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    pairs = pl.read_parquet(snakemake.input.data).to_dicts()
    algorithm = snakemake.params.algorithm
    if algorithm == "dpo":
        train_dpo(settings, hyper, pairs)
    elif algorithm == "simpo":
        train_simpo(settings, hyper, pairs)
    else:
        train_ppo(settings, hyper, pairs, reward_model_path=snakemake.input.reward_model)
    steps = saved_steps(Path(settings.output_dir))
    if steps != snakemake.params.steps:
        raise RuntimeError(f"trainer saved steps {steps}, the workflow planned {snakemake.params.steps}")
    write_json(snakemake.output[0], {"algorithm": algorithm, "steps": steps, "hyper": hyper})
