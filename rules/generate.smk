if not ONE_JOB_PER_RUN:

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
            answers_digest=lambda wc, input: answers_digest(
                input.settings, input.questions
            ),
        script:
            "../workflow_scripts/generate.py"

else:

    rule generate_run:
        """Sample responses to every evaluation question from each evaluated checkpoint of
        a run in one job (generation.one_job_per_run): vLLM starts its engine once and
        loads each later checkpoint's weights in place; transformers loads each in the
        same process. Each checkpoint's answers are written as soon as they exist, so a job
        cut short resumes; weights go as in rule generate.
        """
        input:
            unpack(generate_run_inputs),
        output:
            directory(run_generations_dir("{model}", "{run}")),
        log:
            "logs/generate/{model}/{run}/run.log",
        benchmark:
            "benchmarks/generate/{model}/{run}/run.tsv"
        conda:
            GENERATION_ENV
        threads: lambda wc: generation_run_job(wc, 1)["cpus_per_task"]
        resources:
            gpu=generation_run_resource("gpu"),
            nodes=generation_run_resource("nodes"),
            cpus_per_task=generation_run_resource("cpus_per_task"),
            mem_mb=generation_run_resource("mem_mb"),
            runtime=generation_run_resource("runtime"),
        params:
            checkpoints=run_checkpoints_to_answer,
            settings=config["generation"],
            seed=config["seed"],
            # as in rule generate: what this workflow recorded when it started
            answers_digest=lambda wc, input: answers_digest(
                input.settings, input.questions
            ),
        script:
            "../workflow_scripts/generate_run.py"

    rule generate_step:
        """One checkpoint's answers, out of its run's (rule generate_run)."""
        input:
            run_generations_dir("{model}", "{run}"),
        output:
            generations_path("{model}", "{run}", "{step}"),
        localrule: True
        params:
            answers=lambda wc, input: step_answers_path(input[0], wc.step),
        shell:
            "cp -- {params.answers:q} {output:q}"
