# The settings each job's output depends on, recorded as input files (results/settings/).
# Included by the Snakefile after rules/common.smk, whose imports and globals it uses.

# ---- settings a job's output depends on --------------------------------------------------
# Each is an input file (value_drifts.core.job_settings): with the profiles' mtime-only rerun
# trigger, editing a setting reruns exactly the jobs that read it, and editing a
# throughput setting (batch size, concurrency, prices...) reruns nothing.


def recorded_settings(name, settings_from):
    """The settings file ``name`` recording the output-affecting part of
    ``settings_from(config)``. ``settings_from(RAW_CONFIG)`` is the same settings in the
    form recorded before the schema's defaults were filled in: a results tree made then
    stays current (job_settings.record_settings, ``earlier_forms``)."""
    return record_settings(
        settings_path(name),
        output_settings(settings_from(config)),
        earlier_forms=[output_settings(settings_from(RAW_CONFIG))],
    )


JUDGE_SETTINGS = recorded_settings("judge", lambda c: judge_output_settings(c["judge"]))
# What a judge job fingerprints (judge.run.judge_fingerprint): the judge settings as their
# file holds them, read once here, so judgments made before the schema's defaults were
# filled in and new ones share one judge id, and a later rewrite of the file by another
# process cannot reach a job of this one.
JUDGE_FINGERPRINT_SETTINGS = recorded_settings_of(JUDGE_SETTINGS)
ANALYSIS_SETTINGS = recorded_settings(
    "analysis", lambda c: {"analysis": c["analysis"], "seed": c["seed"]}
)
DATASET_STANCE_SETTINGS = recorded_settings(
    "dataset_stances",
    lambda c: {"dataset_stances": c.get("dataset_stances", {}), "seed": c["seed"]},
)


GENERATION_SETTINGS = {
    (model, None): recorded_settings(
        f"generation/{model}",
        lambda c, model=model: {
            "generation": c["generation"],
            "seed": c["seed"],
            "prompt_style": c["models"][model]["prompt_style"],
        },
    )
    for model in config["models"]
} | {
    (TRACES, name): recorded_settings(
        f"generation/{TRACES}/{name}",
        lambda c, series=series: {
            "generation": c["generation"],
            "seed": c["seed"],
            "prompt_style": series.prompt_style,
            "tokenizers": series.tokenizers,
            "revisions": series.revisions,
        },
    )
    for name, series in TRACE_SERIES.items()
}


# What the evaluation questions are made from (select_questions' inputs).
CATEGORIES = config["questions"].get("categories")
QUESTION_SOURCES = {
    "questions": config["questions"]["path"],
    "topics": config["topics"],
    "settings": recorded_settings(
        "data/questions",
        lambda c: {
            "per_category": c["questions"].get("per_category"),
            "seed": c["seed"],
            # only when set, so trees made before the key existed stay current
            **({"categories": CATEGORIES} if CATEGORIES else {}),
        },
    ),
}


def generation_settings(model, run):
    """The generation settings file of a model's checkpoints (a trace's own)."""
    return GENERATION_SETTINGS[(model, run if model == TRACES else None)]


def vprism_settings(*keys):
    """The settings file of a V-PRISM stage: the vprism keys it reads, and the seed."""
    return lambda wc: recorded_settings(
        f"vprism/{'-'.join(keys)}",
        lambda c: {**{key: c["vprism"].get(key) for key in keys}, "seed": c["seed"]},
    )


def settings_of(name, settings):
    """An input function giving the settings file ``name.format(**wildcards)`` for
    ``settings(wildcards, config)``."""
    return lambda wc: recorded_settings(name.format(**wc), lambda c: settings(wc, c))
