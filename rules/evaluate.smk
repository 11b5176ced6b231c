# Downstream evaluation with lm-evaluation-harness (Table 17).


rule downstream_eval:
    """Benchmarks (5-shot) for one base, final SFT or final PO checkpoint."""
    input:
        checkpoint_input,
        settings=recorded_settings(
            "downstream",
            lambda c: {"downstream": c.get("downstream", {}), "seed": c["seed"]},
        ),
    output:
        downstream_path("{model}", "{run}"),
    log:
        "logs/downstream/{model}/{run}.log",
    benchmark:
        "benchmarks/downstream/{model}/{run}.tsv"
    conda:
        DOWNSTREAM_ENV
    # the GPUs its lm-eval backend uses; the job passes that number to vLLM
    threads: lambda wc: downstream_resource("cpus_per_task")(wc, 1)
    resources:
        gpu=downstream_resource("gpu"),
        nodes=downstream_resource("nodes"),
        cpus_per_task=downstream_resource("cpus_per_task"),
        mem_mb=downstream_resource("mem_mb"),
        runtime=downstream_resource("runtime"),
    params:
        model_path=lambda wc: final_checkpoint_dir(wc.model, wc.run),
        downstream=config.get("downstream", {}),
        seed=config["seed"],
    script:
        "../workflow_scripts/downstream_eval.py"


rule downstream_table:
    """Table 17: every evaluated checkpoint on every benchmark, value ± standard error."""
    input:
        downstream=downstream_results,
    output:
        csv=report(
            table(DOWNSTREAM_TABLE, "csv"),
            caption="../report/table17.rst",
            category="Tables",
        ),
        md=table(DOWNSTREAM_TABLE),
    log:
        "logs/tables/table17_downstream.log",
    conda:
        conda_env("analysis")
    params:
        checkpoints=lambda wc: downstream_checkpoints(),
    script:
        "../workflow_scripts/downstream_table.py"
