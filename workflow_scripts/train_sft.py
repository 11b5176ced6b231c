from pathlib import Path

from value_drifts.core.checkpoints import saved_steps
from value_drifts.core.io import logged, write_json
from value_drifts.training.common import TrainerSettings
from value_drifts.training.launch import TrainingJob, run_training

with logged(snakemake.log[0]):
    run = TrainerSettings.from_config(
        snakemake.params.trainer,
        model_path=snakemake.input.model,
        output_dir=snakemake.params.output_dir,
        save_steps=snakemake.params.save_steps,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    job = TrainingJob(task="sft", settings=run, data=snakemake.input.data)
    run_training(job, snakemake.params.gpus, snakemake.params.accelerate_config,
                 snakemake.resources.checkpoint_disk_mb)
    steps = saved_steps(Path(run.output_dir))
    expected = snakemake.params.steps
    if steps != expected:
        raise RuntimeError(f"trainer saved steps {steps}, the workflow planned {expected}")
    write_json(snakemake.output[0], {"steps": steps, "run": run.__dict__})
