"""The disk a plan's training runs need (value_drifts.core.checkpoint_disk), with numbers
worked out by hand: what the cost plan prints and each training job declares as
checkpoint_disk_mb."""

from __future__ import annotations

import pytest

from value_drifts.commands.cost_plan import main
from value_drifts.core import checkpoint_disk as disk
from value_drifts.core import cluster_requests as res
from value_drifts.core.study import load_study

GB = 10**9
CLUSTER = res.ClusterSettings()
BF16 = {"precision": "bf16", "save_only_model": False}


def test_one_checkpoint_weights_and_resume_state():
    llama3_3b = res.ModelSize(gpus=4, params_b=3.2)
    assert disk.weights_bytes(llama3_3b, "bf16") == 6.4 * GB
    assert disk.weights_bytes(llama3_3b, "fp32") == 12.8 * GB
    # DeepSpeed ZeRO-2 (SFT fits): 12 bytes/parameter of Adam state + the bf16 module again
    assert disk.resume_state_bytes(llama3_3b, "sft", BF16, CLUSTER) == (38.4 + 6.4) * GB
    # ZeRO-3 (DPO's policy and reference on a 8B model): the optimizer shards alone
    llama3_8b = res.ModelSize(gpus=8, params_b=8.0)
    assert res.zero_stage(llama3_8b, "dpo", CLUSTER) == 3
    assert disk.resume_state_bytes(llama3_8b, "dpo", BF16, CLUSTER) == 96 * GB
    # one CPU process: PyTorch Adam's two moments in the parameters' dtype
    smol = res.ModelSize(gpus=0, params_b=0.135)
    fp32 = {"precision": "fp32", "save_only_model": False}
    assert disk.resume_state_bytes(smol, "dpo", fp32, CLUSTER) == 2 * 0.54 * GB
    # PPO (ZeRO-3): the optimizer state of policy and value model, and the value model
    assert res.zero_stage(llama3_3b, "ppo", CLUSTER) == 3
    assert disk.resume_state_bytes(llama3_3b, "ppo", BF16, CLUSTER) == (6.4 + 2 * 38.4) * GB
    assert disk.resume_state_bytes(smol, "ppo", fp32, CLUSTER) == (0.54 + 2 * 2 * 0.54) * GB
    # weights alone with save_only_model
    assert disk.resume_state_bytes(llama3_3b, "sft", {**BF16, "save_only_model": True},
                                   CLUSTER) == 0


def test_a_runs_peak_holds_every_checkpoint_and_two_resume_states():
    run = disk.RunDisk("m", "sft-x", "sft", checkpoints=12, weights_bytes=6 * GB,
                       resume_bytes=40 * GB, kept=1)
    assert run.peak_bytes == (12 * 6 + 2 * 40) * GB
    assert run.peak_mb == 152_000 and run.kept_bytes == 6 * GB
    one = disk.RunDisk("m", "sft-x", "sft", 1, 6 * GB, 40 * GB, 1)
    assert one.peak_bytes == 46 * GB  # a single checkpoint holds one resume state
    # the reward model: its checkpoint, then its final folder beside it
    reward = disk.RunDisk("m", "reward", "reward", 1, 6 * GB, 4 * GB, 1, final_copy=True)
    assert reward.peak_bytes == 12 * GB


@pytest.fixture
def small_grid(paper_config):
    """The paper config cut to Llama-3-3B SFT on Alpaca, then DPO and PPO on the
    support-aligned synthetic set (9,453 pairs), no ablations."""
    paper_config["sft"]["runs"] = [{"model": "llama3-3b", "dataset": "alpaca"}]
    po = paper_config["preference_optimization"]
    po["grid"] = {"models": ["llama3-3b"], "sft_datasets": ["alpaca"],
                  "algorithms": ["dpo", "ppo"], "preference_sets": ["synthetic_support"]}
    po["ablations"] = []
    return paper_config


def test_a_small_plan_by_hand(small_grid):
    """Llama-3-3B (3.2B parameters, bf16, 4 GPUs): 6.4 GB of weights per checkpoint;
    resume state 38.4 GB of Adam state + 6.4 GB of module weights under ZeRO-2 (SFT, DPO,
    reward model) = 44.8 GB; PPO under ZeRO-3, policy and value model: 2 × 38.4 + the
    value model's 6.4 = 83.2 GB.

    - SFT on Alpaca: ceil(46,801 / 128) = 366 × 3 epochs = 1,098 steps, saved every 100
      and at the end: 11 checkpoints; peak 11 × 6.4 + 2 × 44.8 = 160.0 GB;
    - its reward model on synthetic_support: 6.4 + 44.8 = 51.2 GB;
    - DPO: ceil(9,453 / 32) = 296 × 3 = 888 steps: 9 checkpoints, 57.6 + 89.6 = 147.2 GB;
    - PPO: ceil(3 × 9,453 / 32) = 887 updates: 9 checkpoints, 57.6 + 166.4 = 224.0 GB.
    """
    plan = disk.disk_plan(load_study(small_grid))
    by_task = {run.task: run for run in plan.runs}
    assert [run.task for run in plan.runs] == ["sft", "reward", "dpo", "ppo"]
    assert {t: r.checkpoints for t, r in by_task.items()} == {
        "sft": 11, "reward": 1, "dpo": 9, "ppo": 9}
    assert {t: r.peak_mb for t, r in by_task.items()} == {
        "sft": 160_000, "reward": 51_200, "dpo": 147_200, "ppo": 224_000}
    assert plan.upper_bound == pytest.approx(582.4 * GB)
    assert plan.kept == 4 * 6.4 * GB  # each run's final checkpoint, the reward model
    assert plan.largest.task == "ppo"
    # a cap: kept + what trains at once; below the largest run, that run alone
    assert plan.with_cap(300_000) == pytest.approx((25.6 + 300) * GB)
    assert plan.with_cap(100_000) == pytest.approx((25.6 + 224) * GB)
    assert plan.with_cap(10**9) == plan.upper_bound

    small_grid["generation"]["delete_checkpoint_weights"] = False
    assert disk.disk_plan(load_study(small_grid)).kept == pytest.approx((11 + 1 + 9 + 9) * 6.4 * GB)


def test_the_cost_plan_prints_the_disk(small_grid, tmp_path, capsys, monkeypatch):
    import yaml

    from tests.support.workflow import REPO

    monkeypatch.chdir(REPO)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(small_grid))
    main(["--configfile", str(path), "--results", str(tmp_path / "none"),
          "--checkpoint-disk-mb", "300000"])
    text = capsys.readouterr().out
    assert "checkpoint disk of the training runs" in text
    assert "peak, upper bound" in text and "582.4 GB" in text
    assert "kept after generation" in text and "25.6 GB" in text
    assert "peak, cap 300,000 MB" in text and "325.6 GB" in text
    assert "checkpoint_disk_mb=224,000" in text  # the largest run: PPO
