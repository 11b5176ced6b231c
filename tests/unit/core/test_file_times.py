"""A results tree copied without its file times is told apart from one a run rewrote in
part, and its recorded times can be given back."""

from __future__ import annotations

import os
import shutil

from value_drifts.core.file_times import copied_tree_problem, record_times, restore_times


def _tree(root, n=30):
    for i in range(n):
        path = root / f"run{i % 3}" / f"step-{i}" / "table.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (i + 1))
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    return root


def test_a_copy_without_times_is_stopped_and_restored(tmp_path):
    tree = _tree(tmp_path / "results")
    assert record_times(tree) == 30 and copied_tree_problem(tree) is None
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy, copy_function=shutil.copyfile)  # cp -r: new times
    problem = copied_tree_problem(copy)
    assert "30 of the 30 files" in problem and "value-drifts restore-times" in problem
    assert restore_times(copy) == 30
    assert copied_tree_problem(copy) is None
    for path in tree.rglob("*.parquet"):
        assert (copy / path.relative_to(tree)).stat().st_mtime == path.stat().st_mtime


def test_a_copy_keeping_times_and_a_partial_rewrite_pass(tmp_path):
    tree = _tree(tmp_path / "results")
    record_times(tree)
    kept = tmp_path / "kept"
    shutil.copytree(tree, kept)  # cp -a: times kept
    assert copied_tree_problem(kept) is None
    for path in sorted(tree.rglob("*.parquet"))[:10]:  # a run rewrote a third of them
        os.utime(path, None)
    assert copied_tree_problem(tree) is None


def test_no_manifest_no_problem(tmp_path):
    tree = _tree(tmp_path / "results")
    assert copied_tree_problem(tree) is None and restore_times(tree) == 0
