"""A trainer section's ``extra`` mapping passes through to TRL's config class unchanged,
and only to real fields the workflow does not set itself."""

from __future__ import annotations

import pytest

from value_drifts.training.common import TrainerSettings, trl_config

TRAINER = {"learning_rate": 1e-4, "global_batch_size": 8, "per_device_batch_size": 8,
           "epochs": 1, "max_length": 64}


def _settings(tmp_path, extra):
    return TrainerSettings.from_config(
        {**TRAINER, "extra": extra}, model_path="m", output_dir=str(tmp_path / "out"),
        save_steps=2, seed=0, threads=1)


@pytest.mark.parametrize("config_name", ["SFTConfig", "DPOConfig", "RewardConfig"])
def test_extra_fields_reach_the_trl_config(tmp_path, config_name):
    import trl

    config_class = getattr(trl, config_name)
    args = trl_config(config_class, _settings(tmp_path, {"max_grad_norm": 0.25,
                                                         "adam_beta2": 0.95}),
                      max_length=64)
    assert args.max_grad_norm == 0.25 and args.adam_beta2 == 0.95
    assert args.learning_rate == 1e-4 and args.save_steps == 2  # the workflow's own


def test_a_trainer_specific_field_passes_through(tmp_path):
    from trl import DPOConfig

    args = trl_config(DPOConfig, _settings(tmp_path, {"label_smoothing": 0.1}), beta=0.1)
    assert args.label_smoothing == 0.1 and args.beta == 0.1


def test_an_unknown_field_is_named(tmp_path):
    from trl import SFTConfig

    with pytest.raises(ValueError, match=r"\['no_such_field'\] are not fields of SFTConfig"):
        trl_config(SFTConfig, _settings(tmp_path, {"no_such_field": 1}))


def test_a_field_the_workflow_sets_is_refused(tmp_path):
    from trl import DPOConfig

    with pytest.raises(ValueError, match=r"\['beta', 'save_steps'\] are set by the workflow"):
        trl_config(DPOConfig, _settings(tmp_path, {"save_steps": 5, "beta": 0.2}), beta=0.1)


def test_no_extra_is_the_same_config(tmp_path):
    from trl import SFTConfig

    plain = trl_config(SFTConfig, _settings(tmp_path, {}), max_length=64)
    default = SFTConfig(output_dir=str(tmp_path / "x"), use_cpu=True, bf16=False)
    assert plain.max_grad_norm == default.max_grad_norm and plain.adam_beta2 == default.adam_beta2
