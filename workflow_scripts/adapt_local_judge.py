import shutil

import yaml

from value_drifts.io import logged
from value_drifts.judge.adapt import adaptation_rows
from value_drifts.judge.prompt import load_template
from value_drifts.training.sft import SFTRun, train_sft

with logged(snakemake.log[0]):
    trainer = snakemake.params.trainer
    rows = adaptation_rows(
        spec=yaml.safe_load(open(snakemake.input.spec)),
        template=load_template(snakemake.input.prompt),
        size=trainer["size"],
        seed=snakemake.params.seed,
    )
    output = snakemake.output[0]
    run = SFTRun(
        model_path=snakemake.input.model,
        output_dir=output + ".training",
        learning_rate=trainer["learning_rate"],
        global_batch_size=trainer["global_batch_size"],
        per_device_batch_size=trainer["per_device_batch_size"],
        epochs=trainer["epochs"],
        save_steps=10**9,  # only the final model is needed
        max_length=trainer["max_length"],
        warmup_ratio=trainer.get("warmup_ratio", 0.0),
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    trained = train_sft(run, rows)
    trained.save_model(output)
    shutil.rmtree(run.output_dir)  # intermediate checkpoints are not needed
