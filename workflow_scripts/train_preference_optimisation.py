from pathlib import Path

from value_drifts.core.checkpoints import saved_steps
from value_drifts.core.io import logged, write_json
from value_drifts.training.common import TrainerSettings
from value_drifts.training.launch import TrainingJob, run_training

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
    algorithm = snakemake.params.algorithm
    job = TrainingJob(
        task=algorithm,
        settings=settings,
        data=snakemake.input.data,
        hyper=dict(hyper),
        reward_model_path=snakemake.input.get("reward_model"),
    )
    run_training(job, snakemake.params.gpus, snakemake.params.accelerate_config,
                 snakemake.resources.checkpoint_disk_mb)
    steps = saved_steps(Path(settings.output_dir))
    if steps != snakemake.params.steps:
        raise RuntimeError(f"trainer saved steps {steps}, the workflow planned {snakemake.params.steps}")
    write_json(snakemake.output[0], {"algorithm": algorithm, "steps": steps, "hyper": hyper})
