"""SFT loaders on small files in the hub datasets' schemas (tests/fixtures/), loaded through
``datasets.load_dataset`` with local data_files, so the real code path runs."""

import json

import polars as pl
import pytest

from tests.support.workflow import REPO, copy_repo, snakemake
from value_drifts.data.datasets import (
    conversation_problem,
    load_hub_sft_dataset,
    size_warnings,
    split_rows,
)

FIXTURES = REPO / "tests" / "fixtures"


def wildchat_spec(**extra):
    return {"hub_id": "json", "data_files": str(FIXTURES / "wildchat" / "train.jsonl"),
            "format": "wildchat", "language": "English", "validation_share": 0.1, "size": 100,
            **extra}


def alpaca_spec(**extra):
    return {"hub_id": "json", "data_files": str(FIXTURES / "alpaca" / "train.jsonl"),
            "format": "alpaca", "validation_share": 0.1, "size": 100, **extra}


def test_wildchat_english_rows_convert_and_rejects_are_counted_by_reason():
    train, validation, counts = load_hub_sft_dataset(wildchat_spec(), seed=0)
    assert counts["loaded"] == 19 and counts["other_language"] == 2
    assert counts["rejected"] == {
        "empty conversation": 1, "empty turn": 1, "missing field": 2,
        "no final assistant turn": 1, "non-alternating roles": 1, "wrong role": 1,
    }
    assert counts["valid"] == 10 and counts["train"] == 9 and counts["validation"] == 1
    rows = train + validation
    assert all(set(turn) == {"role", "content"} for row in rows for turn in row["messages"])
    texts = [row["messages"][0]["content"] for row in rows]
    assert "你好" not in texts and "Bonjour" not in texts
    multi = next(r for r in rows if r["messages"][0]["content"] == "Write a poem about rain.")
    assert [t["role"] for t in multi["messages"]] == ["user", "assistant", "user", "assistant"]


def test_alpaca_rows_join_instruction_and_input():
    train, validation, counts = load_hub_sft_dataset(alpaca_spec(), seed=0)
    assert counts["loaded"] == 11 and counts["valid"] == 8
    assert counts["rejected"] == {"empty turn": 2, "missing field": 1}
    assert (counts["train"], counts["validation"]) == (7, 1)
    rows = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in train + validation}
    assert rows["Classify the sentiment.\n\nI love this!"] == "Positive."
    assert rows["Name a primary colour."] == "Red."


def test_split_is_seeded_disjoint_and_rounds_validation_up():
    rows = [{"i": i} for i in range(52_002)]
    train, validation = split_rows(rows, 0.1, seed=0)
    assert (len(train), len(validation)) == (46_801, 5_201)  # the paper's Alpaca split
    assert {r["i"] for r in train}.isdisjoint(r["i"] for r in validation)
    assert split_rows(rows, 0.1, seed=0) == (train, validation)
    assert split_rows(rows, 0.1, seed=1)[1] != validation
    train, validation = split_rows([{"i": i} for i in range(284_168)], 0.1, seed=0)
    assert (len(train), len(validation)) == (255_751, 28_417)  # the paper's WildChat split


def test_expected_sizes_warn_with_both_numbers(capsys):
    _, _, counts = load_hub_sft_dataset(
        alpaca_spec(expected_counts={"train": 46_801, "validation": 1}), seed=0
    )
    assert counts["size_check"] == "mismatch"
    assert counts["size_warnings"] == ["train: expected 46,801 (paper), found 7"]
    assert "expected 46,801 (paper), found 7" in capsys.readouterr().out
    _, _, counts = load_hub_sft_dataset(
        alpaca_spec(expected_counts={"train": 7, "validation": 1}), seed=0
    )
    assert counts["size_check"] == "ok" and "size_warnings" not in counts


def test_limit_samples_rows_and_skips_the_size_check():
    train, validation, counts = load_hub_sft_dataset(
        alpaca_spec(limit=5, expected_counts={"train": 46_801}), seed=0
    )
    assert counts["loaded"] == 11 and counts["limit"] == 5
    assert counts["valid"] + sum(counts["rejected"].values()) == 5
    assert counts["size_check"] == "skipped: limit configured" and "size_warnings" not in counts


def test_training_rows_are_downsampled_to_the_planned_size():
    train, validation, counts = load_hub_sft_dataset(wildchat_spec(size=4), seed=0)
    assert len(train) == 4 and counts["train"] == 4 and counts["train_before_downsample"] == 9
    assert len(validation) == 1


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([], "empty conversation"),
        ([{"role": "user", "content": "x"}, {"role": "assistant"}], "missing field"),
        ([{"role": "user", "content": "x"}, {"role": "gpt", "content": "y"}], "wrong role"),
        ([{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"},
          {"role": "assistant", "content": "z"}], "non-alternating roles"),
        ([{"role": "user", "content": "x"}, {"role": "system", "content": "s"},
          {"role": "assistant", "content": "z"}], "non-alternating roles"),
        ([{"role": "system", "content": "s"}], "no final assistant turn"),
        ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "\n"}], "empty turn"),
        ([{"role": "system", "content": "s"}, {"role": "user", "content": "x"},
          {"role": "assistant", "content": "y"}], None),
    ],
)
def test_conversation_problem(messages, reason):
    assert conversation_problem(messages) == reason


def test_size_warnings_lists_only_mismatches():
    assert size_warnings({"train": 5, "validation": 1}, {"train": 5, "validation": 2}) == [
        "validation: expected 2 (paper), found 1"
    ]


def test_prepare_sft_dataset_rule_writes_train_validation_and_counts(tmp_path):
    """The rule on a hub-format dataset (the Alpaca fixture through data_files)."""
    workdir = copy_repo(tmp_path / "repo")
    config = workdir / "config" / "config.yaml"
    text = config.read_text().replace(
        "sft_datasets:\n",
        "sft_datasets:\n"
        "  alpaca_fixture:\n"
        "    source: hub\n"
        "    format: alpaca\n"
        "    hub_id: json\n"
        f"    data_files: {FIXTURES / 'alpaca' / 'train.jsonl'}\n"
        "    size: 6\n"
        "    save_steps: 2\n"
        "    expected_counts: {train: 46801, validation: 5201}\n",
        1,
    )
    config.write_text(text)
    target = "results/data/sft/alpaca_fixture/train.parquet"
    snakemake("--cores", "1", target, cwd=workdir)
    out = workdir / "results" / "data" / "sft" / "alpaca_fixture"
    counts = json.loads((out / "counts.json").read_text())
    assert counts["train"] == 6 and counts["train_before_downsample"] == 7
    assert counts["size_warnings"] == [
        "train: expected 46,801 (paper), found 7", "validation: expected 5,201 (paper), found 1"
    ]
    assert pl.read_parquet(out / "train.parquet").height == 6
    assert pl.read_parquet(out / "validation.parquet").height == 1
    log = (workdir / "logs" / "data" / "prepare_sft_dataset_alpaca_fixture.log").read_text()
    assert "expected 46,801 (paper), found 7" in log


def test_preference_sets_check_expected_sizes_and_honour_a_limit(tmp_path):
    from value_drifts.data.preference_pairs import load_hub_preference_set

    rows = [{"chosen": f"\n\nHuman: Q{i}?\n\nAssistant: Good {i}.",
             "rejected": f"\n\nHuman: Q{i}?\n\nAssistant: Bad {i}."} for i in range(10)]
    rows.append({"chosen": "no tags", "rejected": "no tags either"})
    data = tmp_path / "hh.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"hub_id": "json", "data_files": str(data), "format": "hh_rlhf", "size": 8,
            "expected_counts": {"valid": 60_908, "train": 8}}
    pairs, counts = load_hub_preference_set(spec, seed=0)
    assert (counts["loaded"], counts["valid"], counts["train"]) == (11, 10, 8)
    assert counts["size_warnings"] == ["valid: expected 60,908 (paper), found 10"]
    pairs, counts = load_hub_preference_set({**spec, "limit": 4}, seed=0)
    assert counts["loaded"] == 4 and counts["train"] == len(pairs) <= 4
    assert counts["size_check"] == "skipped: limit configured"
