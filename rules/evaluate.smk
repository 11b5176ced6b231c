# Downstream evaluation with lm-evaluation-harness (Table 17).


rule downstream_eval:
    """Benchmarks (5-shot) for one base, final SFT or final PO checkpoint."""
    input:
        checkpoint_input,
    output:
        "results/{model}/{run}/downstream.json",
    log:
        "logs/downstream/{model}/{run}.log",
    benchmark:
        "benchmarks/downstream/{model}/{run}.tsv"
    conda:
        "../envs/analysis.yaml"
    # sized like a generation job of the same model (vLLM, tensor-parallel on GPUs)
    threads: lambda wc: generation_job(wc, 1)["cpus_per_task"]
    resources:
        gpu=generation_resource("gpu"),
        nodes=generation_resource("nodes"),
        cpus_per_task=generation_resource("cpus_per_task"),
        mem_mb=generation_resource("mem_mb"),
        runtime=lambda wc, attempt: 8 * 60 * attempt,
    params:
        model_path=lambda wc: final_checkpoint_dir(wc.model, wc.run),
        downstream=config.get("downstream", {}),
        gpus=lambda wc: config["models"][wc.model].get("gpus", 0),
        seed=config["seed"],
    script:
        "../workflow_scripts/downstream_eval.py"


rule downstream_table:
    """Table 17: every evaluated checkpoint on every benchmark, value ± standard error."""
    input:
        downstream_results,
    output:
        csv=report(
            "results/tables/table17_downstream.csv",
            caption="../report/table17.rst",
            category="Tables",
        ),
        md="results/tables/table17_downstream.md",
    log:
        "logs/tables/table17_downstream.log",
    conda:
        "../envs/analysis.yaml"
    params:
        checkpoints=lambda wc: downstream_checkpoints(),
    script:
        "../workflow_scripts/downstream_table.py"
