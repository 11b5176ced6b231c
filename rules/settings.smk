# The settings each job's output depends on, recorded as input files (results/settings/).
# Included by the Snakefile after rules/common.smk, whose imports and globals it uses.

# ---- settings a job's output depends on --------------------------------------------------
# Each is an input file (value_drifts.core.job_settings): with the profiles' mtime-only rerun
# trigger, editing a setting reruns exactly the jobs that read it, and editing a
# throughput setting (batch size, concurrency, prices...) reruns nothing.


# The config as filled before the trainer sections' optional keys got schema defaults.
CONFIG_BEFORE_TRAINER_DEFAULTS = without_added_defaults(
    config, RAW_CONFIG, frozenset(TRAINER_DEFAULT_KEYS)
)


def recorded_settings(name, settings_from):
    """The settings file ``name`` recording the output-affecting part of
    ``settings_from(config)``. ``settings_from(RAW_CONFIG)`` is the same settings in the
    form recorded before the schema's defaults were filled in, and
    ``settings_from(CONFIG_BEFORE_TRAINER_DEFAULTS)`` before the trainer defaults were:
    a results tree made then stays current (job_settings.record_settings,
    ``earlier_forms``)."""
    return record_settings(
        settings_path(name),
        output_settings(settings_from(config)),
        earlier_forms=[
            output_settings(settings_from(RAW_CONFIG)),
            output_settings(settings_from(CONFIG_BEFORE_TRAINER_DEFAULTS)),
        ],
    )


JUDGE_SETTINGS = recorded_settings("judge", lambda c: judge_output_settings(c["judge"]))
# What a judge job fingerprints (judge.run.judge_fingerprint): the judge settings as their
# file holds them, read once here, so judgments made before the schema's defaults were
# filled in and new ones share one judge id, and a later rewrite of the file by another
# process cannot reach a job of this one.
JUDGE_FINGERPRINT_SETTINGS = recorded_settings_of(JUDGE_SETTINGS)
# The reference judge's own settings file (judge.reference): editing it reruns only the
# reference judge's jobs and what reads them; judge.json never holds the reference
# (judge.run.JUDGE_OUTPUT_KEYS is a whitelist without it).
JUDGE_REFERENCE_SETTINGS = (
    recorded_settings(
        "judge_reference", lambda c: reference_output_settings(c["judge"], c["seed"])
    )
    if REFERENCE_JUDGE
    else None
)
# The prompt audit's own settings (judge.audit, judge.audit_answers, the seed): editing
# them reruns only the audit; judge.json never holds them.
JUDGE_AUDIT_SETTINGS = (
    recorded_settings(
        "judge_audit", lambda c: audit_output_settings(c["judge"], c["seed"])
    )
    if config["judge"].get("audit")
    else None
)
# analysis.contrasts is left out: a contrast's table is named by its pair
# (rule contrast_table), so adding one reruns no values, drift or figures, and a results
# tree made before the key existed stays current.
ANALYSIS_SETTINGS = recorded_settings(
    "analysis",
    lambda c: {
        "analysis": {k: v for k, v in c["analysis"].items() if k != "contrasts"},
        "seed": c["seed"],
    },
)
DATASET_STANCE_SETTINGS = recorded_settings(
    "dataset_stances",
    lambda c: {"dataset_stances": c.get("dataset_stances", {}), "seed": c["seed"]},
)


# One file per model and prompt style its checkpoints are sampled with
# (plan.checkpoint_prompt_style): a model's configured style keeps the file name it always
# had; a base model's trained checkpoints (chat) get generation/<model>.chat.
def _generation_settings_name(model, style):
    configured = config["models"][model]["prompt_style"]
    return f"generation/{model}" + ("" if style == configured else f".{style}")


GENERATION_SETTINGS = {
    (model, style): recorded_settings(
        _generation_settings_name(model, style),
        lambda c, style=style: {
            "generation": c["generation"],
            "seed": c["seed"],
            "prompt_style": style,
        },
    )
    for model in config["models"]
    for style in sorted(
        {
            checkpoint_prompt_style(config, phase.model, run)
            for phase in PLAN.phases
            if phase.model == model
            for run in (BASE_RUN, phase.run)
        }
        | {config["models"][model]["prompt_style"]}
    )
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
    """The generation settings file of a run's checkpoints (a trace's own)."""
    if model == TRACES:
        return GENERATION_SETTINGS[(model, run)]
    return GENERATION_SETTINGS[(model, checkpoint_prompt_style(config, model, run))]


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
