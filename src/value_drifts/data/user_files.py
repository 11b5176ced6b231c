"""Reading a user's data file as it really comes: JSON, JSON Lines, CSV, parquet or a hub
dataset, record by record, with every problem named by file, line and what is wrong.

Shared by the command-line tools and the workflow's own-data loaders (``value-gap``, the
judge-agreement labelled set), so a file that one reads the other reads too.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from value_drifts.data.trl_format import describe


class UsageError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


@dataclass
class Table:
    """A data set as read: its columns, and its rows (dicts) with where each one is in the
    source (``line 7`` of a JSONL or CSV file, ``record 3`` of a JSON list, ``row 5``)."""

    name: str
    columns: list[str]
    rows: list[dict[str, Any]]
    places: list[str]


def read_table(source: str, split: str = "train", names: Sequence[str] = (),
               limit: int | None = None) -> Table:
    """A local file by its suffix, or a hub dataset (an id ``org/name`` that is no file).

    JSON, JSONL and CSV are read with the standard library's readers, row by row, so a
    column first present late in the file, a field that is a string in one row and a
    message list in the next, and a byte-order mark all read as they are (polars infers a
    schema from the first 100 rows and turns later lists into strings; ``datasets``' JSON
    builder fails on a column first present after its first 10 MB block). Parquet files
    and hub datasets are typed columns: only the columns in ``names`` are decoded.
    """
    path = Path(source)
    if path.exists():
        if path.is_dir():
            raise UsageError(f"{source} is a directory, not a data file")
        reader = READERS.get(path.suffix.lower())
        if reader is None:
            raise UsageError(f"{source}: unknown file type {path.suffix!r} "
                             f"(use one of {', '.join(READERS)})")
        if path.stat().st_size == 0:
            raise UsageError(f"{source} is empty")
        table = reader(path, names)
        table = replace(table, rows=table.rows[:limit or None],
                        places=table.places[:limit or None])
    elif is_hub_id(source):
        table = _read_hub(source, split, names, limit)
    else:
        raise UsageError(f"{source}: no such file")
    if not table.rows:
        raise UsageError(f"{source} has no rows")
    return table


def is_hub_id(source: str) -> bool:
    """Whether a name that is no local file is a hub dataset id: ``org/name`` as the hub
    allows it (dots included, ``org/name-2.5-data``) that does not end like a data file
    (a missing ``data/pairs.jsonl`` is a missing file)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if "/" not in source or Path(source).suffix.lower() in FILE_SUFFIXES:
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def _text(path: Path) -> str:
    """A file's text as UTF-8 (a leading byte-order mark dropped); bad bytes name their line."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UsageError(f"{path} is UTF-16 text (byte-order mark {data[:2].hex(' ')}); "
                         "save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:  # its object: the bytes after a byte-order mark
        line = error.object.count(b"\n", 0, error.start) + 1
        raise UsageError(f"{path}: line {line}: not UTF-8 text "
                         f"(byte {error.object[error.start]:#04x})") from None


def _read_json(path: Path, names: Sequence[str] = ()) -> Table:
    """A JSON list of objects (or one object), or JSON Lines (one object a line; blank
    lines skipped; a byte-order mark at a line's start, as in concatenated files, dropped)."""
    text = _text(path)
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            if not error.msg.startswith("Extra data"):  # else several values: JSON Lines
                cut = " (is the file cut short?)" if _ends_inside(error, text) else ""
                raise UsageError(f"{path}: line {error.lineno}, column {error.colno}: "
                                 f"not valid JSON ({_json_problem(error)}){cut}") from None
        else:
            records = document if isinstance(document, list) else [document]
            places = [f"record {i}" for i in range(1, len(records) + 1)]
            for place, record in zip(places, records, strict=True):
                if not isinstance(record, dict):
                    raise UsageError(f"{path}: {place} is {describe(record)}, not an object")
            return _table(path, records, places)
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records, places = [], []
    for index, line in enumerate(lines):
        line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            ended = index == last and _ends_inside(error, line)
            cut = " (the last line: is the file cut short?)" if ended else ""
            raise UsageError(f"{path}: line {index + 1}, column {error.colno}: not valid "
                             f"JSON ({_json_problem(error)}){cut}") from None
        if not isinstance(record, dict):
            raise UsageError(f"{path}: line {index + 1} is {describe(record)}, "
                             "not a JSON object")
        records.append(record)
        places.append(f"line {index + 1}")
    return _table(path, records, places)


def _json_problem(error: json.JSONDecodeError) -> str:
    return error.msg.removesuffix(" at")  # "Unterminated string starting at"


def _ends_inside(error: json.JSONDecodeError, text: str) -> bool:
    """Whether the JSON text ends inside a value (as a file cut short does)."""
    return error.msg.startswith("Unterminated") or error.pos >= len(text.rstrip())


def _read_csv(path: Path, names: Sequence[str] = ()) -> Table:
    """A CSV file with a header: every field a string (quoted newlines kept), blank lines
    skipped; a record whose field count differs from the header's is an error."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long responses
    reader = csv.reader(io.StringIO(_text(path), newline=""), strict=True)
    header, records, places, start = None, [], [], 1
    try:
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not fields:
                continue
            if header is None:
                header = fields
                repeated = sorted({name for name in header if header.count(name) > 1})
                if repeated:
                    raise UsageError(f"{path}: line {line}: repeated column name(s) {repeated}")
                continue
            if len(fields) != len(header):
                raise UsageError(f"{path}: line {line} has {len(fields)} fields, "
                                 f"the header has {len(header)}")
            records.append(dict(zip(header, fields, strict=True)))
            places.append(f"line {line}")
    except csv.Error as error:
        raise UsageError(f"{path}: line {start}: not valid CSV ({error})") from None
    return replace(_table(path, records, places), columns=header or [])


def _read_parquet(path: Path, names: Sequence[str] = ()) -> Table:
    """A parquet file's columns among ``names`` (the others are never decoded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        columns = pq.read_schema(path).names
        data = pq.read_table(path, columns=[n for n in names if n in columns])
    except (OSError, pa.ArrowException) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UsageError(f"cannot read {path}: {type(error).__name__}: {message}") from None
    return Table(path.stem, columns, data.to_pylist(),
                 [f"row {i}" for i in range(1, data.num_rows + 1)])


def _table(path: Path, records: list[dict[str, Any]], places: list[str]) -> Table:
    columns = list(dict.fromkeys(name for record in records for name in record))
    return Table(path.stem, columns, records, places)


READERS = {
    ".jsonl": _read_json,
    ".ndjson": _read_json,
    ".json": _read_json,
    ".parquet": _read_parquet,
    ".csv": _read_csv,
}
# Names ending so are files: a missing one is a missing file, never a hub id.
FILE_SUFFIXES = {*READERS, ".tsv", ".txt", ".arrow", ".gz", ".bz2", ".xz", ".zst", ".zip"}


def _read_hub(hub_id: str, split: str, names: Sequence[str], limit: int | None) -> Table:
    from value_drifts.data.datasets import load_hub

    try:
        dataset = load_hub({"hub_id": hub_id, "split": split})
    except Exception as error:  # the hub client raises many types; report one line
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UsageError(f"{hub_id}: no such file, nor a hub dataset (split {split!r}): "
                         f"{type(error).__name__}: {message}") from None
    columns = list(dataset.column_names)
    if limit:
        dataset = dataset.select(range(min(limit, len(dataset))))
    present = [n for n in names if n in columns]
    # to_list decodes the features (a datasets Json column gives each row's own value).
    rows = dataset.select_columns(present).to_list() if present else [{}] * len(dataset)
    return Table(hub_id, columns, rows, [f"row {i}" for i in range(1, len(rows) + 1)])
