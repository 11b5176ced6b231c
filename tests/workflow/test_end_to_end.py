"""The small default, run for real on CPU (about 15 minutes on 2 cores).

One run feeds several assertions (and the SLURM comparison) through the session fixture
``small_run`` in conftest.py.
"""

import json
import os

import polars as pl
import pytest
import yaml

from tests.support.workflow import dry_run_jobs
from value_drifts.analysis.aggregate import planted_effect

pytestmark = pytest.mark.slow

JUDGE_SIDE_RULES = {
    "adapt_local_judge",  # the small judge is adapted to the prompt, so it follows the prompt
    "judge",
    "judge_agreement",
    "judge_health",
    "values",
    "drift",
    "calibrated_values",  # reads the question values and the agreement readings
    "contrast_table",  # reads the question values of two runs
    "reference_judge",  # the small default's reference judge reads with the main prompt
    "judge_reference_agreement",
    "judge_prompt_audit",  # compares the main prompt with its alternatives
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


def _question_values(workdir, run):
    return pl.read_parquet(workdir / f"results/smollm2-135m/{run}/question_values.parquet")


def _config(workdir):
    return yaml.safe_load((workdir / "config/config.yaml").read_text())


def _planted(workdir, preference_set):
    return _config(workdir)["preference_sets"][preference_set]["categories"]


def _effect(workdir, run, stance, categories, baseline=None):
    """Mean drift of ``stance`` over the planted topics with its bootstrap 95% CI."""
    mean, low, high = planted_effect(
        _question_values(workdir, run), categories, stance,
        baseline=None if baseline is None else _question_values(workdir, baseline))
    print(f"{run}{'' if baseline is None else ' - ' + baseline}: {stance} drift on planted "
          f"topics {mean:+.3f} [{low:+.3f}, {high:+.3f}]")
    return mean, low, high


# Planted effects: each the mean over the planted topics, > +0.10 with
# its bootstrap CI above 0.


def test_the_opinionated_sft_set_raises_support_more_than_the_neutral_one(small_run):
    planted = sorted(_config(small_run)["sft_datasets"]["opinionated"]["stance_mix"])
    mean, low, _ = _effect(small_run, "sft-opinionated", "support", planted,
                           baseline="sft-taskish")
    assert mean > 0.10 and low > 0
    # and the opinionated set raises support on its own
    mean, low, _ = _effect(small_run, "sft-opinionated", "support", planted)
    assert mean > 0.10 and low > 0


def test_the_neutral_sft_set_does_not_raise_oppose(small_run):
    planted = sorted(_config(small_run)["sft_datasets"]["taskish"]["stance_mix"])
    mean, _, _ = _effect(small_run, "sft-taskish", "oppose", planted)
    assert mean <= 0.10


def test_support_aligned_dpo_raises_support(small_run):
    trained = _planted(small_run, "planted_support")
    mean, low, _ = _effect(small_run, "sft-taskish.dpo-planted_support", "support", trained)
    assert mean > 0.2 and low > 0
    # by more than the oppose-aligned pairs move it
    mean, low, _ = _effect(small_run, "sft-taskish.dpo-planted_support", "support", trained,
                           baseline="sft-taskish.dpo-planted_oppose")
    assert mean > 0.2 and low > 0


def test_oppose_aligned_dpo_raises_oppose(small_run):
    mean, low, _ = _effect(small_run, "sft-taskish.dpo-planted_oppose", "oppose",
                           _planted(small_run, "planted_oppose"))
    assert mean > 0.10 and low > 0


def test_end_of_sft_intervals_are_informative_on_the_planted_topics(small_run):
    """Issue 15, item 3: every stance's 95% CI half-width at the last SFT checkpoint is at
    most 0.25 on each planted topic, and the unplanted control topics are still there."""
    config = _config(small_run)
    planted = sorted(config["sft_datasets"]["opinionated"]["stance_mix"])
    for run in ("sft-opinionated", "sft-taskish"):
        values = pl.read_parquet(small_run / f"results/smollm2-135m/{run}/values.parquet")
        end = values.filter((pl.col("step") == values["step"].max())
                            & pl.col("category").is_in(planted))
        print(run, dict(zip(end["category"] + "/" + end["stance"], end["ci_halfwidth"].round(3),
                            strict=True)))
        assert end.height == 3 * len(planted)
        assert end["ci_halfwidth"].max() <= 0.25
        controls = set(values["category"]) - set(planted)
        assert len(controls) >= 2


def test_report_ppo_and_simpo(small_run):
    """Reported, not asserted (what PPO and SimPO do on the small default)."""
    trained = _planted(small_run, "planted_support")
    for run, stance in (("simpo-planted_support", "support"), ("simpo-planted_oppose", "oppose"),
                        ("ppo-planted_support", "support")):
        _effect(small_run, f"sft-taskish.{run}", stance, trained)


def test_po_starts_from_the_final_sft_checkpoint(small_run):
    sft = pl.read_parquet(small_run / "results/smollm2-135m/sft-taskish/values.parquet")
    dpo = pl.read_parquet(
        small_run / "results/smollm2-135m/sft-taskish.dpo-planted_support/values.parquet"
    )
    assert sorted(dpo["step"].unique().to_list()) == [0, 4]  # evaluated at the end only
    assert dpo.filter(pl.col("step") == 0).drop("step").equals(
        sft.filter(pl.col("step") == 6).drop("step")
    )


def test_intermediate_checkpoints_lose_their_weights_and_finals_keep_them(small_run):
    models = small_run / "results/models/smollm2-135m"
    for run, steps in (("sft-taskish", (3,)), ("sft-opinionated", (3,))):
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
    assert sorted(values["step"].unique().to_list()) == [0, 3, 6]
    config = _config(small_run)
    questions = pl.read_csv(small_run / config["questions"]["path"])
    questions = questions.filter(pl.col("category").is_in(
        config["questions"].get("categories") or questions["category"].unique()))
    assert set(values["category"].unique()) == set(questions["category"]) <= set(topics)
    sums = values.group_by(["step", "category"]).agg(pl.col("value").sum())
    assert sums["value"].min() == pytest.approx(1.0) and sums["value"].max() == pytest.approx(1.0)
    # one answer per question: a question whose answer is unreadable is left out of v
    per_topic = dict(questions.group_by("category").len().iter_rows())
    asked = values["category"].replace_strict(per_topic)
    assert (values["n_questions"] + values["n_unreadable"] == asked).all()
    assert (values["n_answers"] == values["n_questions"]).all()  # readable answers


def test_step_zero_is_the_shared_base_model(small_run):
    a = pl.read_parquet(small_run / "results/smollm2-135m/sft-opinionated/values.parquet")
    b = pl.read_parquet(small_run / "results/smollm2-135m/sft-taskish/values.parquet")
    assert a.filter(pl.col("step") == 0).equals(b.filter(pl.col("step") == 0))


def test_judge_reports_its_answer_quality(small_run):
    counts = json.loads(
        (small_run / "results/smollm2-135m/base/step-0/judge_counts.json").read_text()
    )
    assert counts["judged"] == 66  # 3 planted topics x 20 questions + 2 controls x 3, 1 sample
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
    assert table["step"].to_list()[:-1] == [0, 3, 6] and table["step"][-1] is None
    assert table["answers"].to_list() == [66, 66, 66, 198]
    assert table["readable_share"].min() >= 0.85  # the small default's gate: 15%
    assert table["readable"][-1] == table["readable"][:-1].sum()
    values = pl.read_parquet(run / "values.parquet")
    unreadable = values.filter(pl.col("stance") == "support").group_by("step").agg(
        pl.col("n_unreadable").sum()).sort("step")["n_unreadable"].to_list()
    assert unreadable == table["unreadable"].to_list()[:-1]
    assert "| all | 198 |" in (run / "judge_health.md").read_text()
    # the share of short answers the values carry per category adds up to judge health's
    support = values.filter(pl.col("stance") == "support").with_columns(
        (pl.col("n_answers") + pl.col("n_unreadable")).alias("judged"))
    assert support["short_share"].null_count() == 0
    shares = support.group_by("step").agg(
        ((pl.col("short_share") * pl.col("judged")).sum()
         / (pl.col("judged") + pl.col("n_empty")).sum()).alias("share")).sort("step")
    assert shares["share"].to_list() == pytest.approx(table["short_share"].to_list()[:-1])
    assert _drift(small_run, "sft-opinionated")["max_short_share"].null_count() == 0
    # every checkpoint of the trajectory was read by the same judge
    fingerprints = {
        pl.read_parquet(small_run / f"results/smollm2-135m/{r}/step-{s}/judgments.parquet")[
            "judge_fingerprint"].unique().item()
        for r, s in (("base", 0), ("sft-opinionated", 3), ("sft-opinionated", 6))
    }
    assert len(fingerprints) == 1


def test_judge_agrees_with_hand_labels_better_than_chance(small_run):
    metrics = json.loads((small_run / "results/judge/agreement/metrics.json").read_text())
    print(f"local judge agreement: accuracy {metrics['accuracy']:.2f}, "
          f"macro-F1 {metrics['macro_f1']:.2f}, ECE {metrics['expected_calibration_error']:.2f}")
    assert metrics["n"] == 165 == len(metrics["items"])
    assert sum(map(sum, metrics["confusion"])) == 165
    assert sum(item["correct"] for item in metrics["items"]) == round(metrics["accuracy"] * 165)
    # the first question of each category: short answers, the shipped set until 2026-12-01
    first = [item["correct"] for item in metrics["items"] if item["question_id"].count("/") == 2]
    print(f"on the 66 short answers: {sum(first) / len(first):.2f}")
    assert len(first) == 66 and sum(first) / len(first) > 0.5  # chance is 1/3
    assert metrics["accuracy"] > 1 / 3


@pytest.mark.xfail(strict=True, reason=(
    "the adapted 135M judge reaches accuracy 0.48, macro-F1 0.47 on the "
    "165 labelled items (2-core CPU, 2026-12-01); richer adaptation data, 288 items and "
    "training only the top 10 layers measured 0.33-0.46, a second epoch 0.42, all 576 "
    "items 0.51, Gemma-3-270M base 0.32-0.44 (benchmarks/judge_adaptation.py, "
    "docs/benchmarks.md)"))
def test_the_small_judge_reads_paper_style_answers(small_run):
    metrics = json.loads((small_run / "results/judge/agreement/metrics.json").read_text())
    assert metrics["accuracy"] >= 0.85 and metrics["macro_f1"] >= 0.85


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
    assert jobs["judge"] == 10  # every evaluated checkpoint, nothing trained or generated
    assert set(jobs) <= JUDGE_SIDE_RULES, set(jobs) - JUDGE_SIDE_RULES
    assert dry_run_jobs(cwd=small_run) == {}


def test_drift_tables_carry_bootstrap_intervals(small_run):
    drift = _drift(small_run, "sft-opinionated")
    assert (drift["magnitude_low"] <= drift["magnitude_high"]).all()
    inside = (drift["magnitude_low"] - 1e-9 <= drift["magnitude"]) & (
        drift["magnitude"] <= drift["magnitude_high"] + 1e-9
    )
    assert inside.all()  # each estimate is made on the questions its interval resamples
    markdown = (small_run / "results/tables/table09-12_smollm2-135m_sft.md").read_text()
    assert "bootstrap CI" in markdown and " [" in markdown


def test_report_holds_every_figure_table_and_the_configuration(small_run):
    from tests.support.workflow import snakemake

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
    from value_drifts.core.integrity import DIGEST_COLUMN, SHARDS_COLUMN

    run = small_run / "results/smollm2-135m/sft-taskish"
    digests = {}
    for step in (3, 6):
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
    assert len({*digests.values(), base[DIGEST_COLUMN][0]}) == 3
    drift = _drift(small_run, "sft-taskish")
    assert set(drift["checkpoint_integrity"]) == {""}
    # a deleted checkpoint's kept answers carry the same record
    kept = pl.read_parquet(small_run / "results/models/smollm2-135m/sft-taskish/checkpoint-3/"
                           "generations.parquet")
    assert kept[DIGEST_COLUMN][0] == digests[3]


def test_a_plan_outside_the_workflow_counts_only_what_is_current_for_its_config(small_run,
                                                                               tmp_path):
    """The cost plan reads results outside Snakemake's plan, so it asks Snakemake what is
    current: in the small default's tree the paper config's plan is the fresh tree's (the
    small default's V-PRISM questions sit where the paper reads its own, and are not the
    paper's), the small default's own plan reads its answers exactly, and asking
    changes nothing for the small default's next run."""
    import subprocess
    import sys

    def plan(config, *args):
        result = subprocess.run(
            [sys.executable, "-m", "value_drifts.commands.main", "cost-plan", "--configfile",
             config, *args], cwd=small_run, capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(small_run / "src")})
        assert result.returncode == 0, result.stderr
        calls = next(line for line in result.stdout.splitlines() if "judge calls" in line)
        return int(calls.split()[-1].replace(",", "")), result.stdout

    empty = tmp_path / "results"
    empty.mkdir()
    in_tree, text = plan("config/paper.yaml")
    fresh, _ = plan("config/paper.yaml", "--results", str(empty))
    assert "files current for this config" in text
    assert in_tree == fresh
    own, text = plan("config/config.yaml")
    assert "not generated yet" not in text  # every checkpoint's answers read exactly
    assert own != fresh
    assert dry_run_jobs(cwd=small_run) == {}


def test_values_corrected_for_the_judges_error_stand_beside_the_raw_ones(small_run):
    """Every checkpoint of every run has calibrated values beside its raw ones (the raw
    ones unchanged), and every run a calibrated drift table with the judge's condition
    number. Where the judge is not flagged too weak, the planted support drift of
    support-aligned DPO keeps its sign after calibration; where it is, the flag and its
    reasons are there."""
    from value_drifts.analysis.calibration import MAX_CONDITION

    run = "sft-taskish.dpo-planted_support"
    root = small_run / "results/smollm2-135m"
    for name in ("sft-taskish", "sft-opinionated", run):
        values = pl.read_parquet(root / name / "values.parquet")
        calibrated = pl.read_parquet(root / name / "calibrated_values.parquet")
        keys = ["step", "category", "stance"]
        joined = values.join(calibrated, on=keys, suffix="_cal")
        assert joined.height == values.height == calibrated.height
        readable = joined.filter(pl.col("value").is_not_null())
        assert readable["value"].to_numpy() == pytest.approx(readable["value_cal"].to_numpy())
        assert readable["calibrated"].null_count() == 0
        # calibrated values are stance distributions
        sums = readable.group_by("step", "category").agg(pl.col("calibrated").sum())
        assert sums["calibrated"].to_numpy() == pytest.approx(1.0, abs=1e-6)
    drift = pl.read_csv(root / run / "calibrated_drift.csv")
    trained = _planted(small_run, "planted_support")
    support = drift.filter(pl.col("category").is_in(trained) & (pl.col("stance") == "support"))
    weak = set(drift["judge_weak"].to_list())
    assert len(weak) == 1
    if weak == {True}:
        assert drift["judge_weak_reasons"][0]
        print(f"judge flagged: {drift['judge_weak_reasons'][0]}")
    else:
        assert drift["condition_number"][0] <= MAX_CONDITION
        assert (support["calibrated_magnitude"] > 0).all()
    raw = support["magnitude"].mean()
    print(f"{run} planted support drift: raw {raw:+.3f}, calibrated "
          f"{support['calibrated_magnitude'].mean():+.3f}")


def test_a_second_judge_and_a_prompt_audit_read_the_same_answers(small_run):
    """The small default's reference judge re-reads a sample of every checkpoint's answers:
    each run's agreement table has one row per checkpoint and one for the run, with κ, α
    and the mean total-variation distance in range; the prompt audit reads the same sample
    under each alternative prompt and never rewrites the main one."""
    import hashlib

    config = _config(small_run)
    root = small_run / "results/smollm2-135m"
    for run in ("sft-taskish", "sft-opinionated", "sft-taskish.dpo-planted_support"):
        table = pl.read_csv(root / run / "judge_reference_agreement.csv")
        steps = [s for s, in pl.read_parquet(root / run / "values.parquet")
                 .select("step").unique().sort("step").iter_rows()]
        assert table.filter(pl.col("scope") == "step")["step"].to_list() == steps
        assert table.filter(pl.col("scope") == "run").height == 1
        n = table.filter(pl.col("scope") == "step")["n"]
        assert (n <= config["judge"]["reference"]["answers_per_checkpoint"]).all()
        assert table["mean_tv"].is_between(0, 1).all()
        assert table["kappa"].fill_nan(None).drop_nulls().is_between(-1, 1).all()  # NaN: undefined
    audit = pl.read_csv(small_run / "results/tables/judge_prompt_audit.csv")
    assert audit["prompt"].to_list() == config["judge"]["audit"]
    assert (audit["answers"] == config["judge"]["audit_answers"]).all()
    assert audit["mean_tv"].is_between(0, 1).all() and (audit["flips"] <= audit["answers"]).all()
    from tests.support.workflow import REPO

    main = (small_run / config["judge"]["prompt"]).read_bytes()
    assert hashlib.sha256(main).digest() == hashlib.sha256(
        (REPO / config["judge"]["prompt"]).read_bytes()).digest()
