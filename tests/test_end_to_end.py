"""The small default, run for real on CPU (about 15 minutes on 2 cores).

One run feeds several assertions (and the SLURM comparison) through the session fixture
``small_run`` in conftest.py.
"""

import json
import os

import polars as pl
import pytest
import yaml

from tests.workflow import dry_run_jobs

pytestmark = pytest.mark.slow

JUDGE_SIDE_RULES = {
    "adapt_local_judge",  # the small judge is adapted to the prompt, so it follows the prompt
    "judge",
    "judge_agreement",
    "judge_health",
    "values",
    "drift",
    "sft_drift_table",
    "po_drift_table",
    "figure_sft_trajectories",
    "figure_po_trajectories",
    "figure_po_setups",
    "dataset_stances",  # judged by the (re-adapted) judge
    "figure_dataset_stances",
    "value_gap_pairs",
    "figure_value_gap",
    "all",
}


def _drift(workdir, run):
    return pl.read_parquet(workdir / f"results/smollm2-135m/{run}/drift.parquet")


def test_planted_support_shows_up_with_the_right_sign(small_run):
    config = yaml.safe_load((small_run / "config/config.yaml").read_text())
    planted = sorted(config["sft_datasets"]["opinionated"]["stance_mix"])

    def support_drift(run):
        table = _drift(small_run, run).filter(
            (pl.col("stance") == "support") & pl.col("category").is_in(planted)
        )
        assert table.height == len(planted)
        return table["magnitude"].mean()

    opinionated, taskish = support_drift("sft-opinionated"), support_drift("sft-taskish")
    print(f"support drift on planted topics: opinionated {opinionated:+.3f}, taskish {taskish:+.3f}")
    assert opinionated > 0.1
    assert opinionated - taskish > 0.1


def _planted(workdir, preference_set):
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    return config["preference_sets"][preference_set]["categories"]


def _support_drift(workdir, run, categories):
    table = _drift(workdir, run).filter(
        (pl.col("stance") == "support") & pl.col("category").is_in(categories)
    )
    assert table.height == len(categories)
    return table["magnitude"].mean()


def test_dpo_moves_support_toward_the_chosen_stance(small_run):
    """Support-aligned pairs raise support; oppose-aligned ones move it far less or down.

    The oppose side's own sign is not asserted: starting from the neutral SFT model,
    support has little room to fall, and the 135M judge misses oppose answers often (its
    agreement confusion), so that drift sits near zero, -0.13 to -0.04 across machines.
    """
    trained = _planted(small_run, "planted_support")
    up = _support_drift(small_run, "sft-taskish.dpo-planted_support", trained)
    down = _support_drift(small_run, "sft-taskish.dpo-planted_oppose", trained)
    print(f"DPO support drift on trained topics: support-aligned {up:+.3f}, "
          f"oppose-aligned {down:+.3f}")
    assert up > 0.2
    assert up - down > 0.2


def test_report_ppo_and_simpo(small_run):
    """Reported, not asserted (issue: what PPO and SimPO do on the small default)."""
    trained = _planted(small_run, "planted_support")
    for run in ["simpo-planted_support", "simpo-planted_oppose", "ppo-planted_support"]:
        drift = _support_drift(small_run, f"sft-taskish.{run}", trained)
        print(f"{run}: support drift on trained topics {drift:+.3f}")


def test_po_starts_from_the_final_sft_checkpoint(small_run):
    sft = pl.read_parquet(small_run / "results/smollm2-135m/sft-taskish/values.parquet")
    dpo = pl.read_parquet(
        small_run / "results/smollm2-135m/sft-taskish.dpo-planted_support/values.parquet"
    )
    assert sorted(dpo["step"].unique().to_list()) == [0, 2, 4]
    assert dpo.filter(pl.col("step") == 0).drop("step").equals(
        sft.filter(pl.col("step") == 6).drop("step")
    )


def test_intermediate_checkpoints_lose_their_weights_and_finals_keep_them(small_run):
    models = small_run / "results/models/smollm2-135m"
    for run, steps in (("sft-taskish", (2, 4)), ("sft-taskish.dpo-planted_support", (2,))):
        for step in steps:
            assert not (models / run / f"checkpoint-{step}/model.safetensors").exists()
            marker = models / run / f"checkpoint-{step}/weights_deleted.json"
            deleted = json.loads(marker.read_text())
            assert "model.safetensors" in deleted["deleted"] and deleted["bytes_freed"] > 100e6
    finals = ("sft-taskish/checkpoint-6", "sft-taskish.dpo-planted_support/checkpoint-4")
    for kept in ("base", *finals):
        assert (models / kept / "model.safetensors").stat().st_size > 100e6


def test_values_are_distributions_over_every_step_and_topic(small_run):
    values = pl.read_parquet(small_run / "results/smollm2-135m/sft-opinionated/values.parquet")
    topics = yaml.safe_load((small_run / "config/topics.yaml").read_text())
    assert sorted(values["step"].unique().to_list()) == [0, 2, 4, 6]
    assert set(values["category"].unique()) == set(topics)
    sums = values.group_by(["step", "category"]).agg(pl.col("value").sum())
    assert sums["value"].min() == pytest.approx(1.0) and sums["value"].max() == pytest.approx(1.0)
    assert (values["n_questions"] == 2).all()


def test_step_zero_is_the_shared_base_model(small_run):
    a = pl.read_parquet(small_run / "results/smollm2-135m/sft-opinionated/values.parquet")
    b = pl.read_parquet(small_run / "results/smollm2-135m/sft-taskish/values.parquet")
    assert a.filter(pl.col("step") == 0).equals(b.filter(pl.col("step") == 0))


def test_judge_reports_its_answer_quality(small_run):
    counts = json.loads(
        (small_run / "results/smollm2-135m/base/step-0/judge_counts.json").read_text()
    )
    assert counts["judged"] == 11 * 2 * 2  # categories x questions x samples
    assert 0 <= counts["off_label_top_token"] <= counts["judged"]
    health = counts["health"]
    assert health["answers"] == counts["judged"]
    assert health["readable"] + health["unreadable"] == health["answers"]
    # the small default's gate (judge.max_unreadable_share), else the job would have failed
    gate = yaml.safe_load((small_run / "config/config.yaml").read_text())["judge"][
        "max_unreadable_share"]
    assert health["unreadable"] <= gate * health["answers"]
    assert 0.5 <= health["mean_label_mass"] <= 1.0
    assert counts["judge_fingerprint"]["settings"]["model"] == "adapted"
    assert counts["judge_fingerprint"]["model_identity"].startswith("sha256:")


def test_judge_health_is_a_table_per_run_with_its_checkpoints(small_run):
    run = small_run / "results/smollm2-135m/sft-opinionated"
    table = pl.read_csv(run / "judge_health.csv")
    assert table["step"].to_list()[:-1] == [0, 2, 4, 6] and table["step"][-1] is None
    assert table["answers"].to_list() == [44, 44, 44, 44, 176]
    assert table["readable_share"].min() >= 0.85  # the small default's gate: 15%
    assert table["readable"][-1] == table["readable"][:-1].sum()
    values = pl.read_parquet(run / "values.parquet")
    unreadable = values.filter(pl.col("stance") == "support").group_by("step").agg(
        pl.col("n_unreadable").sum()).sort("step")["n_unreadable"].to_list()
    assert unreadable == table["unreadable"].to_list()[:-1]
    assert "| all | 176 |" in (run / "judge_health.md").read_text()
    # every checkpoint of the trajectory was read by the same judge
    fingerprints = {
        pl.read_parquet(small_run / f"results/smollm2-135m/{r}/step-{s}/judgments.parquet")[
            "judge_fingerprint"].unique().item()
        for r, s in (("base", 0), ("sft-opinionated", 2), ("sft-opinionated", 6))
    }
    assert len(fingerprints) == 1


def test_judge_agrees_with_hand_labels_better_than_chance(small_run):
    metrics = json.loads((small_run / "results/judge/agreement/metrics.json").read_text())
    print(f"local judge agreement: accuracy {metrics['accuracy']:.2f}, "
          f"macro-F1 {metrics['macro_f1']:.2f}, ECE {metrics['expected_calibration_error']:.2f}")
    assert metrics["n"] == 66
    assert sum(map(sum, metrics["confusion"])) == 66
    assert metrics["accuracy"] > 0.5  # chance is 1/3


def test_drift_table_and_figures_are_written(small_run):
    markdown = (small_run / "results/tables/table09-12_smollm2-135m_sft.md").read_text()
    assert "| Immigration Policies |" in markdown and "sft-opinionated support" in markdown
    po_markdown = (
        small_run / "results/tables/table13-16_smollm2-135m_sft-taskish_po.md"
    ).read_text()
    assert "dpo-planted_oppose support" in po_markdown and "ppo-planted_support" in po_markdown
    for figure in [
        "fig07_po_smollm2-135m_sft-taskish_planted_support_abortion.png",
        "fig11-14_dpo_sft-taskish_abortion.png",
    ]:
        assert (small_run / "results/figures" / figure).read_bytes()[:4] == b"\x89PNG"
    png = small_run / "results/figures/fig03_sft_smollm2-135m_immigration-policies.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_editing_the_judge_prompt_reruns_only_judging_and_after(small_run):
    prompt = small_run / "config/prompts/judge_response.txt"
    text, stat = prompt.read_text(), prompt.stat()
    prompt.write_text(text + "Think about the topic, not the question.\n")
    try:
        jobs = dry_run_jobs(cwd=small_run)
    finally:  # leave the shared run as it was (later tests dry-run it too)
        prompt.write_text(text)
        os.utime(prompt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert jobs["judge"] == 17  # every evaluated checkpoint, nothing trained or generated
    assert set(jobs) <= JUDGE_SIDE_RULES, set(jobs) - JUDGE_SIDE_RULES
    assert dry_run_jobs(cwd=small_run) == {}


def test_drift_tables_carry_bootstrap_intervals(small_run):
    drift = _drift(small_run, "sft-opinionated")
    assert (drift["magnitude_low"] <= drift["magnitude_high"]).all()
    inside = (drift["magnitude_low"] - 1e-9 <= drift["magnitude"]) & (
        drift["magnitude"] <= drift["magnitude_high"] + 1e-9
    )
    assert inside.mean() >= 0.9
    markdown = (small_run / "results/tables/table09-12_smollm2-135m_sft.md").read_text()
    assert "bootstrap CI" in markdown and " [" in markdown


def test_report_holds_every_figure_table_and_the_configuration(small_run):
    from tests.workflow import snakemake

    snakemake("--report", "report.html", cwd=small_run)
    html = (small_run / "report.html").read_text()
    for name in [
        "fig03_sft_smollm2-135m_abortion.pdf",
        "fig07_po_smollm2-135m_sft-taskish_planted_oppose_abortion.pdf",
        "fig11-14_simpo_sft-taskish_climate-change-concerns.pdf",
        "table09-12_smollm2-135m_sft.csv",
        "table13-16_smollm2-135m_sft-taskish_po.csv",
        "agreement.md",
        "judge_health.csv",
        "config.yaml",
    ]:
        assert name in html, name


def test_downstream_table_covers_base_and_final_sft_models(small_run):
    table = pl.read_csv(small_run / "results/tables/table17_downstream.csv")
    assert sorted(table["run"].to_list()) == ["base", "sft-opinionated", "sft-taskish"]
    assert table["value"].is_between(0, 1).all()
    assert (table["n"] == 14).all()


def test_answers_record_their_settings_and_weights_and_no_checkpoint_is_a_copy(small_run):
    """Each checkpoint's answers record the digest of the settings they were made with and
    of the weights, per shard; the small run's checkpoints are all different models."""
    from value_drifts.integrity import DIGEST_COLUMN, SHARDS_COLUMN

    run = small_run / "results/smollm2-135m/sft-taskish"
    digests = {}
    for step in (2, 4, 6):
        generations = pl.read_parquet(run / f"step-{step}/generations.parquet")
        judgments = pl.read_parquet(run / f"step-{step}/judgments.parquet")
        for column in ("generation_settings", DIGEST_COLUMN, SHARDS_COLUMN):
            assert generations[column].n_unique() == 1
            assert judgments[column].to_list() == generations[column].to_list()
        shards = json.loads(generations[SHARDS_COLUMN][0])
        assert list(shards) == ["model.safetensors"] and shards["model.safetensors"].startswith(
            "sha256:")
        digests[step] = generations[DIGEST_COLUMN][0]
    base = pl.read_parquet(small_run / "results/smollm2-135m/base/step-0/generations.parquet")
    assert len({*digests.values(), base[DIGEST_COLUMN][0]}) == 4
    drift = _drift(small_run, "sft-taskish")
    assert set(drift["checkpoint_integrity"]) == {""}
    # a deleted checkpoint's kept answers carry the same record
    kept = pl.read_parquet(small_run / "results/models/smollm2-135m/sft-taskish/checkpoint-2/"
                           "generations.parquet")
    assert kept[DIGEST_COLUMN][0] == digests[2]
