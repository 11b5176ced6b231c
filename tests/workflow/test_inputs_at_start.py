"""What only the config file's text shows, and what the workflow can count, at start: a
revision key YAML reads as another number stops the run naming the key, and an SFT-only
study (an empty preference-optimisation grid) plans its jobs."""

from __future__ import annotations

import yaml

from tests.support.workflow import REPO, copy_repo, job_counts, snakemake

TRACE = """
traces:
  hub:
    hub_id: org/model
    prompt_style: base
    revisions:
      0: main
      0100: step100
"""


def test_an_octal_revision_key_stops_the_workflow_naming_it(tmp_path):
    config = (REPO / "config/config.yaml").read_text() + TRACE
    path = tmp_path / "octal.yaml"
    path.write_text(config)
    result = snakemake("-n", "--configfile", str(path), cwd=copy_repo(tmp_path / "repo"),
                       check=False)
    assert result.returncode != 0
    assert "traces.hub.revisions: key 0100 is read by YAML as 64" in result.stdout + result.stderr


def test_an_empty_grid_is_an_sft_only_study(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["preference_optimization"]["grid"] = []
    config["analysis"].pop("contrasts", None)  # they name PO runs
    path = tmp_path / "sft_only.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--forceall", "--configfile", str(path),
                       cwd=copy_repo(tmp_path / "repo"))
    counts = job_counts(result.stdout)
    assert counts["train_sft"] == 2 and "train_preference_optimisation" not in counts
    assert counts["generate"] == 5  # base, and SFT at steps 3 and 6 of each set


def test_editing_your_own_data_file_reruns_what_was_made_from_it(tmp_path):
    """A real run of the data rule on your own TRL messages file: unchanged it plans
    nothing; edited in place, the set is prepared again (and so is all that reads it)."""
    import shutil

    repo = copy_repo(tmp_path / "repo")
    data = tmp_path / "mine.jsonl"
    shutil.copy(REPO / "tests/fixtures/own_data/planted_death_penalty.jsonl", data)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["sft_datasets"]["mine"] = {"source": "hub", "hub_id": "json", "data_files": str(data),
                                      "format": "messages", "size": 14, "save_steps": 60}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(config))
    target = "results/data/sft/mine/train.parquet"
    snakemake(target, "--cores", "1", "--configfile", str(path), cwd=repo)
    unchanged = snakemake("-n", target, "--configfile", str(path), cwd=repo)
    assert job_counts(unchanged.stdout) == {}
    data.write_text(data.read_text().replace("worst crimes", "gravest crimes"))
    edited = snakemake("-n", target, "--configfile", str(path), cwd=repo)
    assert job_counts(edited.stdout) == {"prepare_sft_dataset": 1}
    assert f"input: {data}" in edited.stdout or str(data) in edited.stdout


def test_a_local_data_set_may_leave_its_size_to_be_counted(tmp_path):
    """An SFT set on your own local file without ``size``: the workflow counts the rows its
    data rule keeps (valid rows, less the validation split), plans the same checkpoints as
    with the count written in, prepares the set without a size error, and counts again
    only when the file's content changes (an invalid row added is rejected, not counted)."""
    import json
    import shutil

    repo = copy_repo(tmp_path / "repo")
    data = tmp_path / "mine.jsonl"
    shutil.copy(REPO / "tests/fixtures/own_data/planted_death_penalty.jsonl", data)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    spec = {"source": "hub", "hub_id": "json", "data_files": str(data),
            "format": "messages", "save_steps": 60}
    config["sft_datasets"]["mine"] = spec
    counted, written = tmp_path / "counted.yaml", tmp_path / "written.yaml"
    counted.write_text(yaml.safe_dump(config))
    config["sft_datasets"]["mine"] = {**spec, "size": 14}
    written.write_text(yaml.safe_dump(config))

    def plan(path):
        result = snakemake("-n", "--forceall", "--configfile", str(path), cwd=repo)
        return sorted(line for line in result.stdout.splitlines()
                      if "results/" in line and "mine" in line)

    assert plan(counted) == plan(written) != []
    memo = json.loads((repo / "results/.counted_sizes.json").read_text())
    assert list(memo.values()) == [14]
    target = "results/data/sft/mine/train.parquet"
    snakemake(target, "--cores", "1", "--configfile", str(counted), cwd=repo)
    counts = json.loads((repo / "results/data/sft/mine/counts.json").read_text())
    assert counts["train"] == 14 and counts["validation"] >= 1
    with data.open("a") as file:
        file.write(json.dumps({"messages": [{"role": "user", "content": "only a question"}]})
                   + "\n")
    plan(counted)
    memo = json.loads((repo / "results/.counted_sizes.json").read_text())
    assert sorted(memo.values()) == [14, 14]  # counted again; the invalid row is rejected


def test_only_local_data_sets_may_leave_their_size_out(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    del config["preference_sets"][next(iter(config["preference_sets"]))]["size"]
    name = next(iter(config["sft_datasets"]))
    del config["sft_datasets"][name]["size"]
    path = tmp_path / "no_size.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), cwd=copy_repo(tmp_path / "repo"),
                       check=False)
    assert result.returncode != 0
    assert f"sft_datasets.{name}: 'size' is a required property" in result.stdout + result.stderr
