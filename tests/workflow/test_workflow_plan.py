"""Dry runs of the real workflow: the DAG is static and known before anything runs."""

import pytest
import yaml

from tests.support.workflow import REPO, copy_repo, dry_run_jobs, snakemake


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory):
    """A copy without results, so dry runs do not depend on what the user has built."""
    return copy_repo(tmp_path_factory.mktemp("dry") / "value-drifts")


def test_paper_config_dry_run_lists_the_whole_grid(clean_copy):
    jobs = dry_run_jobs("--configfile", "config/paper.yaml", cwd=clean_copy)
    assert jobs["prepare_base_model"] == 4
    assert jobs["train_sft"] == 8
    assert jobs["train_preference_optimisation"] == 48 + 9
    # 4 base models + SFT checkpoints (12 WildChat, 11 Alpaca per model) + PO checkpoints
    # (58 per UltraFeedback/HH-RLHF run, 9 per synthetic run) + 9 synthetic ablation runs.
    expected_generations = 4 + 4 * (12 + 11) + 4 * 3 * (58 + 58 + 9 + 9) + 9 * 9
    # The paper's PPO counts episodes: ceil(3 * 9453 / 32) = 887 updates, still 9 checkpoints.
    # one generation job per run (generation.one_job_per_run): 4 base models, 8 SFT runs and
    # 57 PO runs, each checkpoint's answers copied out by a local job
    assert jobs["generate_run"] == 4 + 8 + 48 + 9 and "generate" not in jobs
    assert jobs["generate_step"] == expected_generations
    assert jobs["judge"] == expected_generations
    assert jobs["figure_sft_trajectories"] == 4 * 3
    assert jobs["sft_drift_table"] == 4
    # one reward model per (model, SFT set, preference set) that PPO trains on
    assert jobs["train_reward_model"] == 2 * 2 * 4
    # the teacher-written value-gap set is built once and feeds both label setups
    assert jobs["retrieve_value_gap_prompts"] == 1 and jobs["generate_value_gap"] == 1
    assert jobs["prepare_preference_set"] == 4
    # Tables 1/13-16 per (model, SFT set); Figures 4/7/9 per preference set and topic;
    # Figures 11-14 per (DPO | SimPO, SFT set, topic); Figures 15-17 per ablation and topic
    assert jobs["po_drift_table"] == 2 * 2
    assert jobs["figure_po_trajectories"] == 2 * 2 * 4 * 3
    assert jobs["figure_po_setups"] == 2 * 2 * 3
    assert jobs["figure_ablation"] == 3 * 3


def test_small_default_dry_run(clean_copy):
    jobs = dry_run_jobs(cwd=clean_copy)
    assert jobs["train_sft"] == 2
    assert jobs["train_preference_optimisation"] == 5
    assert jobs["train_reward_model"] == 1  # PPO on one preference set
    # base + 2 checkpoints per SFT set + 1 per PO run (PO step 0 is SFT's last checkpoint)
    assert jobs["generate"] == 1 + 2 + 2 + 5 * 1
    # figures for the three planted topics
    assert jobs["figure_sft_trajectories"] == 3
    assert jobs["figure_po_trajectories"] == 2 * 3
    assert jobs["figure_po_setups"] == 2 * 3
    assert jobs["judge_agreement"] == 1
    # analysis.contrasts: support- vs oppose-aligned DPO from the taskish SFT model
    assert jobs["contrast_table"] == 1


CONTRAST = ("results/tables/contrast_smollm2-135m_sft-taskish.dpo-planted_support_vs_"
            "sft-taskish.dpo-planted_oppose.md")


def test_contrasts_leave_the_analysis_settings_file_as_it_was(clean_copy, tmp_path):
    """analysis.contrasts is not an analysis setting: with or without it the analysis
    settings file keeps its digest and its time, so no values, drift or figure reruns."""
    dry_run_jobs(cwd=clean_copy)
    settings = clean_copy / "results/settings/analysis.json"
    before, mtime = settings.read_text(), settings.stat().st_mtime
    assert "contrasts" not in before
    config = yaml.safe_load((clean_copy / "config/config.yaml").read_text())
    assert config["analysis"].pop("contrasts")
    without = tmp_path / "no_contrasts.yaml"
    without.write_text(yaml.safe_dump(config))
    jobs = dry_run_jobs("--configfile", str(without), cwd=clean_copy)
    assert "contrast_table" not in jobs
    assert settings.read_text() == before and settings.stat().st_mtime == mtime


def test_the_small_default_contrast_reads_only_its_two_runs(clean_copy):
    result = snakemake("-n", "--nolock", CONTRAST, cwd=clean_copy)
    output = result.stdout + result.stderr
    assert "contrast_table" in output
    assert "sft-taskish.dpo-planted_support/question_values.parquet" in output
    assert "sft-taskish.dpo-planted_oppose/question_values.parquet" in output
    assert "simpo" not in output and "ppo-" not in output and "opinionated" not in output


def test_one_small_default_figure_schedules_nothing_unrelated(clean_copy):
    result = snakemake(
        "-n", "--nolock",
        "results/figures/fig07_po_smollm2-135m_sft-taskish_planted_support_abortion.pdf",
        cwd=clean_copy,
    )
    output = result.stdout + result.stderr
    # the SFT set it starts from and the preference set it trains on, nothing else
    assert "sft-taskish.dpo-planted_support" in output
    assert "sft-taskish.ppo-planted_support" in output
    assert "opinionated" not in output
    assert "planted_oppose" not in output
    assert "figure_sft_trajectories" not in output


def test_one_algorithm_figure_schedules_no_other_algorithm(clean_copy):
    result = snakemake(
        "-n", "--nolock", "results/figures/fig11-14_dpo_sft-taskish_abortion.pdf", cwd=clean_copy
    )
    output = result.stdout + result.stderr
    assert "sft-taskish.dpo-planted_support" in output and "dpo-planted_oppose" in output
    assert "simpo" not in output and "ppo-" not in output and "opinionated" not in output


def test_a_wrong_figure_number_is_refused_with_the_right_one(clean_copy):
    result = snakemake(
        "-n", "--nolock",
        "results/figures/fig04_po_smollm2-135m_sft-taskish_planted_support_abortion.pdf",
        cwd=clean_copy, check=False,
    )
    assert result.returncode != 0
    assert "ask for fig07_" in result.stdout + result.stderr


def test_one_figure_builds_only_what_it_needs(clean_copy):
    jobs = dry_run_jobs(
        "results/figures/fig03_sft_qwen3-4b_immigration-policies.pdf",
        "--configfile", "config/paper.yaml",  # takes several values, so it comes last
        cwd=clean_copy,
    )
    # Qwen3-4B's two SFT runs only: no PO, no other model.
    assert jobs["prepare_base_model"] == 1
    assert jobs["train_sft"] == 2
    assert jobs["generate_run"] == 1 + 2  # the base model's and the two SFT runs'
    assert jobs["generate_step"] == 1 + 12 + 11
    assert "train_preference_optimisation" not in jobs


def test_bad_config_stops_with_the_key_named(clean_copy, tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["sft_datasets"]["taskish"]["save_steps"] = -1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--nolock", "--configfile", str(path), cwd=clean_copy, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "sft_datasets.taskish.save_steps" in output


def test_two_categories_with_one_file_name_stop_the_dry_run_naming_both(clean_copy, tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    topics = yaml.safe_load((REPO / "config" / "topics.yaml").read_text())
    topics["Abortion?"] = "abortion bans"
    (tmp_path / "topics.yaml").write_text(yaml.safe_dump(topics))
    config["topics"] = str(tmp_path / "topics.yaml")
    path = tmp_path / "clash.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--nolock", "--configfile", str(path), cwd=clean_copy, check=False)
    assert result.returncode != 0
    assert ("category names 'Abortion' and 'Abortion?' share the file name 'abortion'"
            in result.stdout + result.stderr)


def test_snakemake_lint_is_clean(clean_copy):
    result = snakemake("--lint", cwd=clean_copy, check=False)
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_snakefmt_is_clean():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules/"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
