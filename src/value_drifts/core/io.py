"""Small I/O helpers shared by the workflow scripts."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl


@contextmanager
def logged(path: str | Path) -> Iterator[None]:
    """Send stdout, stderr (progress bars included) and any traceback to a log file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as log, redirect_stdout(log), redirect_stderr(log):
        try:
            yield
        except BaseException:
            traceback.print_exc(file=log)
            raise
    sys.stdout.flush()


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically: a crash leaves the old file or none, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


_READ_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def recorded_value(table: pl.DataFrame, column: str, what: str):
    """The one value a table records in every row of ``column`` (how it was made: judge
    fingerprint, generation settings digest, weight shards); None when the column is
    absent or empty. Raises ValueError naming ``what`` when the table holds several."""
    if column not in table.columns:
        return None
    values = table[column].unique().drop_nulls().to_list()
    if len(values) > 1:
        raise ValueError(f"one table holds several {what}: {sorted(values)}")
    return values[0] if values else None
