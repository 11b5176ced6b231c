import copy

import pytest

from value_drifts.core.config import ConfigError, validate_config


def test_shipped_configs_are_valid(small_config, paper_config):
    validate_config(small_config)
    validate_config(paper_config)


def _error(config) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    return str(info.value)


def test_unknown_key_is_named(small_config):
    small_config["generation"]["temprature"] = 0.7
    message = _error(small_config)
    assert "generation" in message and "temprature" in message


def test_wrong_type_is_named(small_config):
    small_config["generation"]["samples"] = "five"
    message = _error(small_config)
    assert "generation.samples" in message and "integer" in message


def test_negative_steps_are_rejected(small_config):
    small_config["sft_datasets"]["taskish"]["save_steps"] = -5
    message = _error(small_config)
    assert "sft_datasets.taskish.save_steps" in message and "minimum" in message


def test_po_grid_naming_a_missing_sft_set_is_rejected(paper_config):
    config = copy.deepcopy(paper_config)
    config["preference_optimization"]["grid"]["sft_datasets"].append("sharegpt")
    message = _error(config)
    assert "preference_optimization.grid.sft_datasets" in message and "'sharegpt'" in message


def test_sft_run_naming_a_missing_model_is_rejected(small_config):
    small_config["sft"]["runs"] = [{"model": "gpt2", "dataset": "taskish"}]
    assert "sft.runs.0.model" in _error(small_config)


def test_stance_mix_must_sum_to_one(small_config):
    small_config["sft_datasets"]["taskish"]["stance_mix"]["Abortion"] = {"neutral": 0.5}
    assert "stance_mix.Abortion" in _error(small_config)


def test_hub_model_needs_hub_id(paper_config):
    del paper_config["models"]["qwen3-4b"]["hub_id"]
    assert "models.qwen3-4b" in _error(paper_config)


@pytest.mark.parametrize("backend", ["openai", "openai_batch"])
def test_one_judge_job_per_run_is_for_local_judges(paper_config, backend):
    """An API judge pays no start-up per job: judge.one_job_per_run is refused, named."""
    paper_config["judge"].update(backend=backend, one_job_per_run=True)
    assert "judge.one_job_per_run: for local judges" in _error(paper_config)
    paper_config["judge"].update(backend="vllm", model="Qwen/Qwen3-8B")
    validate_config(paper_config)  # a local judge may
    paper_config["judge"]["reference"] = {"backend": "vllm", "model": "m", "one_job_per_run": True}
    assert "judge.reference.one_job_per_run" in _error(paper_config)
