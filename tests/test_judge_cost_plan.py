import polars as pl
import pytest

from tests.workflow import REPO
from value_drifts.judge.plan_cost import format_plan, plan_for_config


@pytest.fixture
def priced_config(small_config):
    small_config["judge"]["prices"] = {"input_per_million_usd": 2.5,
                                       "output_per_million_usd": 10.0}
    return small_config


def test_plan_before_anything_is_generated(priced_config, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # config paths are relative to the repository
    plan = plan_for_config(priced_config, results=tmp_path / "none")
    # 17 evaluated checkpoints x 22 questions x 2 samples
    assert plan.calls == 17 * 22 * 2 == plan.to_send
    assert plan.cached == 0
    assert plan.output_tokens == plan.calls
    expected = (plan.input_tokens * 2.5 + plan.output_tokens * 10.0) / 1e6
    assert plan.sync_cost_usd == pytest.approx(expected)
    assert plan.batch_cost_usd == pytest.approx(expected / 2)
    assert "judge calls" in format_plan(plan, "config.yaml", "transformers")


def test_generated_checkpoints_use_their_exact_prompts(priced_config, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    step = tmp_path / "smollm2-135m" / "base" / "step-0"
    step.mkdir(parents=True)
    pl.DataFrame({"question_id": ["q"], "category": ["Abortion"], "question": ["Why?"],
                  "sample": [0], "response": ["Because."]}).write_parquet(
        step / "generations.parquet")
    plan = plan_for_config(priced_config, results=tmp_path)
    assert plan.calls == 16 * 22 * 2 + 1
