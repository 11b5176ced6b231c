"""Inputs are named, never mangled: what the workflow cannot read stops it at start (or is
skipped with a warning naming it, where skipping is the rule), naming the file and what is
wrong; what it can count it counts."""

from __future__ import annotations

import copy
import shutil

import pytest
import yaml

from tests.support.tiny_model import build_tiny_model
from tests.support.workflow import REPO
from value_drifts.core.checkpoints import tokenizer_problem
from value_drifts.core.study import StudyError, data_file_problems, load_study
from value_drifts.core.traces import (
    TraceError,
    octal_key_problems,
    read_trace,
    trace_name_problem,
)

SPEC = {"prompt_style": "chat"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def checkpoint(tiny, folder):
    shutil.copytree(tiny, folder)
    return folder


@pytest.mark.parametrize("names", [("checkpoint-100", "checkpoint-0100"),
                                   ("checkpoint-7", "checkpoint-007", "checkpoint-07")])
def test_two_folders_for_one_step_stop_the_trace_naming_both(tiny, tmp_path, names):
    for name in names:
        checkpoint(tiny, tmp_path / "run" / name)
    with pytest.raises(TraceError, match="several folders for one step") as error:
        read_trace("mine", {**SPEC, "checkpoints": str(tmp_path / "run")})
    assert all(name in str(error.value) for name in names)


@pytest.mark.parametrize("keys", [(100, "0100"), ("7", "07"), (5, "5")])
def test_two_revision_keys_for_one_step_stop_the_trace(keys):
    spec = {**SPEC, "hub_id": "org/model", "revisions": {k: f"rev{i}" for i, k in enumerate(keys)}}
    with pytest.raises(TraceError, match="several keys for one step"):
        read_trace("hub", spec)


def test_distinct_revision_keys_are_read_as_their_steps():
    spec = {**SPEC, "hub_id": "org/model", "revisions": {0: "main", "100": "step100", 250: "a"}}
    assert read_trace("hub", spec).revisions == {0: "main", 100: "step100", 250: "a"}


def test_a_revision_key_yaml_reads_as_another_number_is_named():
    text = """
traces:
  hub:
    hub_id: org/model
    prompt_style: base
    revisions:
      0: main
      0100: step100
      '0200': step200
      0x10: step16
      300: step300
"""
    problems = octal_key_problems(text)
    assert len(problems) == 2
    assert "key 0100 is read by YAML as 64" in problems[0]
    assert "key 0x10 is read by YAML as 16" in problems[1]
    assert octal_key_problems("traces: {hub: {revisions: {0: a, 100: b}}}") == []
    assert octal_key_problems("seed: 0") == []


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_a_cut_tokenizer_is_skipped_naming_the_file(tiny, tmp_path, damage):
    good = checkpoint(tiny, tmp_path / "run" / "checkpoint-1")
    bad = checkpoint(tiny, tmp_path / "run" / "checkpoint-2")
    text = (bad / "tokenizer.json").read_bytes()
    (bad / "tokenizer.json").write_bytes(text[: len(text) // 2] if damage == "truncate" else b"")
    assert tokenizer_problem(good) is None
    assert "tokenizer.json is empty or cut short" in tokenizer_problem(bad)
    series = read_trace("mine", {**SPEC, "checkpoints": str(tmp_path / "run")})
    assert series.steps == (1,)
    assert "tokenizer.json" in series.skipped[str(bad)]


def test_loading_a_cut_tokenizer_names_the_file(tiny, tmp_path):
    from value_drifts.generation.sampling import load_tokenizer

    bad = checkpoint(tiny, tmp_path / "checkpoint-3")
    config = bad / "tokenizer_config.json"
    config.write_text(config.read_text()[:-40] + "}")  # ends with } but does not parse
    with pytest.raises(ValueError, match="tokenizer_config.json is not readable JSON"):
        load_tokenizer(str(bad))


@pytest.mark.parametrize("name", ["../../x", "Mine", "a/b", "-x", ""])
def test_a_trace_name_that_is_no_path_is_refused(name):
    assert trace_name_problem(name) is not None


def test_the_trace_command_refuses_a_bad_name_before_making_anything(tiny, tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    checkpoint(tiny, run / "checkpoint-1")
    result = subprocess.run(
        [sys.executable, "-m", "value_drifts.commands.main", "trace", str(run),
         "--name", "../../escape", "--dry-run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "--name: trace name '../../escape'" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing made
    assert not (tmp_path.parent / "escape").exists()


@pytest.fixture
def small():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_an_empty_or_missing_local_data_file_stops_the_study_at_start(small, tmp_path, content):
    empty = tmp_path / "mine.jsonl"
    empty.write_bytes(content)
    config = copy.deepcopy(small)
    config["sft_datasets"]["mine"] = {"source": "hub", "hub_id": "json",
                                      "data_files": str(empty), "format": "messages", "size": 4,
                                      "save_steps": 2}
    config["preference_sets"]["prefs"] = {
        "source": "hub", "hub_id": "json", "data_files": {"train": [str(tmp_path / "gone.jsonl")]},
        "format": "preference", "size": 4}
    assert data_file_problems(config) == [
        f"sft_datasets.mine.data_files: {empty} is empty (no rows)",
        f"preference_sets.prefs.data_files: no file {tmp_path / 'gone.jsonl'}",
    ]
    with pytest.raises(StudyError, match="is empty"):
        load_study(config)


def test_an_empty_data_file_read_directly_names_it(tmp_path):
    from value_drifts.data.datasets import load_hub

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.jsonl.*no rows"):
        load_hub({"hub_id": "json", "data_files": str(empty)})


@pytest.mark.parametrize("po", [{"grid": []}, None])
def test_an_sft_only_study_needs_no_preference_optimisation(small, po):
    config = copy.deepcopy(small)
    if po is None:
        config.pop("preference_optimization")
    else:
        config["preference_optimization"] = {**config["preference_optimization"], **po}
    study = load_study(config)
    assert [p.run for p in study.plan.phases] == ["sft-opinionated", "sft-taskish"]
