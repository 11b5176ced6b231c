"""Checkpoint integrity (value_drifts.core.integrity): per-shard weight digests, and the notes a
series of checkpoints gets when two steps hold the same weights or share a shard."""

from __future__ import annotations

import hashlib
import json
import shutil

import polars as pl
import pytest

from tests.support.tiny_model import build_tiny_model
from value_drifts.analysis.aggregate import drift_table
from value_drifts.analysis.tables import drift_markdown, stack_drifts
from value_drifts.core.integrity import (
    DIGEST_COLUMN,
    SHARDS_COLUMN,
    integrity_notes,
    recorded_shards,
    shard_columns,
    shard_digests,
    weights_digest,
)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A tiny model saved in safetensors shards, with trainer state beside it."""
    import torch
    from transformers import AutoModelForCausalLM

    single = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
    model = AutoModelForCausalLM.from_pretrained(single, dtype=torch.float32)
    folder = tmp_path_factory.mktemp("run") / "checkpoint-2"
    model.save_pretrained(folder, max_shard_size="2MB")
    (folder / "optimizer.pt").write_bytes(b"optimizer state")
    (folder / "rng_state.pth").write_bytes(b"rng")
    (folder / "global_step2").mkdir()
    (folder / "global_step2" / "mp_rank_00_model_states.pt").write_bytes(b"deepspeed")
    return folder


def test_every_shard_is_digested_and_trainer_state_is_not(sharded):
    shards = shard_digests(sharded)
    names = sorted(p.name for p in sharded.glob("model-*.safetensors"))
    assert len(names) >= 2 and sorted(shards) == names
    first = sharded / names[0]
    assert shards[names[0]] == "sha256:" + hashlib.sha256(first.read_bytes()).hexdigest()
    columns = shard_columns(shards)
    assert json.loads(columns[SHARDS_COLUMN]) == shards
    assert columns[DIGEST_COLUMN] == weights_digest(shards)


def test_a_copied_checkpoint_is_flagged_and_a_changed_one_is_not(sharded, tmp_path):
    copy = tmp_path / "checkpoint-4"
    shutil.copytree(sharded, copy)
    start = {"model.safetensors": "sha256:base"}
    notes = integrity_notes({0: start, 2: shard_digests(sharded), 4: shard_digests(copy)})
    assert notes == {4: "step 4 has the same weights as step 2"}
    # one shard rewritten: the other shards still equal step 2's
    names = sorted(p.name for p in copy.glob("model-*.safetensors"))
    (copy / names[-1]).write_bytes(b"other weights")
    notes = integrity_notes({0: start, 2: shard_digests(sharded), 4: shard_digests(copy)})
    assert notes == {4: f"step 4 shares {', '.join(names[:-1])} with step 2"}


def test_a_later_step_equal_to_the_start_model_and_unrecorded_steps():
    a, b, c = ({"model.safetensors": f"sha256:{x}"} for x in "abc")
    assert integrity_notes({0: a, 2: b, 4: c}) == {}
    assert integrity_notes({0: a, 2: b, 4: a}) == {
        4: "step 4 has the same weights as the start model (step 0)"}
    assert integrity_notes({0: a, 2: None, 4: None, 6: b}) == {}
    assert integrity_notes({0: a, 2: b, 4: b, 6: b}) == {
        4: "step 4 has the same weights as step 2", 6: "step 6 has the same weights as step 2"}


def test_recorded_shards_read_from_a_table():
    shards = {"model.safetensors": "sha256:a"}
    frame = pl.DataFrame({"question_id": ["q1", "q2"]}).with_columns(
        *[pl.lit(v).alias(k) for k, v in shard_columns(shards).items()])
    assert recorded_shards(frame) == shards
    assert recorded_shards(frame.drop(SHARDS_COLUMN)) is None
    mixed = pl.concat([frame, frame.with_columns(pl.lit('{"x": "sha256:b"}').alias(SHARDS_COLUMN))])
    with pytest.raises(ValueError, match="several checkpoints"):
        recorded_shards(mixed, "step 2")


def _values(note_at_4: str) -> pl.DataFrame:
    rows = []
    for step, value in ((0, 0.2), (2, 0.4), (4, 0.6)):
        for stance, v in (("support", value), ("neutral", 1 - value), ("oppose", 0.0)):
            rows.append({"step": step, "category": "Abortion", "stance": stance, "value": v,
                         "ci_halfwidth": 0.05, "n_questions": 3,
                         "checkpoint_note": note_at_4 if step == 4 else ""})
    return pl.DataFrame(rows)


def test_the_drift_table_and_its_markdown_name_the_duplicate():
    flagged = drift_table(_values("step 4 has the same weights as step 2"))
    assert set(flagged["checkpoint_integrity"]) == {
        "checkpoint integrity: step 4 has the same weights as step 2"}
    assert flagged.filter(pl.col("stance") == "support")["magnitude"].item() == pytest.approx(0.4)
    clean = drift_table(_values(""))
    assert set(clean["checkpoint_integrity"]) == {""}
    markdown = drift_markdown(stack_drifts({"sft-a": flagged, "sft-b": clean}), "SFT drift")
    assert "- sft-a: checkpoint integrity: step 4 has the same weights as step 2" in markdown
    assert "sft-b:" not in markdown
