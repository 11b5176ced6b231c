

rule prepare_base_model:
    """A base model as a transformers directory: a hub snapshot, or a GGUF converted."""
    input:
        settings=settings_of(
            "models/{model}",
            lambda wc, c: {
                k: v for k, v in c["models"][wc.model].items() if k != "prompt_style"
            },
        ),
    output:
        directory(base_model_dir("{model}")),
    log:
        "logs/models/prepare_base_model_{model}.log",
    benchmark:
        "benchmarks/models/prepare_base_model_{model}.tsv"
    conda:
        conda_env("train")
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: res.prepare_model_resources(
            model_size(wc.model), attempt, CLUSTER
        )["mem_mb"],
        runtime=lambda wc, attempt: res.prepare_model_resources(
            model_size(wc.model), attempt, CLUSTER
        )["runtime"],
    params:
        spec=lambda wc: config["models"][wc.model],
        trained=lambda wc: bool(PLAN.sft_phases(wc.model)),
    script:
        "../workflow_scripts/prepare_base_model.py"
