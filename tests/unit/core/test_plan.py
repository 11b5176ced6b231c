import pytest

from value_drifts.core.checkpoints import checkpoint_steps, ppo_total_steps, total_steps
from value_drifts.core.plan import build_plan, name_problems, slug


def test_total_steps_counts_partial_batches():
    assert total_steps(255_751, 128, 3) == 1999 * 3
    assert total_steps(46_801, 128, 3) == 366 * 3


def test_ppo_steps_count_episodes():
    assert ppo_total_steps(10, 4, 1) == 3
    assert ppo_total_steps(10, 4, 2) == 5  # 20 episodes, not 2 x ceil(10 / 4)
    assert checkpoint_steps(10, 4, 2, 2, ppo=True) == [2, 4, 5]


def test_checkpoint_steps_include_the_last_step():
    assert checkpoint_steps(48, 8, 1, 2) == [2, 4, 6]
    assert checkpoint_steps(50, 8, 1, 3) == [3, 6, 7]
    assert checkpoint_steps(46_801, 128, 3, 100)[-2:] == [1000, 1098]


@pytest.mark.parametrize("bad", [(0, 8, 1), (8, 0, 1), (8, 8, 0)])
def test_total_steps_rejects_nonpositive(bad):
    with pytest.raises(ValueError):
        total_steps(*bad)


def test_small_plan_phases_and_starts(small_config):
    plan = build_plan(small_config)
    assert [p.run for p in plan.sft_phases()] == ["sft-opinionated", "sft-taskish"]
    phase = plan.phase("smollm2-135m", "sft-taskish")
    assert phase.steps == (3, 6)
    # step 0 of SFT is the base model
    assert plan.trajectory(phase)[0] == ("base", 0, 0)
    # DPO and SimPO on both planted sets, PPO on the support-aligned one
    assert sorted(p.run for p in plan.po_phases()) == [
        "sft-taskish.dpo-planted_oppose", "sft-taskish.dpo-planted_support",
        "sft-taskish.ppo-planted_support",
        "sft-taskish.simpo-planted_oppose", "sft-taskish.simpo-planted_support",
    ]
    dpo = plan.phase("smollm2-135m", "sft-taskish.dpo-planted_support")
    assert plan.trajectory(dpo) == [("sft-taskish", 6, 0), ("sft-taskish.dpo-planted_support", 4, 4)]
    # base evaluated once, shared by both SFT runs; PO step 0 reuses the SFT's last step
    assert len(plan.evaluated_checkpoints()) == 1 + 2 + 2 + 5 * 1


def test_paper_plan_grid(paper_config):
    plan = build_plan(paper_config)
    assert len(plan.sft_phases()) == 8
    wildchat = plan.phase("llama3-3b", "sft-wildchat")
    assert wildchat.steps[0] == 500 and wildchat.last_step == 5997
    po = plan.po_phases()
    # 2 models x 2 SFT sets x 3 algorithms x 4 preference sets + 9 ablation variants
    # (each ablation grid holds the default value once, which is the main run)
    assert len(po) == 48 + 9
    dpo = plan.phase("llama3-3b", "sft-wildchat.dpo-synthetic_support")
    # step 0 of PO is the final SFT checkpoint
    assert plan.trajectory(dpo)[0] == ("sft-wildchat", 5997, 0)
    assert dpo.last_step == 296 * 3
    ppo = plan.phase("llama3-3b", "sft-wildchat.ppo-synthetic_support")
    assert ppo.last_step == 887  # ceil(3 * 9453 / 32): PPO counts episodes, not epochs
    ablation = plan.phase("llama3-3b", "sft-wildchat.ppo-synthetic_support.kl_coef-0.2")
    assert ablation.overrides == {"kl_coef": 0.2}


def test_slug():
    assert slug("Gender and LGBTQ+ Identity") == "gender-and-lgbtq-identity"


def test_names_that_share_a_file_name_are_named_together(small_config):
    topics = ["Abortion", "Abortion?", "Race and Racism", "race and racism!", "???"]
    assert name_problems(small_config, topics) == [
        "category names 'Abortion' and 'Abortion?' share the file name 'abortion': rename one",
        "category names 'Race and Racism' and 'race and racism!' share the file name "
        "'race-and-racism': rename one",
        "category '???' has no letters or digits for a file name",
    ]


def test_model_dataset_and_preference_set_names_are_checked_the_same_way(small_config):
    config = {**small_config,
              "models": {**small_config["models"], "SmolLM2_135M": {}},
              "sft_datasets": {**small_config["sft_datasets"], "a/b": {}},
              "preference_sets": {**small_config["preference_sets"], "planted-support": {}}}
    problems = name_problems(config, ["Abortion"])
    assert any("'smollm2-135m' and 'SmolLM2_135M'" in p for p in problems)
    assert any("SFT dataset 'a/b' cannot be a file name" in p for p in problems)
    assert any("'planted_support' and 'planted-support'" in p for p in problems)
    assert name_problems(small_config, ["Abortion", "Race and Racism"]) == []


def test_ablation_values_that_would_share_a_run_id_are_rejected(paper_config):
    assert name_problems(paper_config, ["Abortion"]) == []
    ablation = dict(paper_config["preference_optimization"]["ablations"][1])
    ablation["values"] = [0.1, 1.000001e-5, 1e-5, 0.1]
    config = {**paper_config, "preference_optimization": {
        **paper_config["preference_optimization"], "ablations": [ablation]}}
    problems = name_problems(config, ["Abortion"])
    assert problems == ["preference_optimization.ablations.0: values 0.1 and 0.1 of beta give "
                        "the same run id (.beta-0.1)"]
    # close values keep distinct run ids instead of colliding on :g's six digits
    runs = {p.run for p in build_plan(config).po_phases() if p.overrides}
    assert {"sft-wildchat.dpo-synthetic_support.beta-1e-05",
            "sft-wildchat.dpo-synthetic_support.beta-1.000001e-05"} <= runs
