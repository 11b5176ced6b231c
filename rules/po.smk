rule train_preference_optimisation:
    """PPO, DPO or SimPO from the final SFT checkpoint (issue: preference optimisation)."""
    input:
        sft=lambda wc: training_marker(wc.model, f"sft-{wc.sft_dataset}"),
        data=lambda wc: "results/data/preference/{}/train.parquet".format(
            PLAN.phase(wc.model, f"sft-{wc.sft_dataset}.{wc.po_run}").preference_set
        ),
    output:
        "results/models/{model}/sft-{sft_dataset}.{po_run}/training.json",
    log:
        "logs/po/train_{model}_{sft_dataset}.{po_run}.log",
    benchmark:
        "benchmarks/po/train_{model}_{sft_dataset}.{po_run}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=24 * 60,
    params:
        phase=lambda wc: PLAN.phase(wc.model, f"sft-{wc.sft_dataset}.{wc.po_run}"),
    script:
        "../workflow_scripts/train_preference_optimisation.py"
