"""Run ids and where a study's files live: the one place both are spelled.

The workflow's rules, input functions and the package ask these functions; each works on
values and on Snakemake wildcard placeholders alike (``training_marker("{model}",
sft_run("{sft_dataset}"))`` is the pattern of a rule's output). docs/reruns.md ("Targets and paths")
lists the layout.

Run ids: ``sft-{dataset}`` for SFT, ``sft-{dataset}.{algorithm}-{preference set}`` for
preference optimisation from that SFT model, with ``.{parameter}-{value}`` per ablation
override; ``base`` is a model's base (step 0 of every SFT run).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

BASE_RUN = "base"
# The model name of every trace (a checkpoint series trained elsewhere): a trace's results
# are results/traces/{trace}/..., its run id is the trace's name.
TRACES = "traces"
RESULTS = "results"
MODELS = f"{RESULTS}/models"
# The judge adapted to the prompt when ``judge.model: adapted``.
ADAPTED_JUDGE_DIR = f"{RESULTS}/judge/adapted"


def format_value(value: float) -> str:
    """An ablation value as it appears in a run id: ``:g`` (0.1 -> '0.1', 1.0 -> '1')
    when that reads back as the same number, else the shortest repr that does, so two
    different values never share a run id (``:g`` keeps 6 digits: 1.000001e-5 and 1e-5
    would both be '1e-05')."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def sft_run(dataset: str) -> str:
    """The run id of SFT on ``dataset``."""
    return f"sft-{dataset}"


def po_run(
    dataset: str, algorithm: str, preference_set: str,
    overrides: Mapping[str, float] | None = None,
) -> str:
    """The run id of ``algorithm`` on ``preference_set`` from the SFT model of ``dataset``,
    with one ``.{parameter}-{value}`` per ablation override (sorted by parameter)."""
    return po_run_from(dataset, f"{algorithm}-{preference_set}" + "".join(
        f".{key}-{format_value(value)}" for key, value in sorted((overrides or {}).items())
    ))


def po_run_from(dataset: str, suffix: str) -> str:
    """A PO run id from its SFT dataset and the rest of the id, ``{algorithm}-{preference
    set}[.{parameter}-{value}]`` (the ``{po_run}`` wildcard of the PO training rule)."""
    return f"{sft_run(dataset)}.{suffix}"


def ablation_name(model: str, sft_dataset: str, algorithm: str, preference_set: str,
                  parameter: str) -> str:
    """One ablation's name in figure file names (Figures 15-17): the model, SFT run, PO
    setup and the parameter varied."""
    return f"{model}_{sft_run(sft_dataset)}_{algorithm}-{preference_set}_{parameter}"


# The settings each job's output depends on (value_drifts.core.job_settings).
SETTINGS_DIR = f"{RESULTS}/settings"
# Sizes counted from a user's local data files whose size the config leaves out, by the
# files' content (value_drifts.data.counted_sizes).
COUNTED_SIZES = f"{RESULTS}/.counted_sizes.json"
# The judge's response cache and its Batch API state files (defaults of judge.cache and
# judge.batch.state_dir).
JUDGE_CACHE = f"{RESULTS}/judge_cache.sqlite"
JUDGE_BATCHES = f"{RESULTS}/judge_batches"

# The evaluation questions every checkpoint answers.
QUESTIONS = f"{RESULTS}/data/questions.parquet"


def base_model_dir(model: str) -> str:
    return f"{MODELS}/{model}/{BASE_RUN}"


def training_dir(model: str, run: str) -> str:
    """Where a training run saves its ``checkpoint-{step}`` folders."""
    return f"{MODELS}/{model}/{run}"


def training_marker(model: str, run: str) -> str:
    """Written when a training run has saved all its planned checkpoints."""
    return f"{training_dir(model, run)}/training.json"


def reward_run(sft_dataset: str, preference_set: str) -> str:
    """The run id of PPO's reward model on ``preference_set`` from the final SFT model of
    ``sft_dataset``."""
    return f"reward-{sft_run(sft_dataset)}.{preference_set}"


def reward_model_dir(model: str, sft_dataset: str, preference_set: str) -> str:
    """PPO's reward model (a directory; it also initialises PPO's value model)."""
    return training_dir(model, reward_run(sft_dataset, preference_set))


def checkpoint_dir(model: str, run: str, step: int | str) -> str:
    """The model a (run, step) names; step 0 of a run is its start model, and the base
    run's only checkpoint is the base model."""
    if run == BASE_RUN:
        return base_model_dir(model)
    return f"{training_dir(model, run)}/checkpoint-{step}"


def within_results(path: str) -> str:
    """A layout path (``results/...``) relative to the results folder, to place it under
    another one (a copied tree, a test's)."""
    return Path(path).relative_to(RESULTS).as_posix()


def run_dir(model: str, run: str) -> str:
    """A run's evaluation results: values, drift, judge health."""
    return f"{RESULTS}/{model}/{run}"


def step_dir(model: str, run: str, step: int | str) -> str:
    """One checkpoint's answers and judgments."""
    return f"{run_dir(model, run)}/step-{step}"


def generations_path(model: str, run: str, step: int | str) -> str:
    return f"{step_dir(model, run, step)}/generations.parquet"


def run_generations_dir(model: str, run: str) -> str:
    """Every evaluated checkpoint's answers of a run, sampled by one job
    (``generation.one_job_per_run``), a ``step-<step>.parquet`` each: each checkpoint's
    ``generations_path`` is copied from here."""
    return f"{run_dir(model, run)}/generations-by-step"


def step_answers_path(folder: str | Path, step: int | str) -> Path:
    """One checkpoint's table in a folder of a run's (``run_generations_dir``,
    ``run_judgments_dir``, and the parts an interrupted generation job leaves)."""
    return Path(folder) / f"step-{step}.parquet"


def step_judge_counts_path(folder: str | Path, step: int | str) -> Path:
    """One checkpoint's ``judge_counts.json`` in a run's ``run_judgments_dir``."""
    return Path(folder) / f"step-{step}.judge_counts.json"


def run_judgments_dir(model: str, run: str) -> str:
    """Every evaluated checkpoint's judgments and judge counts of a run, made by one job
    (``judge.one_job_per_run``): each checkpoint's ``judgments_path`` and
    ``judge_counts_path`` are copied from here."""
    return f"{run_dir(model, run)}/judgments-by-step"


def judgments_path(model: str, run: str, step: int | str) -> str:
    return f"{step_dir(model, run, step)}/judgments.parquet"


def judge_counts_path(model: str, run: str, step: int | str) -> str:
    return f"{step_dir(model, run, step)}/judge_counts.json"


def reference_judgments_path(model: str, run: str, step: int | str) -> str:
    """The reference judge's readings of one checkpoint's sampled answers
    (``judge.reference``)."""
    return f"{step_dir(model, run, step)}/reference_judgments.parquet"


def reference_judge_counts_path(model: str, run: str, step: int | str) -> str:
    """What the reference judge's job of one checkpoint did (``judge_counts.json``'s
    fields)."""
    return f"{step_dir(model, run, step)}/reference_judge_counts.json"


# ---- figures and tables whose names hold a run id -------------------------------------
FIGURES = f"{RESULTS}/figures"
TABLES = f"{RESULTS}/tables"


def po_figure_name(number: str, model: str, sft_dataset: str, preference_set: str,
                   category_slug: str) -> str:
    """Figures 4, 7, 9 (without extension): PO trajectories of one SFT model on one set."""
    return f"fig{number}_po_{model}_{sft_run(sft_dataset)}_{preference_set}_{category_slug}"


def setup_figure_name(algorithm: str, sft_dataset: str, category_slug: str) -> str:
    """Figures 11-14 (without extension): one algorithm's runs on the synthetic sets."""
    return f"fig11-14_{algorithm}_{sft_run(sft_dataset)}_{category_slug}"


def po_table_name(model: str, sft_dataset: str) -> str:
    """Tables 1, 13-16 (without extension): PO drift of one SFT model."""
    return f"table13-16_{model}_{sft_run(sft_dataset)}_po"


def trace_figure_name(trace: str, category_slug: str) -> str:
    """A trace's trajectory figure (without extension)."""
    return f"trace_{trace}_{category_slug}"


def trace_table_name(trace: str) -> str:
    """A trace's drift table (without extension)."""
    return f"trace_{trace}"


def contrast_table_name(model: str, run_a: str, run_b: str) -> str:
    """A paired contrast of two runs of one model (``analysis.contrasts``), without
    extension: their drift magnitudes' difference, a minus b."""
    return f"contrast_{model}_{run_a}_vs_{run_b}"


def figure(name: str, extension: str = "pdf") -> str:
    """A figure file: ``figure(po_figure_name(...))``."""
    return f"{FIGURES}/{name}.{extension}"


def table(name: str, extension: str = "md") -> str:
    """A table file: ``table(po_table_name(...), "csv")``."""
    return f"{TABLES}/{name}.{extension}"


def sft_figure_name(model: str, category_slug: str) -> str:
    """Figure 3 (without extension): the SFT trajectories of one model on one category_slug."""
    return f"fig03_sft_{model}_{category_slug}"


def sft_table_name(model: str) -> str:
    """Tables 9-12 (without extension): SFT drift of one model."""
    return f"table09-12_{model}_sft"


def ablation_figure_name(number: str, ablation: str, category_slug: str) -> str:
    """Figures 15-17 (without extension): p(support) per value of one ablation."""
    return f"fig{number}_ablation_{ablation}_{category_slug}"


# Figures and tables of the whole study (without extension).
DATASET_STANCES_FIGURE = "fig19_sft_dataset_stances"
VALUE_GAP_FIGURE = "fig20_value_gap"
DATASET_STANCES_TABLE = "sft_dataset_stances"
VALUE_GAP_TABLE = "value_gap"
DOWNSTREAM_TABLE = "table17_downstream"
PAPER_COMPARISON_TABLE = "paper_vs_ours"
VPRISM_FIGURE = "vprism_clusters"
# The judge prompt audit (judge.audit): per alternative prompt, how far readings move.
PROMPT_AUDIT_TABLE = "judge_prompt_audit"


# ---- a run's evaluation results --------------------------------------------------------


def values_path(model: str, run: str) -> str:
    """A run's stance values per checkpoint and topic, with intervals."""
    return f"{run_dir(model, run)}/values.parquet"


def question_values_path(model: str, run: str) -> str:
    """A run's stance values per checkpoint and question."""
    return f"{run_dir(model, run)}/question_values.parquet"


def drift_path(model: str, run: str, extension: str = "parquet") -> str:
    """A run's drift magnitude and drift time per topic (``parquet`` or ``csv``)."""
    return f"{run_dir(model, run)}/drift.{extension}"


def calibrated_values_path(model: str, run: str) -> str:
    """A run's values corrected for the judge's error, per step, topic and stance, with
    joint-bootstrap intervals (``analysis.calibration``)."""
    return f"{run_dir(model, run)}/calibrated_values.parquet"


def calibrated_values_beside(values: str) -> str:
    """The calibrated values of the run whose ``values_path`` is ``values``."""
    return str(Path(values).with_name(Path(calibrated_values_path("m", "r")).name))


def calibrated_drift_path(model: str, run: str, extension: str = "parquet") -> str:
    """A run's drift magnitude and drift time corrected for the judge's error, beside the
    raw ones (``parquet`` or ``csv``)."""
    return f"{run_dir(model, run)}/calibrated_drift.{extension}"


def calibrated_drift_beside(drift: str) -> str:
    """The calibrated drift (parquet) of the run whose ``drift_path`` is ``drift``."""
    return str(Path(drift).with_name(Path(calibrated_drift_path("m", "r")).name))


def judge_health_path(model: str, run: str, extension: str = "csv") -> str:
    """A run's unreadable judgments per checkpoint (``csv`` or ``md``)."""
    return f"{run_dir(model, run)}/judge_health.{extension}"


def reference_agreement_path(model: str, run: str, extension: str = "csv") -> str:
    """Agreement of the main and the reference judge per checkpoint and over a run
    (``csv`` or ``md``)."""
    return f"{run_dir(model, run)}/judge_reference_agreement.{extension}"


def reference_drift_path(model: str, run: str, extension: str = "csv") -> str:
    """Each judge's drift magnitude per category and stance on the reference judge's
    sample of a run (``csv``)."""
    return f"{run_dir(model, run)}/judge_reference_drift.{extension}"


def reference_agreement_figure_name(model: str, run: str) -> str:
    """The figure of the two judges' agreement over a run's steps (without extension)."""
    return f"judge_reference_{model}_{run}"


def downstream_path(model: str, run: str) -> str:
    """A final checkpoint's downstream benchmark scores."""
    return f"{run_dir(model, run)}/downstream.json"


# ---- prepared data ---------------------------------------------------------------------
DATA = f"{RESULTS}/data"
VPRISM_DATA = f"{DATA}/vprism"
DATASET_STANCES = f"{RESULTS}/dataset_stances"
REPORT_CONFIG = f"{RESULTS}/report/config.yaml"


def sft_data(dataset: str, name: str = "train.parquet") -> str:
    """A prepared SFT dataset's files: ``train.parquet``, ``validation.parquet``,
    ``counts.json``."""
    return f"{DATA}/sft/{dataset}/{name}"


def preference_data(preference_set: str, name: str = "train.parquet") -> str:
    """A prepared preference set's files: ``train.parquet``, ``counts.json``."""
    return f"{DATA}/preference/{preference_set}/{name}"


def sft_stances(dataset: str, name: str = "stances.parquet") -> str:
    """An SFT dataset's stances (App. K): ``stances.parquet``, ``counts.json``."""
    return f"{DATASET_STANCES}/sft/{dataset}/{name}"


def preference_value_gap(preference_set: str, name: str = "value_gap.parquet") -> str:
    """A preference set's value gaps (App. K): ``value_gap.parquet``, ``counts.json``."""
    return f"{DATASET_STANCES}/preference/{preference_set}/{name}"


def value_gap_data(name: str) -> str:
    """The value-gap pairs' files (§6.1): ``retrieved.parquet``, ``responses.parquet`` and
    their counts."""
    return f"{DATA}/value_gap/{name}"


def judge_agreement(name: str) -> str:
    """The judge's agreement with the labelled set: ``metrics.json``, ``agreement.md``,
    ``confusion.pdf`` / ``.png``."""
    return f"{RESULTS}/judge/agreement/{name}"
