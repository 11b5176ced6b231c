from value_drifts.analysis.downstream import evaluate_checkpoint
from value_drifts.core.io import logged, write_json

with logged(snakemake.log[0]):
    settings = snakemake.params.downstream
    summary = evaluate_checkpoint(
        snakemake.params.model_path,
        settings["tasks"],
        backend=settings["backend"],
        gpus=snakemake.resources.gpu,  # what the job asked for, see res.downstream_gpus
        num_fewshot=settings["num_fewshot"],
        include_path=settings.get("include_path"),
        batch_size=settings["batch_size"],
        limit=settings.get("limit"),
        seed=snakemake.params.seed,
    )
    write_json(snakemake.output[0], summary)
    print(summary)
