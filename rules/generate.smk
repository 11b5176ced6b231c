rule generate:
    """Sample responses to every evaluation question from one checkpoint (transformers on
    CPU or vLLM with tensor parallelism on GPUs), then optionally delete the checkpoint's
    weights (training's output is its marker file, so nothing reruns), keeping a copy of
    the answers in the checkpoint folder that a rerun with the same settings restores.
    """
    input:
        unpack(generate_inputs),
    output:
        generations_path("{model}", "{run}", "{step}"),
    log:
        "logs/generate/{model}/{run}/step-{step}.log",
    benchmark:
        "benchmarks/generate/{model}/{run}/step-{step}.tsv"
    conda:
        GENERATION_ENV
    threads: lambda wc: generation_job(wc, 1)["cpus_per_task"]
    resources:
        gpu=generation_resource("gpu"),
        nodes=generation_resource("nodes"),
        cpus_per_task=generation_resource("cpus_per_task"),
        mem_mb=generation_resource("mem_mb"),
        runtime=generation_resource("runtime"),
    params:
        model_path=lambda wc: model_dir(wc.model, wc.run, wc.step),
        model=generation_model,
        settings=config["generation"],
        seed=config["seed"],
        delete_weights=deletes_checkpoint_weights,
        # what the answers are made from, as this workflow recorded it when it started
        # (job_settings.answers_digest), not as another process may have rewritten the file
        answers_digest=lambda wc, input: answers_digest(input.settings, input.questions),
    script:
        "../workflow_scripts/generate.py"
