"""Which checkpoint folders are complete, and where each trainer's restart picks up: folders
built by hand with tiny tensors in the HF Trainer's layouts (no training)."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from value_drifts.core.checkpoints import (
    COMPLETE_MARKER,
    DELETED_MARKER,
    completion_marker_callback,
    delete_checkpoint_weights,
    incomplete_reason,
    is_complete,
    newest_complete_step,
    optimizer_state_problem,
    resumable_checkpoint,
    write_completion_marker,
)

TENSORS = {"embed.weight": torch.zeros(4, 2), "head.weight": torch.ones(3)}


def _truncate(file: Path, by: int = 5) -> int:
    """Cut ``by`` bytes off the end, as a job killed mid-write leaves it; returns the
    size it had."""
    data = file.read_bytes()
    file.write_bytes(data[:-by])
    return len(data)


def _model(path: Path, weights: str = "single") -> Path:
    """A model folder as ``save_pretrained`` writes it: config, then one safetensors file,
    two shards and their index, or a torch ``.bin``."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if weights == "single":
        save_file(TENSORS, path / "model.safetensors")
    elif weights == "sharded":
        shards = {"embed.weight": "model-00001-of-00002.safetensors",
                  "head.weight": "model-00002-of-00002.safetensors"}  # fmt: skip
        for name, shard in shards.items():
            save_file({name: TENSORS[name]}, path / shard)
        index = {"metadata": {"total_size": 44}, "weight_map": shards}
        (path / "model.safetensors.index.json").write_text(json.dumps(index))
    elif weights == "bin":
        torch.save(TENSORS, path / "pytorch_model.bin")
    return path


def _trainer_state(path: Path, optimizer: bool = True) -> Path:
    """What the HF Trainer adds to a checkpoint: optimizer (unless ``save_only_model``)
    and, last, ``trainer_state.json``."""
    if optimizer:
        torch.save({"state": {}, "param_groups": []}, path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    return path


def test_a_whole_model_folder_is_complete(tmp_path):
    for weights in ("single", "sharded", "bin"):
        assert incomplete_reason(_model(tmp_path / weights, weights)) is None
        assert is_complete(tmp_path / weights)


def test_truncated_safetensors_weights_are_incomplete(tmp_path):
    model = _model(tmp_path / "checkpoint-2")
    size = _truncate(model / "model.safetensors")
    assert incomplete_reason(model) == (
        f"model.safetensors is truncated: {size - 5} bytes where its header describes {size}"
    )
    # Cut inside the header itself, or before its length.
    header = 8 + int.from_bytes((model / "model.safetensors").read_bytes()[:8], "little")
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:20])
    assert incomplete_reason(model) == (
        f"model.safetensors is truncated: 20 bytes, its header alone would be {header}"
    )
    (model / "model.safetensors").write_bytes(b"\x00\x01")
    assert incomplete_reason(model) == (
        "model.safetensors is 2 bytes, shorter than the safetensors header length"
    )
    assert not is_complete(model)


def test_an_index_needs_every_shard_it_names_whole(tmp_path):
    model = _model(tmp_path / "checkpoint-2", "sharded")
    size = _truncate(model / "model-00002-of-00002.safetensors")
    assert incomplete_reason(model) == (
        f"model-00002-of-00002.safetensors is truncated: {size - 5} bytes where its header "
        f"describes {size}"
    )
    (model / "model-00002-of-00002.safetensors").unlink()
    assert incomplete_reason(model) == (
        "model-00002-of-00002.safetensors, named by model.safetensors.index.json, is missing"
    )
    (model / "model.safetensors.index.json").write_text('{"weight_map": ')
    assert incomplete_reason(model).startswith(
        "model.safetensors.index.json has no readable weight_map ("
    )


def test_a_truncated_torch_bin_is_incomplete(tmp_path):
    model = _model(tmp_path / "checkpoint-2", "bin")
    _truncate(model / "pytorch_model.bin")
    assert incomplete_reason(model) == (
        "pytorch_model.bin is not a whole torch archive (no zip directory at its end)"
    )


def test_the_config_must_be_there_and_parse(tmp_path):
    model = _model(tmp_path / "checkpoint-2")
    (model / "config.json").write_text('{"model_type": "lla')  # cut short
    assert incomplete_reason(model).startswith("config.json is not readable JSON (")
    (model / "config.json").write_text("[1, 2]")
    assert incomplete_reason(model) == "config.json is not a JSON object"
    (model / "config.json").unlink()
    assert incomplete_reason(model) == "config.json is missing"
    empty = tmp_path / "checkpoint-4"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    assert incomplete_reason(empty) == (
        "it has no weights (none of model.safetensors, model.safetensors.index.json, "
        "pytorch_model.bin, pytorch_model.bin.index.json)"
    )


def test_an_adapter_only_folder_is_complete_with_its_own_config(tmp_path):
    adapter = tmp_path / "checkpoint-2"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    save_file({"lora_A.weight": torch.zeros(8, 2)}, adapter / "adapter_model.safetensors")
    assert incomplete_reason(adapter) is None
    size = _truncate(adapter / "adapter_model.safetensors")
    assert incomplete_reason(adapter) == (
        f"adapter_model.safetensors is truncated: {size - 5} bytes where its header "
        f"describes {size}"
    )
    (adapter / "adapter_model.safetensors").unlink()
    assert incomplete_reason(adapter) == (
        "it has no weights (none of adapter_model.safetensors, adapter_model.bin)"
    )


def test_the_completion_marker_vouches_for_what_the_save_wrote(tmp_path):
    checkpoint = _trainer_state(_model(tmp_path / "checkpoint-2"))
    write_completion_marker(checkpoint)
    recorded = json.loads((checkpoint / COMPLETE_MARKER).read_text())["files"]
    assert recorded == {
        name: (checkpoint / name).stat().st_size
        for name in ("config.json", "model.safetensors", "optimizer.pt", "trainer_state.json")
    }
    assert incomplete_reason(checkpoint) is None
    # A later save into the same folder, killed while writing the weights.
    size = _truncate(checkpoint / "model.safetensors")
    assert incomplete_reason(checkpoint) == (
        f"model.safetensors is {size - 5} bytes where the finished save wrote {size} "
        "(a later save into it was cut short)"
    )
    (checkpoint / "optimizer.pt").unlink()
    write_completion_marker(checkpoint)
    (checkpoint / "trainer_state.json").unlink()
    assert incomplete_reason(checkpoint) == (
        f"trainer_state.json, listed in {COMPLETE_MARKER}, is missing"
    )
    (checkpoint / COMPLETE_MARKER).write_text("{")
    assert incomplete_reason(checkpoint).startswith(f"its {COMPLETE_MARKER} is unreadable (")


def test_deleted_weights_cannot_restart_anything(tmp_path):
    checkpoint = _trainer_state(_model(tmp_path / "checkpoint-2"))
    write_completion_marker(checkpoint)
    delete_checkpoint_weights(checkpoint)
    assert incomplete_reason(checkpoint) == (
        f"its weights were deleted after generation ({DELETED_MARKER})"
    )
    assert newest_complete_step(tmp_path) is None
    assert resumable_checkpoint(tmp_path) is None


def _deepspeed(path: Path, ranks: int = 2, latest: bool = True) -> Path:
    """A checkpoint saved under accelerate + DeepSpeed: the 16-bit model, then DeepSpeed's
    shards in ``global_step2/`` and its ``latest`` file, then ``trainer_state.json``."""
    _model(path)
    shards = path / "global_step2"
    shards.mkdir()
    torch.save({"module": {}}, shards / "mp_rank_00_model_states.pt")
    for rank in range(ranks):
        torch.save({"state": {}}, shards / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")
    if latest:
        (path / "latest").write_text("global_step2")
    return _trainer_state(path, optimizer=False)


def test_deepspeed_optimizer_state_is_found_through_its_latest_file(tmp_path):
    checkpoint = _deepspeed(tmp_path / "checkpoint-2")
    assert incomplete_reason(checkpoint) is None
    assert optimizer_state_problem(checkpoint) is None
    assert resumable_checkpoint(tmp_path) == str(checkpoint)
    _truncate(checkpoint / "global_step2/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt")
    assert optimizer_state_problem(checkpoint) == (
        "global_step2/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt is not a whole torch "
        "archive (no zip directory at its end)"
    )
    unlatest = _deepspeed(tmp_path / "checkpoint-4", latest=False)
    assert optimizer_state_problem(unlatest) == (
        "it has DeepSpeed global_step* folders but no 'latest' file naming one"
    )
    assert resumable_checkpoint(tmp_path) is None


def test_a_model_only_checkpoint_restarts_ppo_but_resumes_no_optimizer(tmp_path, caplog):
    with_optimizer = _trainer_state(_model(tmp_path / "checkpoint-2"))
    model_only = _trainer_state(_model(tmp_path / "checkpoint-4"), optimizer=False)  # PPO's
    half_written = _model(tmp_path / "checkpoint-6")
    size = _truncate(half_written / "model.safetensors")
    caplog.set_level(logging.WARNING, logger="value_drifts.core.checkpoints")

    assert newest_complete_step(tmp_path) == 4  # PPO's restart
    assert caplog.messages == [
        f"Not restarting from {half_written}: model.safetensors is truncated: {size - 5} "
        f"bytes where its header describes {size}"
    ]
    caplog.clear()
    assert resumable_checkpoint(tmp_path) == str(with_optimizer)
    assert caplog.messages == [
        f"Not restarting from {half_written}: model.safetensors is truncated: {size - 5} "
        f"bytes where its header describes {size}",
        f"Not restarting from {model_only}: it has no optimizer state (saved with save_only_model)",
    ]
    assert newest_complete_step(tmp_path / "absent") is None


def test_a_save_cut_before_trainer_state_cannot_resume_its_optimizer(tmp_path):
    checkpoint = _model(tmp_path / "checkpoint-2")
    torch.save({}, checkpoint / "optimizer.pt")
    assert is_complete(checkpoint)  # the model is whole: PPO could restart from it
    assert optimizer_state_problem(checkpoint) == "it has no trainer_state.json"
    assert resumable_checkpoint(tmp_path) is None


@pytest.mark.parametrize("should_save", [True, False])
def test_the_callback_marks_the_checkpoint_just_saved(tmp_path, should_save):
    checkpoint = _trainer_state(_model(tmp_path / "checkpoint-6"))
    args = SimpleNamespace(output_dir=str(tmp_path), should_save=should_save)
    completion_marker_callback().on_save(args, SimpleNamespace(global_step=6), control=None)
    assert (checkpoint / COMPLETE_MARKER).is_file() == should_save
