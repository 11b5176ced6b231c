"""A results tree copied without its file times is stopped, not rerun.

Snakemake reruns a job when an input is newer than its output (``rerun-triggers: mtime``);
for a small input it first compares the content with the checksum it recorded, but a
model folder or a large table has no checksum. ``cp -r`` (without ``-p``) gives every file
the time of the copy, in copy order, so a copied tree looks as if upstream files had
changed: Snakemake would retrain, regenerate and rejudge what is already there.

So the end of every run (Snakemake's ``onsuccess`` and ``onerror``) records each results
file's size and modification time in ``results/.file_times.json``, and the start of the
next refuses a tree in which most recorded files have their recorded size but another time
(``copied_tree_problem``): a copy, not new work. ``value-drifts restore-times`` gives the
files their recorded times back (``restore_times``), which makes the copy current; a copy
made with ``cp -a``, ``rsync -a`` or ``tar`` keeps them and needs nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from value_drifts.core.layout import RESULTS

MANIFEST = ".file_times.json"
# A copy changes every file's time; a run since the manifest changes the few it rewrote.
COPIED_SHARE = 0.5
MIN_FILES = 10
RESTORE_COMMAND = "value-drifts restore-times"


def _files(root: Path):
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            if name != MANIFEST and not path.is_symlink():
                yield path


def record_times(root: str | Path = RESULTS) -> int:
    """Write ``root``/.file_times.json: ``{relative path: [size, mtime_ns]}`` of every file
    under ``root`` (links left out). Returns the number of files."""
    root = Path(root)
    if not root.is_dir():
        return 0
    times = {}
    for path in _files(root):
        stat = path.stat()
        times[str(path.relative_to(root))] = [stat.st_size, stat.st_mtime_ns]
    temporary = root / f".{MANIFEST}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(times, sort_keys=True))
    os.replace(temporary, root / MANIFEST)
    return len(times)


def _moved(root: Path) -> tuple[dict[str, list[int]], list[str]]:
    """(the manifest, the recorded files present with their recorded size and another
    modification time)."""
    try:
        times = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}, []
    moved = []
    for name, (size, mtime_ns) in times.items():
        try:
            stat = (root / name).stat()
        except OSError:
            continue
        if stat.st_size == size and abs(stat.st_mtime_ns - mtime_ns) > 1_000_000_000:
            moved.append(name)
    return times, moved


def copied_tree_problem(root: str | Path = RESULTS) -> str | None:
    """Why the tree under ``root`` must not run as it is (None when it may): more than
    ``COPIED_SHARE`` of the files recorded at the end of the last run (at least
    ``MIN_FILES``) have their recorded size but another time."""
    root = Path(root)
    times, moved = _moved(root)
    if len(moved) < MIN_FILES or len(moved) <= COPIED_SHARE * len(times):
        return None
    return (
        f"{root}/ looks copied without its file times: {len(moved)} of the {len(times)} files "
        "recorded at the end of the last run have their size but another time (e.g. "
        f"{moved[0]}), so Snakemake would take them for new work and rerun what made them. "
        f"Run `{RESTORE_COMMAND}` here to give them back their times (copy with cp -a or "
        "rsync -a to keep them)."
    )


def restore_times(root: str | Path = RESULTS) -> int:
    """Give every recorded file of ``root`` that has its recorded size its recorded time
    back; returns how many were changed."""
    root = Path(root)
    times, moved = _moved(root)
    for name in moved:
        mtime_ns = times[name][1]
        os.utime(root / name, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
    return len(moved)
