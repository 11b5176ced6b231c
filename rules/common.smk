# The study and its globals: the package's import path, the study built once from the
# validated config, wildcard constraints and the output patterns named from value_drifts.core.layout.
# rules/settings.smk, rules/inputs.smk and rules/targets.smk follow it (see the Snakefile).

import copy
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

# The package lives in src/; make it importable when the workflow is run from a clone.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from value_drifts.judge.agreement import labelled_set_path  # noqa: E402
from value_drifts.core.envs import conda_env  # noqa: E402
from value_drifts.core.file_times import copied_tree_problem, record_times  # noqa: E402
from value_drifts.core.job_settings import (  # noqa: E402
    answers_digest,
    output_settings,
    record_settings,
    recorded_settings_of,
    settings_path,
)
from value_drifts.judge.backends import batch_state_dir  # noqa: E402
from value_drifts.judge.run import judge_output_settings  # noqa: E402
from value_drifts.judge.reference import (  # noqa: E402
    answers_per_checkpoint,
    reference_output_settings,
)
from value_drifts.core.config import reference_judge  # noqa: E402
from value_drifts.judge.audit import audit_output_settings  # noqa: E402
from value_drifts.core.layout import (  # noqa: E402
    ADAPTED_JUDGE_DIR,
    BASE_RUN,
    DATASET_STANCES_FIGURE,
    DATASET_STANCES_TABLE,
    DOWNSTREAM_TABLE,
    PAPER_COMPARISON_TABLE,
    PROMPT_AUDIT_TABLE,
    QUESTIONS,
    REPORT_CONFIG,
    RESULTS,
    TRACES,
    VALUE_GAP_FIGURE,
    VALUE_GAP_TABLE,
    VPRISM_DATA,
    VPRISM_FIGURE,
    ablation_figure_name,
    ablation_name,
    base_model_dir,
    checkpoint_dir,
    downstream_path,
    drift_path,
    calibrated_drift_beside,
    calibrated_drift_path,
    calibrated_values_beside,
    calibrated_values_path,
    figure,
    generations_path,
    run_generations_dir,
    run_judgments_dir,
    step_answers_path,
    step_judge_counts_path,
    judge_agreement,
    judge_counts_path,
    judge_health_path,
    judgments_path,
    reference_agreement_figure_name,
    reference_agreement_path,
    reference_drift_path,
    reference_judge_counts_path,
    reference_judgments_path,
    po_figure_name,
    po_run_from,
    po_table_name,
    preference_data,
    preference_value_gap,
    question_values_path,
    reward_model_dir,
    reward_run,
    setup_figure_name,
    sft_data,
    sft_figure_name,
    sft_run,
    sft_stances,
    sft_table_name,
    table,
    trace_figure_name,
    trace_table_name,
    step_dir,
    training_dir,
    training_marker,
    value_gap_data,
    values_path,
)
from value_drifts.core.plan import (  # noqa: E402
    TRAINED_PROMPT_STYLE,
    checkpoint_prompt_style,
    slug,
)
from value_drifts.core.study import (  # noqa: E402
    StudyError,
    load_study,
    local_data_files,
)
from value_drifts.core.traces import octal_key_problems, skipped_warnings  # noqa: E402
from value_drifts.data.counted_sizes import counted_sizes  # noqa: E402
from value_drifts.core.config import without_added_defaults  # noqa: E402
from value_drifts.training.common import (
    TRAINER_DEFAULT_KEYS,
    TrainerSettings,
)  # noqa: E402
from value_drifts.core.site_settings import check_site_variables  # noqa: E402
from value_drifts.core.checkpoints import (  # noqa: E402
    lost_answers_reason,
    upstream_change,
)

# The config as written, before the schema's defaults are filled in: the form settings
# files were recorded in before the defaults were (recorded_settings).
RAW_CONFIG = copy.deepcopy(config)
# The study, built once from the validated config (value_drifts.core.study): its grid, topic
# map, traces, and how each backend's jobs run. Rules and input functions ask it.
# Revision keys YAML read as other numbers (0100: is octal 64): only the files' text shows it.
_key_problems = [
    f"{path}: {problem}"
    for path in workflow.configfiles
    for problem in octal_key_problems(Path(path).read_text())
]
if _key_problems:
    raise WorkflowError("invalid config:\n  " + "\n  ".join(_key_problems))
# A results tree copied without its file times would rerun what is there: stop instead.
if workflow.is_main_process and (_copied := copied_tree_problem(RESULTS)):
    raise WorkflowError(_copied)
try:
    # data sets on local files may leave size out: counted here (data.counted_sizes)
    STUDY = load_study(config, count_sizes=counted_sizes)
except StudyError as error:
    raise WorkflowError(str(error)) from None
# Every rule reads the config with the schema's defaults filled in (config.with_defaults).
config.update(STUDY.config)

check_site_variables(workflow)  # a profile's $SLURM_ACCOUNT etc. left unset

TOPICS = STUDY.topics
TRACE_SERIES = STUDY.traces
for _warning in skipped_warnings(TRACE_SERIES) if workflow.is_main_process else []:
    logger.warning(_warning)
PLAN = STUDY.plan
BACKENDS = STUDY.backends
CATEGORY_BY_SLUG = STUDY.categories_by_slug
FIGURE_TOPICS = STUDY.figure_topics
RUN_IDS = sorted({phase.run for phase in PLAN.phases})
BATCH_STATE_DIR = batch_state_dir(config["judge"])
# The conda env of each backend kind (value_drifts.core.envs): rules whose library depends on
# the configured backend run in that backend's env.
JUDGE_ENV = conda_env(BACKENDS["judge"].env)
GENERATION_ENV = conda_env(BACKENDS["generation"].env)
# One generation job per run (rule generate_run) instead of one per checkpoint.
ONE_JOB_PER_RUN = STUDY.config["generation"]["one_job_per_run"]
# One judge job per run (rule judge_run; local judges) instead of one per checkpoint.
JUDGE_ONE_JOB_PER_RUN = STUDY.config["judge"]["one_job_per_run"]
TEACHER_ENV = conda_env(BACKENDS["teacher"].env if "teacher" in BACKENDS else "api")
VPRISM_LLM_ENV = conda_env(
    BACKENDS["vprism_llm"].env if "vprism_llm" in BACKENDS else "api"
)
DOWNSTREAM_ENV = conda_env(BACKENDS["downstream"].env)


def ablations():
    return config.get("preference_optimization", {}).get("ablations", [])


ABLATIONS = {
    ablation_name(
        a["model"],
        a["sft_dataset"],
        a["algorithm"],
        a["preference_set"],
        a["parameter"],
    ): a
    for a in ablations()
}


def _alternatives(names):
    return "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))


wildcard_constraints:
    model=_alternatives([*config["models"], *([TRACES] if TRACE_SERIES else [])]),
    trace=_alternatives(TRACE_SERIES) if TRACE_SERIES else "none",
    run=_alternatives(RUN_IDS + [BASE_RUN]),
    sft_dataset=_alternatives(config["sft_datasets"]),
    category_slug=_alternatives(CATEGORY_BY_SLUG),
    step=r"\d+",
    po_run=r"[^/]+",
    ablation=_alternatives(ABLATIONS) if ABLATIONS else "none",
    preference_set=_alternatives(config.get("preference_sets", {}) or ["none"]),
    po_figure="04|07|09",
    ablation_figure="15|16|17",
    algorithm="ppo|dpo|simpo",


# ---- paths: value_drifts.core.layout spells every run id and path ---------------------------


def judge_model_dir(judge=None):
    """The model a judge job loads (the main judge's, or ``judge``'s, a judge section such
    as the reference judge's): the adapted judge for ``adapted``, a base model's converted
    directory for a name under ``models:`` (a local backend), else the configured path or
    name."""
    judge = judge or config["judge"]
    if judge["model"] == "adapted":
        return ADAPTED_JUDGE_DIR
    local = judge["backend"] in ("transformers", "vllm")
    if local and judge["model"] in config["models"]:
        return base_model_dir(judge["model"])
    return judge["model"]


# The reference judge (judge.reference) as a judge section of its own, or None.
REFERENCE_JUDGE = reference_judge(config["judge"])


# Output patterns of the figures and tables whose names hold a run id.
PO_FIGURE = po_figure_name(
    "{po_figure}", "{model}", "{sft_dataset}", "{preference_set}", "{category_slug}"
)
SETUP_FIGURE = setup_figure_name("{algorithm}", "{sft_dataset}", "{category_slug}")
PO_TABLE = po_table_name("{model}", "{sft_dataset}")
TRACE_FIGURE = trace_figure_name("{trace}", "{category_slug}")
TRACE_TABLE = trace_table_name("{trace}")
SFT_TABLE = sft_table_name("{model}")
SFT_FIGURE = sft_figure_name("{model}", "{category_slug}")
ABLATION_FIGURE_NAME = ablation_figure_name(
    "{ablation_figure}", "{ablation}", "{category_slug}"
)
