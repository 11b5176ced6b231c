"""What a trace reads: checkpoint series on disk (value_drifts.core.traces) and the checkpoint
kinds generation loads (safetensors shards beside DeepSpeed state, PEFT adapters, a
tokenizer from elsewhere), on a tiny model."""

from __future__ import annotations

import shutil

import polars as pl
import pytest
import yaml

from tests.support.tiny_model import build_tiny_model
from value_drifts.core.integrity import shard_digests
from value_drifts.core.traces import TraceError, read_trace, skipped_warnings
from value_drifts.generation.sampling import SamplingSettings, adapter_base, generate_transformers

QUESTIONS = pl.DataFrame({
    "question_id": ["q1", "q2"], "category": ["Abortion", "Gun Control"],
    "question": ["Should abortion be legal?", "Should guns be banned?"],
})
SETTINGS = SamplingSettings(samples=2, temperature=0.7, max_new_tokens=6, seed=3,
                            prompt_style="chat")
TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _answers(path, **kwargs):
    frame = generate_transformers(str(path), QUESTIONS, SETTINGS, batch_size=4, **kwargs)
    return frame.select("question_id", "sample", "response").rows()


def test_safetensors_shards_beside_deepspeed_state_load_as_the_whole_model(tiny, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    sharded = tmp_path / "checkpoint-4"
    AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).save_pretrained(
        sharded, max_shard_size="2MB")
    for name in TOKENIZER:
        shutil.copy(tiny / name, sharded / name)
    (sharded / "global_step4").mkdir()
    (sharded / "global_step4" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"x")
    assert len(shard_digests(sharded)) >= 2
    assert _answers(sharded) == _answers(tiny)


def test_an_adapter_only_checkpoint_is_loaded_onto_its_base(tiny, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                      init_lora_weights=False))
    adapter = tmp_path / "checkpoint-2"
    model.save_pretrained(adapter)  # adapter_config.json + adapter_model.safetensors only
    assert adapter_base(str(adapter)) == str(tiny)
    merged = tmp_path / "merged"
    model.merge_and_unload().save_pretrained(merged)
    for name in TOKENIZER:
        shutil.copy(tiny / name, merged / name)
    assert list(shard_digests(adapter)) == ["adapter_model.safetensors"]
    answers = _answers(adapter)  # no tokenizer in the folder: the base's
    assert answers == _answers(merged)
    assert answers != _answers(tiny)


def test_a_tokenizer_from_elsewhere(tiny, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny, bare, ignore=shutil.ignore_patterns("tokenizer*", "chat_template*",
                                                               "special_tokens*"))
    assert _answers(bare, tokenizer_path=str(tiny)) == _answers(tiny)


def _series(tmp_path, tiny, names):
    folder = tmp_path / "run"
    for name in names:
        shutil.copytree(tiny, folder / name)
    return folder


def test_steps_come_from_the_folder_names_and_incomplete_ones_are_skipped(tiny, tmp_path):
    folder = _series(tmp_path, tiny, ["checkpoint-500", "checkpoint-1000", "checkpoint-1500"])
    (folder / "checkpoint-1500" / "model.safetensors").write_bytes(b"\x00" * 16)
    (folder / "checkpoint-2000").mkdir()
    (folder / "runs").mkdir()  # a TensorBoard folder: not a checkpoint
    (folder / "README.md").write_text("mine")
    series = read_trace("mine", {"checkpoints": str(folder), "start": str(tiny),
                                 "prompt_style": "chat"})
    assert series.steps == (0, 500, 1000)
    assert series.checkpoints[0] == str(tiny)
    assert set(series.skipped) == {str(folder / "checkpoint-1500"), str(folder / "checkpoint-2000")}
    warnings = skipped_warnings({"mine": series})
    assert any(w.startswith(f"trace mine: skipped {folder / 'checkpoint-2000'}: ") for w in warnings)
    assert series.tokenizers[500] == str(folder / "checkpoint-500")


def test_a_checkpoint_without_a_tokenizer_takes_the_start_models_or_the_key(tiny, tmp_path):
    folder = _series(tmp_path, tiny, ["checkpoint-1"])
    for name in TOKENIZER:
        (folder / "checkpoint-1" / name).unlink()
    spec = {"checkpoints": str(folder), "prompt_style": "chat"}
    with pytest.raises(TraceError, match="has no tokenizer"):
        read_trace("mine", spec)
    assert read_trace("mine", {**spec, "tokenizer": "org/tok"}).tokenizers[1] == "org/tok"
    assert read_trace("mine", {**spec, "start": str(tiny)}).tokenizers[1] == str(tiny)


def test_unreadable_series_stop_with_the_reason(tiny, tmp_path):
    with pytest.raises(TraceError, match="is not a folder"):
        read_trace("x", {"checkpoints": str(tmp_path / "missing"), "prompt_style": "chat"})
    folder = _series(tmp_path, tiny, ["checkpoint-1"])
    with pytest.raises(TraceError, match="start: .* is not a complete model"):
        read_trace("x", {"checkpoints": str(folder), "start": str(tmp_path / "nope"),
                         "prompt_style": "chat"})
    hub = read_trace("olmo", {"hub_id": "org/model", "prompt_style": "chat",
                              "revisions": {0: "stage1-sft", 500: "step500"}})
    assert hub.steps == (0, 500) and hub.revisions == {0: "stage1-sft", 500: "step500"}
    assert hub.checkpoints[500] == "org/model" and hub.tokenizers == {}


def test_a_trace_is_asked_about_every_category(tmp_path):
    """The small default evaluates its planted topics and two controls only; a trace of
    your own checkpoints is asked every question of the file."""
    from value_drifts.commands.main import SMALL_DEFAULT, trace_config

    assert yaml.safe_load(SMALL_DEFAULT.read_text())["questions"]["categories"]
    config = trace_config(tmp_path, None, None, "chat", "mine")
    assert "categories" not in config["questions"]
    assert config["questions"]["path"] == "resources/vprism_small.csv"
