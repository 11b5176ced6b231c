# V-PRISM construction from PRISM prompts (paper §3, App. A.1): every stage is a file
# under results/data/vprism/, so a changed prompt or setting reruns only what follows it.

from value_drifts.data import vprism as vp

VPRISM = VPRISM_DATA


rule vprism_load_prompts:
    """(a) PRISM's opening prompts; empty, missing and repeated ones counted by reason."""
    input:
        lambda wc: vp.source_files(config["vprism"]["source"]),
        settings=vprism_settings("source", "conversation_types"),
    output:
        prompts=f"{VPRISM}/prompts.parquet",
        counts=f"{VPRISM}/load_counts.json",
    log:
        "logs/vprism/load_prompts.log",
    conda:
        conda_env("analysis")
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        source=lambda wc: config["vprism"]["source"],
        conversation_types=lambda wc: config["vprism"].get("conversation_types"),
    script:
        "../workflow_scripts/vprism_load_prompts.py"


rule vprism_rephrase:
    """(b) An LLM rephrases each prompt into a natural question."""
    input:
        prompts=f"{VPRISM}/prompts.parquet",
        template=lambda wc: config["vprism"]["rephrase"]["prompt"],
        model=lambda wc: vp.llm_inputs(
            config["vprism"], config["models"], base_model_dir
        ),
        settings=vprism_settings("rephrase", "llm"),
    output:
        questions=f"{VPRISM}/rephrased.parquet",
        counts=f"{VPRISM}/rephrase_counts.json",
    log:
        "logs/vprism/rephrase.log",
    benchmark:
        "benchmarks/vprism/rephrase.tsv"
    conda:
        VPRISM_LLM_ENV
    resources:
        mem_mb=8000,
        runtime=12 * 60,
    params:
        llm=lambda wc: vp.llm_settings(
            config["vprism"], config["models"], base_model_dir, "rephrase"
        ),
        rephrase=lambda wc: config["vprism"]["rephrase"],
    script:
        "../workflow_scripts/vprism_rephrase.py"


rule vprism_embed:
    """(c) Sentence embeddings of the questions, one row each, in the table's order."""
    input:
        f"{VPRISM}/rephrased.parquet",
        settings=vprism_settings("encoder"),
    output:
        f"{VPRISM}/embeddings.npy",
    log:
        "logs/vprism/embed.log",
    benchmark:
        "benchmarks/vprism/embed.tsv"
    conda:
        conda_env("analysis")
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        encoder=lambda wc: config["vprism"]["encoder"],
    script:
        "../workflow_scripts/vprism_embed.py"


rule vprism_umap:
    """(d) UMAP to n_components dimensions for clustering, and to 2 for the figure."""
    input:
        f"{VPRISM}/embeddings.npy",
        settings=vprism_settings("umap"),
    output:
        reduced=f"{VPRISM}/umap.npy",
        projection=f"{VPRISM}/umap_2d.npy",
    log:
        "logs/vprism/umap.log",
    benchmark:
        "benchmarks/vprism/umap.tsv"
    conda:
        conda_env("analysis")
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        umap=lambda wc: config["vprism"]["umap"],
    script:
        "../workflow_scripts/vprism_umap.py"


rule vprism_cluster:
    """(e) HDBSCAN with soft membership; (f) each cluster's top TF-IDF n-grams."""
    input:
        questions=f"{VPRISM}/rephrased.parquet",
        reduced=f"{VPRISM}/umap.npy",
        settings=vprism_settings("hdbscan", "ngrams"),
    output:
        clusters=f"{VPRISM}/clusters.parquet",
        ngrams=f"{VPRISM}/cluster_ngrams.parquet",
        counts=f"{VPRISM}/cluster_counts.json",
    log:
        "logs/vprism/cluster.log",
    conda:
        conda_env("analysis")
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        hdbscan=lambda wc: config["vprism"]["hdbscan"],
        ngrams=lambda wc: config["vprism"]["ngrams"],
    script:
        "../workflow_scripts/vprism_cluster.py"


rule vprism_name_clusters:
    """(g) An LLM names each cluster from its top n-grams and most central questions."""
    input:
        clusters=f"{VPRISM}/clusters.parquet",
        ngrams=f"{VPRISM}/cluster_ngrams.parquet",
        template=lambda wc: config["vprism"]["naming"]["prompt"],
        model=lambda wc: vp.llm_inputs(
            config["vprism"], config["models"], base_model_dir
        ),
        settings=vprism_settings("naming", "llm"),
    output:
        names=f"{VPRISM}/cluster_names.parquet",
        counts=f"{VPRISM}/naming_counts.json",
    log:
        "logs/vprism/name_clusters.log",
    benchmark:
        "benchmarks/vprism/name_clusters.tsv"
    conda:
        VPRISM_LLM_ENV
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        llm=lambda wc: vp.llm_settings(
            config["vprism"], config["models"], base_model_dir, "naming"
        ),
        examples=lambda wc: config["vprism"]["naming"]["examples"],
    script:
        "../workflow_scripts/vprism_name_clusters.py"


rule vprism_assign_categories:
    """(h) The keep-list: clusters to categories by config keywords or cluster ids."""
    input:
        clusters=f"{VPRISM}/clusters.parquet",
        ngrams=f"{VPRISM}/cluster_ngrams.parquet",
        names=f"{VPRISM}/cluster_names.parquet",
        cluster_counts=f"{VPRISM}/cluster_counts.json",
        topics=config["topics"],
        settings=vprism_settings("categories"),
    output:
        categorised=f"{VPRISM}/categorised.parquet",
        report_csv=f"{VPRISM}/cluster_report.csv",
        report_md=f"{VPRISM}/cluster_report.md",
    log:
        "logs/vprism/assign_categories.log",
    conda:
        conda_env("analysis")
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        categories=lambda wc: config["vprism"]["categories"],
    script:
        "../workflow_scripts/vprism_assign_categories.py"


rule vprism_filter:
    """(i) The paper's LLM filter: is the question value-based, with several perspectives?"""
    input:
        categorised=f"{VPRISM}/categorised.parquet",
        template=lambda wc: config["vprism"]["filter"]["prompt"],
        model=lambda wc: vp.llm_inputs(
            config["vprism"], config["models"], base_model_dir
        ),
        settings=vprism_settings("filter", "llm"),
    output:
        filtered=f"{VPRISM}/filtered.parquet",
        counts=f"{VPRISM}/filter_counts.json",
    log:
        "logs/vprism/filter.log",
    benchmark:
        "benchmarks/vprism/filter.tsv"
    conda:
        VPRISM_LLM_ENV
    resources:
        mem_mb=8000,
        runtime=6 * 60,
    params:
        llm=lambda wc: vp.llm_settings(
            config["vprism"], config["models"], base_model_dir, "filter"
        ),
    script:
        "../workflow_scripts/vprism_filter.py"


rule build_vprism:
    """(j) V-PRISM: a seeded sample of per_category questions from each category."""
    input:
        filtered=f"{VPRISM}/filtered.parquet",
        topics=config["topics"],
        settings=vprism_settings("per_category", "on_shortfall", "filter"),
    output:
        questions=f"{VPRISM}/questions.parquet",
        counts=f"{VPRISM}/sample_counts.json",
    log:
        "logs/vprism/build_vprism.log",
    conda:
        conda_env("analysis")
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        per_category=lambda wc: config["vprism"]["per_category"],
        on_shortfall=lambda wc: config["vprism"]["on_shortfall"],
        enforce_filter=lambda wc: config["vprism"]["filter"]["enforce"],
        seed=config["seed"],
    script:
        "../workflow_scripts/build_vprism.py"


rule vprism_figure:
    """2-D UMAP of the questions, coloured by cluster (named, with the kept categories)."""
    input:
        projection=f"{VPRISM}/umap_2d.npy",
        clusters=f"{VPRISM}/clusters.parquet",
        report=f"{VPRISM}/cluster_report.csv",
    output:
        pdf=report(
            figure(VPRISM_FIGURE),
            caption="../report/vprism_clusters.rst",
            category="V-PRISM",
        ),
        png=figure(VPRISM_FIGURE, "png"),
    log:
        "logs/vprism/figure.log",
    conda:
        conda_env("analysis")
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/vprism_figure.py"
