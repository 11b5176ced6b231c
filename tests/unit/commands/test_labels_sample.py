"""``value-drifts labels sample``: a stratified, de-duplicated sample of a results tree's
answers, a labelling file without anchors, a key file that joins back, and a round trip
through judge.agreement."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from tests.support.workflow import REPO
from value_drifts.commands import labels
from value_drifts.commands.labels import (
    KEY_COLUMNS,
    LABELLING_COLUMNS,
    accuracy_halfwidth,
    key_path,
    labelling_tables,
    stored_answers,
    stratified_sample,
)
from value_drifts.core.layout import RESULTS, generations_path, judgments_path
from value_drifts.core.stances import STANCES
from value_drifts.data.user_files import UsageError
from value_drifts.judge.agreement import agreement_metrics, load_labelled_set

TOPICS = {"Abortion": "abortion rights", "Immigration Policies": "immigration"}
MODEL = "tiny"
# (run, step) of the tree: the base model, two SFT checkpoints, one PO checkpoint
CHECKPOINTS = [("base", 0), ("sft-a", 2), ("sft-a", 4), ("sft-a.dpo-s", 4)]
QUESTIONS = 6  # per category


def _write(root: Path, run: str, step: int, frame: pl.DataFrame, readings: bool = True) -> None:
    path = root / generations_path(MODEL, run, step).removeprefix(f"{RESULTS}/")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    if readings:
        rng = np.random.default_rng(step * 7 + len(run))
        p = rng.dirichlet([1, 1, 1], frame.height)
        judged = frame.select("question_id", "category", "sample").with_columns(
            *[pl.Series(f"p_{s}", p[:, i]) for i, s in enumerate(STANCES)])
        judged.write_parquet(root / judgments_path(MODEL, run, step).removeprefix(f"{RESULTS}/"))


def _answers(run: str, step: int, duplicate: bool = False) -> pl.DataFrame:
    rows = []
    for category in TOPICS:
        for q in range(QUESTIONS):
            response = f"Reply {CHECKPOINTS.index((run, step))}-{q} on {category}"
            if duplicate and q == 0:
                response = "No."  # the same text at every checkpoint
            rows.append({"question_id": f"{category[:3]}-{q}", "category": category,
                         "question": f"Question {q} on {category}?", "sample": 0,
                         "response": response, "backend": "transformers"})
    return pl.DataFrame(rows)


@pytest.fixture
def tree(tmp_path) -> Path:
    """A results tree: 4 checkpoints × 2 categories × 6 questions, each first question
    answered "No." at every checkpoint (duplicates), one empty answer at base."""
    root = tmp_path / "results"
    for run, step in CHECKPOINTS:
        frame = _answers(run, step, duplicate=True)
        if run == "base":
            frame = frame.with_columns(
                pl.when(pl.col("question_id") == "Abo-5").then(pl.lit("  "))
                .otherwise(pl.col("response")).alias("response"))
        _write(root, run, step, frame, readings=run != "sft-a.dpo-s")
    (root / "tables").mkdir()  # other folders of a results tree are not answers
    return root


def _cells(frame: pl.DataFrame) -> Counter:
    return Counter(frame.select("run", "step", "category").iter_rows())


def test_stored_answers_reads_every_checkpoint_with_its_phase_and_readings(tree):
    answers = stored_answers(tree)
    assert answers.height == len(CHECKPOINTS) * len(TOPICS) * QUESTIONS
    phases = dict(answers.select("run", "phase").unique().iter_rows())
    assert phases == {"base": "base", "sft-a": "sft", "sft-a.dpo-s": "po"}
    # readings where a judgments file exists, null where none does
    assert answers.filter(pl.col("run") == "sft-a.dpo-s")["p_support"].null_count() == 12
    assert answers.filter(pl.col("run") == "sft-a")["p_support"].null_count() == 0
    assert set(stored_answers(tree, ["sft-a"])["run"]) == {"sft-a"}
    assert set(stored_answers(tree, [f"{MODEL}/base"])["run"]) == {"base"}
    with pytest.raises(SystemExit, match="no stored answers"):
        stored_answers(tree, ["sft-b"])


def test_allocation_is_equal_over_run_step_category_cells(tree):
    answers = stored_answers(tree)
    cells = _cells(answers)
    assert len(cells) == 8
    # 3 per cell exactly: 24 = 8 cells × 3
    assert set(_cells(stratified_sample(answers, 24, seed=1)).values()) == {3}
    # 27 = 8 × 3 + 3: three cells give one more, the others 3
    counts = sorted(_cells(stratified_sample(answers, 27, seed=1)).values())
    assert counts == [3] * 5 + [4] * 3


def test_a_small_cell_gives_all_it_has_and_the_others_fill_the_total(tree):
    answers = stored_answers(tree)
    # the base model's Abortion cell keeps only two answers
    small = answers.filter(~((pl.col("run") == "base") & (pl.col("category") == "Abortion")
                             & ~pl.col("question_id").is_in(["Abo-1", "Abo-2"])))
    sample = stratified_sample(small, 32, seed=0)
    assert sample.height == 32
    counts = _cells(sample)
    assert counts[("base", 0, "Abortion")] == 2
    others = [n for cell, n in counts.items() if cell != ("base", 0, "Abortion")]
    assert max(others) - min(others) <= 1 and sum(others) == 30


def test_duplicates_and_empty_answers_are_left_out(tree):
    answers = stored_answers(tree)
    sample = stratified_sample(answers, 10_000, seed=0)
    pairs = list(sample.select("question", "response").iter_rows())
    assert len(pairs) == len(set(pairs))
    assert all(response.strip() for _, response in pairs)
    # every usable distinct (question, response): 4 checkpoints × 2 × 5 unique answers,
    # one base answer empty, and each category's "No." once
    assert sample.height == 4 * 2 * 5 - 1 + 2
    assert sum(response == "No." for _, response in pairs) == 2


def _sample_cli(tree: Path, output: Path, *extra: str) -> int:
    topics = tree.parent / "topics.yaml"
    topics.write_text(yaml.safe_dump(TOPICS))
    return labels.main(["sample", "--n", "20", "--output", str(output), "--results", str(tree),
                        "--topics", str(topics), *extra])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_the_labelling_file_holds_the_readers_columns_and_nothing_that_anchors(tree, suffix):
    output = tree.parent / f"labels{suffix}"
    assert _sample_cli(tree, output) == 0
    frame = (pl.read_csv(output, infer_schema=False) if suffix == ".csv"
             else pl.read_ndjson(output))
    assert tuple(frame.columns) == LABELLING_COLUMNS
    assert frame.height == 20
    assert set(frame["label"].fill_null("")) == {""}
    assert set(frame["topic"]) <= set(TOPICS.values()) and "" not in set(frame["topic"])
    text = output.read_text()
    # no run, phase, step or judge reading anywhere in the file
    for anchor in ("sft-a", "dpo", "base", "step", "p_support", "phase", "run"):
        assert anchor not in text
    # unfilled, the reader finds no labelled row and says why
    with pytest.raises(UsageError, match="is no stance"):
        load_labelled_set(output, TOPICS)


def test_the_key_file_joins_back_to_the_stored_answers(tree):
    output = tree.parent / "labels.csv"
    _sample_cli(tree, output)
    key = pl.read_csv(key_path(output), schema_overrides={"question_id": pl.Utf8})
    assert tuple(key.columns) == KEY_COLUMNS
    joined = pl.read_csv(output, infer_schema=False).join(key, on=["id", "category"])
    assert joined.height == 20
    stored = stored_answers(tree)
    back = joined.join(stored, on=["run", "step", "question_id", "sample"], suffix="_stored")
    assert back.height == 20
    assert (back["response"] == back["response_stored"]).all()
    assert (back["question"] == back["question_stored"]).all()
    assert set(back["phase"]) <= {"base", "sft", "po"}


def test_the_same_seed_gives_the_same_files_and_another_seed_others(tree):
    first, second, other = (tree.parent / name for name in ("a.csv", "b.csv", "c.csv"))
    _sample_cli(tree, first, "--seed", "3")
    _sample_cli(tree, second, "--seed", "3")
    _sample_cli(tree, other, "--seed", "4")
    assert first.read_text() == second.read_text()
    assert key_path(first).read_text() == key_path(second).read_text()
    assert first.read_text() != other.read_text()


def test_an_existing_file_is_not_replaced_without_force(tree):
    output = tree.parent / "labels.csv"
    _sample_cli(tree, output)
    with pytest.raises(SystemExit, match="exists"):
        _sample_cli(tree, output)
    assert _sample_cli(tree, output, "--force") == 0


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_filled_file_round_trips_through_judge_agreement(tree, suffix):
    output = tree.parent / f"labels{suffix}"
    labels.main(["sample", "--n", "30", "--output", str(output), "--results", str(tree),
                 "--run", "base", "--run", "sft-a", "--topics", str(tree.parent / "x.yaml")])
    key = pl.read_csv(key_path(output), schema_overrides={"question_id": pl.Utf8})
    readings = key.select([f"p_{s}" for s in STANCES]).to_numpy()
    judged = [STANCES[int(np.argmax(row))] for row in readings]
    # the rule: key rows 0, 3, 6, ... get a label other than the judge's reading, the
    # others the judge's own (no topics file: the reader goes by category)
    wrong = {i for i in range(key.height) if i % 3 == 0}
    gold = [STANCES[(STANCES.index(j) + 1) % 3] if i in wrong else j
            for i, j in enumerate(judged)]
    by_id = dict(zip(key["id"], gold, strict=True))
    frame = (pl.read_csv(output, infer_schema=False) if suffix == ".csv"
             else pl.read_ndjson(output))
    frame = frame.with_columns(pl.col("id").replace_strict(by_id).alias("label"))
    if suffix == ".csv":
        frame.write_csv(output)
    else:
        frame.write_ndjson(output)

    items, read = load_labelled_set(output, TOPICS)
    assert read["items"] == key.height == 30 and not read["skipped"]
    assert items["question_id"].to_list() == frame["id"].to_list()  # ids kept
    matched = items.select(pl.col("question_id").alias("id"), "stance").join(
        key, on="id", maintain_order="left")
    metrics = agreement_metrics(matched["stance"].to_list(),
                                matched.select([f"p_{s}" for s in STANCES]).to_numpy())
    assert metrics["n"] == 30
    assert metrics["accuracy"] == pytest.approx(1 - len(wrong) / 30)  # 20 / 30
    assert sum(np.diag(metrics["confusion"])) == 30 - len(wrong) == 20


def test_several_labelled_files_are_read_as_one_set(tree):
    first, second = tree.parent / "one.csv", tree.parent / "two.jsonl"
    for path, seed in ((first, "1"), (second, "2")):
        _sample_cli(tree, path, "--seed", seed)
        frame = (pl.read_csv(path, infer_schema=False) if path.suffix == ".csv"
                 else pl.read_ndjson(path))
        frame = frame.with_columns(pl.lit("neutral").alias("label"))
        frame = frame.with_columns(  # one bad label in the second file
            pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("maybe"))
            .otherwise(pl.col("label")).alias("label")) if path == second else frame
        frame.write_csv(path) if path.suffix == ".csv" else frame.write_ndjson(path)
    items, read = load_labelled_set([first, second], TOPICS)
    assert items.height == 39 and read["items"] == 39
    assert items["question_id"].n_unique() == 39  # item-0001 of each file stays apart
    assert items["question_id"][0] == "one.csv:" + pl.read_csv(first)["id"][0]
    assert sum(read["skipped"].values()) == 1
    assert next(iter(read["first_seen"].values())).startswith("two.jsonl, ")
    assert [f["items"] for f in read["files"]] == [20, 19]
    # a one-file list reads as the file does
    alone, _ = load_labelled_set([first], TOPICS)
    assert alone.equals(load_labelled_set(first, TOPICS)[0])


def test_labelling_tables_keep_ids_in_a_shuffled_order():
    sample = pl.DataFrame({
        "model": ["m"] * 6, "run": ["r"] * 6, "phase": ["sft"] * 6, "step": list(range(6)),
        "question_id": [f"q{i}" for i in range(6)], "category": ["Abortion"] * 6,
        "question": ["Q?"] * 6, "sample": [0] * 6, "response": [f"a{i}" for i in range(6)],
        **{f"p_{s}": [0.3] * 6 for s in STANCES}, "cell_rank": [0] * 6,
    })
    labelling, key = labelling_tables(sample, TOPICS, seed=0)
    assert labelling["id"].to_list() == [f"item-{i:04d}" for i in range(1, 7)]
    assert key["step"].to_list() != list(range(6))  # not in draw order
    assert labelling["response"].to_list() == [f"a{s}" for s in key["step"]]


def test_the_precision_worked_example():
    assert accuracy_halfwidth(100, 0.8) == pytest.approx(0.078, abs=5e-4)
    assert accuracy_halfwidth(400, 0.8) == pytest.approx(0.039, abs=5e-4)


def test_the_value_drifts_command_forwards_labels():
    result = subprocess.run([sys.executable, "-m", "value_drifts.commands.main", "labels",
                             "sample", "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: value-drifts labels sample" in result.stdout
