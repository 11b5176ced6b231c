import shutil

import yaml

from value_drifts.core.io import logged
from value_drifts.judge.adapt import adaptation_rows
from value_drifts.judge.prompt import load_template
from value_drifts.training.common import TrainerSettings
from value_drifts.training.sft import train_sft

with logged(snakemake.log[0]):
    trainer = snakemake.params.trainer
    rows = adaptation_rows(
        spec=yaml.safe_load(open(snakemake.input.spec)),
        template=load_template(snakemake.input.prompt),
        size=trainer["size"],
        seed=snakemake.params.seed,
    )
    output = snakemake.output[0]
    run = TrainerSettings.from_config(
        trainer,
        model_path=snakemake.input.model,
        output_dir=output + ".training",
        save_steps=10**9,  # only the final model is needed
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    trained = train_sft(run, rows)
    trained.save_model(output)
    shutil.rmtree(run.output_dir)  # intermediate checkpoints are not needed
