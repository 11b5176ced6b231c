# Targets: the paper's figure and table numbers, every output the config enables, and the start-up check.
# Included by the Snakefile after rules/common.smk, whose imports and globals it uses.

# ---- paper numbering of figures and tables ---------------------------------------------


def po_figure_number(preference_set):
    """The paper's figure for PO trajectories on a preference set: 4 (UltraFeedback), 9
    (HH-RLHF), 7 (synthetic value-gap sets)."""
    spec = config["preference_sets"][preference_set]
    if spec["source"].startswith("synthetic"):
        return "07"
    return {"hh_rlhf": "09"}.get(spec.get("format"), "04")


ABLATION_FIGURE = {"ppo": "15", "dpo": "16", "simpo": "17"}


def check_figure_number(expected, asked, name):
    if expected != asked:
        raise WorkflowError(
            f"{name} is paper figure {expected}: ask for fig{expected}_..., not fig{asked}_..."
        )


def synthetic_sets():
    return [
        name
        for name, spec in config.get("preference_sets", {}).items()
        if spec["source"].startswith("synthetic")
    ]


def final_outputs():
    """Every figure and table the config enables, under its paper number."""
    outputs = [judge_agreement("agreement.md"), REPORT_CONFIG]
    for model in {phase.model for phase in PLAN.sft_phases()}:
        outputs.append(table(sft_table_name(model)))
        outputs += [
            figure(sft_figure_name(model, slug(category))) for category in FIGURE_TOPICS
        ]
    po_main = [p for p in PLAN.po_phases() if not p.overrides]
    for model, sft_dataset, preference_set in {
        (p.model, p.sft_dataset, p.preference_set) for p in po_main
    }:
        outputs.append(table(po_table_name(model, sft_dataset)))
        number = po_figure_number(preference_set)
        outputs += [
            figure(
                po_figure_name(
                    number, model, sft_dataset, preference_set, slug(category)
                )
            )
            for category in FIGURE_TOPICS
        ]
    for algorithm, sft_dataset in {(p.algorithm, p.sft_dataset) for p in po_main}:
        if algorithm != "ppo" and setup_phases(algorithm, sft_dataset):
            outputs += [
                figure(setup_figure_name(algorithm, sft_dataset, slug(category)))
                for category in FIGURE_TOPICS
            ]
    for name, ablation in ABLATIONS.items():
        number = ABLATION_FIGURE[ablation["algorithm"]]
        outputs += [
            figure(ablation_figure_name(number, name, slug(category)))
            for category in FIGURE_TOPICS
        ]
    for phase in PLAN.po_phases():
        outputs.append(drift_path(phase.model, phase.run, "csv"))
    for phase in PLAN.phases:
        outputs.append(judge_health_path(phase.model, phase.run))
        outputs.append(calibrated_drift_path(phase.model, phase.run, "csv"))
    if config["judge"].get("audit"):  # judge.audit: the prompt audit
        outputs.append(table(PROMPT_AUDIT_TABLE))
    if REFERENCE_JUDGE:  # judge.reference: the second judge's agreement per phase
        for phase in PLAN.phases:
            outputs += [
                reference_agreement_path(phase.model, phase.run, "md"),
                figure(reference_agreement_figure_name(phase.model, phase.run)),
            ]
    for trace in TRACE_SERIES:
        outputs.append(table(trace_table_name(trace)))
        outputs += [
            figure(trace_figure_name(trace, slug(category)))
            for category in FIGURE_TOPICS
        ]
    outputs += CONTRAST_TABLES  # analysis.contrasts (rules/contrasts.smk)
    if paper_reference():
        outputs.append(table(PAPER_COMPARISON_TABLE))
    if downstream_checkpoints():
        outputs.append(table(DOWNSTREAM_TABLE))
    if "vprism" in config:
        outputs += [
            f"{VPRISM_DATA}/questions.parquet",
            f"{VPRISM_DATA}/cluster_report.md",
            figure(VPRISM_FIGURE),
        ]
    if "dataset_stances" in config:
        outputs += [
            figure(DATASET_STANCES_FIGURE),
            figure(VALUE_GAP_FIGURE),
        ]
    return sorted(set(outputs))


# Once, in the main Snakemake process (as check_site_variables): a job's own Snakemake
# on a node starts after the submitting process has checked.
if workflow.is_main_process:
    check_no_answers_lost()


# The end of a run records the results' file times (value_drifts.core.file_times).
onsuccess:
    record_times(RESULTS)


onerror:
    record_times(RESULTS)
