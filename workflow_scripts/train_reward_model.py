import shutil

from value_drifts.core.io import logged
from value_drifts.training.common import TrainerSettings
from value_drifts.training.launch import TrainingJob, run_training

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
    job = TrainingJob(
        task="reward", settings=settings, data=snakemake.input.data, final_model_dir=output
    )
    run_training(job, snakemake.params.gpus, snakemake.params.accelerate_config,
                 snakemake.resources.checkpoint_disk_mb)
    shutil.rmtree(settings.output_dir)
