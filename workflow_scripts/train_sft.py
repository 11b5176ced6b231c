from pathlib import Path

import polars as pl

from value_drifts.io import logged, write_json
from value_drifts.training.checkpoints import saved_steps
from value_drifts.training.sft import SFTRun, train_sft

with logged(snakemake.log[0]):
    trainer = snakemake.params.trainer
    run = SFTRun(
        model_path=snakemake.input.model,
        output_dir=snakemake.params.output_dir,
        learning_rate=trainer["learning_rate"],
        global_batch_size=trainer["global_batch_size"],
        per_device_batch_size=trainer["per_device_batch_size"],
        epochs=trainer["epochs"],
        save_steps=snakemake.config["sft_datasets"][snakemake.wildcards.sft_dataset]["save_steps"],
        max_length=trainer["max_length"],
        warmup_ratio=trainer.get("warmup_ratio", 0.03),
        lr_scheduler=trainer.get("lr_scheduler", "cosine"),
        weight_decay=trainer.get("weight_decay", 0.0),
        seed=snakemake.params.seed,
        save_only_model=trainer.get("save_only_model", True),
        gradient_checkpointing=trainer.get("gradient_checkpointing", False),
        threads=snakemake.threads,
    )
    rows = pl.read_parquet(snakemake.input.data).select("messages").to_dicts()
    train_sft(run, rows)
    steps = saved_steps(Path(run.output_dir))
    expected = snakemake.params.steps
    if steps != expected:
        raise RuntimeError(f"trainer saved steps {steps}, the workflow planned {expected}")
    write_json(snakemake.output[0], {"steps": steps, "run": run.__dict__})
