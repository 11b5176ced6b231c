rule prepare_sft_dataset:
    """An SFT dataset in chat format (parquet), split 90/10 (seeded), with its row counts,
    rejects by reason and any mismatch with the paper's sizes."""
    input:
        unpack(sft_dataset_inputs),
    output:
        train=sft_data("{sft_dataset}"),
        validation=sft_data("{sft_dataset}", "validation.parquet"),
        counts=sft_data("{sft_dataset}", "counts.json"),
    log:
        "logs/data/prepare_sft_dataset_{sft_dataset}.log",
    benchmark:
        "benchmarks/data/prepare_sft_dataset_{sft_dataset}.tsv"
    conda:
        conda_env("analysis")
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        spec=lambda wc: config["sft_datasets"][wc.sft_dataset],
        seed=config["seed"],
    script:
        "../workflow_scripts/prepare_sft_dataset.py"


rule prepare_preference_set:
    """A preference set as prompt/chosen/rejected parquet, with counts and rejects by reason."""
    input:
        unpack(preference_set_inputs),
    output:
        train=preference_data("{preference_set}"),
        counts=preference_data("{preference_set}", "counts.json"),
    log:
        "logs/data/prepare_preference_set_{preference_set}.log",
    benchmark:
        "benchmarks/data/prepare_preference_set_{preference_set}.tsv"
    conda:
        conda_env("analysis")
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        spec=lambda wc: config["preference_sets"][wc.preference_set],
        seed=config["seed"],
    script:
        "../workflow_scripts/prepare_preference_set.py"


rule select_questions:
    """The evaluation questions: a seeded per-category sample, checked against the topic map."""
    input:
        **QUESTION_SOURCES,
    output:
        QUESTIONS,
    log:
        "logs/data/select_questions.log",
    conda:
        conda_env("analysis")
    params:
        per_category=config["questions"].get("per_category"),
        categories=CATEGORIES,
        seed=config["seed"],
    script:
        "../workflow_scripts/select_questions.py"


rule retrieve_value_gap_prompts:
    """Per topic, the source preference sets' prompts nearest to it by embedding (§6.1)."""
    input:
        sources=lambda wc: [
            preference_data(name) for name in config["value_gap"]["sources"]
        ],
        topics=config["topics"],
        settings=settings_of(
            "data/value_gap_retrieval",
            lambda wc, c: {k: v for k, v in c["value_gap"].items() if k != "teacher"},
        ),
    output:
        retrieved=value_gap_data("retrieved.parquet"),
        counts=value_gap_data("retrieve_counts.json"),
    log:
        "logs/data/retrieve_value_gap_prompts.log",
    benchmark:
        "benchmarks/data/retrieve_value_gap_prompts.tsv"
    conda:
        conda_env("analysis")
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        value_gap=lambda wc: config["value_gap"],
    script:
        "../workflow_scripts/retrieve_value_gap_prompts.py"


rule generate_value_gap:
    """A teacher writes a supporting and an opposing answer to every retrieved prompt."""
    input:
        retrieved=value_gap_data("retrieved.parquet"),
        system_prompt=lambda wc: config["value_gap"]["system_prompt"],
        values=lambda wc: config["value_gap"]["values"],
        settings=settings_of(
            "data/value_gap_teacher",
            lambda wc, c: {
                "teacher": c["value_gap"]["teacher"],
                "min_words": c["value_gap"].get("min_words"),
            },
        ),
    output:
        responses=value_gap_data("responses.parquet"),
        counts=value_gap_data("generate_counts.json"),
    log:
        "logs/data/generate_value_gap.log",
    benchmark:
        "benchmarks/data/generate_value_gap.tsv"
    conda:
        TEACHER_ENV
    resources:
        mem_mb=16000,
        runtime=24 * 60,
    params:
        teacher=lambda wc: config["value_gap"]["teacher"],
        min_words=lambda wc: config["value_gap"].get("min_words"),
    script:
        "../workflow_scripts/generate_value_gap.py"
