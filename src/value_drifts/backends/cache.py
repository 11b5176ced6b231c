"""A persistent, content-addressed cache of judge answers in one SQLite file.

The judge is where a run spends money, so every finished answer is stored the moment it
arrives and looked up by a hash of exactly what determines it (rendered prompt, judge
model, decoding parameters, backend kind). Editing a prompt therefore re-queries only the
prompts whose text changed, an interrupted run resumes where it stopped, and several jobs
can share one cache file: SQLite serialises their writes in transactions, so concurrent
writers never corrupt it and a crash loses at most the answer being written. The file
uses SQLite's rollback journal (``journal_mode=DELETE``), not WAL: WAL keeps its index in
shared memory, which does not work across the hosts of a network filesystem (NFS,
Lustre) where a cluster keeps ``results/`` (sqlite.org/wal.html, "WAL does not work over
a network filesystem"); the rollback journal relies on POSIX file locks only.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

# Bump when the meaning of a stored answer changes, so old rows are never reused silently.
KEY_SCHEMA_VERSION = 1
# Safe on network filesystems (see the module docstring); a WAL file from an older version
# is converted back the first time a connection opens it alone.
JOURNAL_MODE = "DELETE"
# SQLite's default limit on bound parameters is 32766; stay well below it per query.
_LOOKUP_CHUNK = 900
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    stored_at REAL NOT NULL
)
"""


def request_key(
    prompt: str, model: str, params: Mapping[str, Any], backend: str = "openai",
    endpoint: str | None = None,
) -> str:
    """sha256 over everything that determines a judge answer: the prompt, the model, the
    decoding parameters, the backend kind and, where one is set, the ``endpoint`` (the
    server's base URL: two servers may serve one model name and answer differently).

    The payload is canonical JSON (sorted keys, no whitespace), so the same request
    always hashes the same way, whatever order the parameters were given in. Without an
    endpoint (the provider's default) the payload has no endpoint field, so keys stored
    before endpoints were keyed stay valid.
    """
    payload = {
        "version": KEY_SCHEMA_VERSION,
        "backend": backend,
        "model": model,
        "params": _canonical(params),
        "prompt": prompt,
    }
    if endpoint is not None:
        payload["endpoint"] = endpoint.rstrip("/")
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(value: Any) -> Any:
    """Mappings to sorted dicts and sequences to lists, so tuples and lists hash alike."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class JudgeCache:
    """Judge answers by request key; values are JSON-serialisable dicts.

    One connection per thread and per process (a connection must not cross a fork or be
    used from two threads), opened lazily, so the object can be handed to worker threads
    and to child processes.
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection()  # create the schema now, so a bad path fails early

    def __repr__(self) -> str:
        return f"JudgeCache({str(self.path)!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "busy_timeout_s": self.busy_timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.busy_timeout_s = state["busy_timeout_s"]
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so every write is one
        # explicit transaction and nothing stays open between calls.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA journal_mode={JOURNAL_MODE}")
        # FULL: a committed answer survives power loss too; one fsync per answer is cheap
        # next to the network round trip that produced it.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(_SCHEMA)
        self._local.conn = conn
        self._local.pid = os.getpid()
        return conn

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored answers among ``keys``; keys never stored are simply absent."""
        unique = sorted(set(keys))
        conn = self._connection()
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(unique, _LOOKUP_CHUNK):
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT key, value FROM answers WHERE key IN ({marks})", chunk)
            found.update((key, json.loads(value)) for key, value in rows)
        return found

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        """Store one answer in its own transaction, so it is durable when this returns."""
        self.put_many([(key, value)])

    def put_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Store answers atomically: all of them or, if anything fails, none.

        The first answer stored under a key wins; a later one for the same request is
        ignored, so two jobs racing on one prompt leave one consistent value behind.
        """
        now = time.time()
        rows = [(key, json.dumps(dict(value), ensure_ascii=False), now) for key, value in items]
        if not rows:
            return
        conn = self._connection()
        # BEGIN IMMEDIATE takes the write lock up front; waiting writers use busy_timeout.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO answers (key, value, stored_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO NOTHING",
                rows,
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def __len__(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def integrity_ok(self) -> bool:
        """SQLite's own consistency check; for tests and for a health check after a crash."""
        return self._connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class RequestCounts:
    """What one run of requests did (a judge's ``batches`` call, a teacher call), for the
    step's counts JSON. For a local backend a "request" is one prompt sent through the model.
    """

    prompts: int = 0
    distinct_requests: int = 0
    cache_hits: int = 0
    requests_sent: int = 0
    answered: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, int]:
        """Flat int counts, to merge into the judge step's counts JSON."""
        flat = {
            "prompts": self.prompts,
            "distinct_requests": self.distinct_requests,
            "cache_hits": self.cache_hits,
            "requests_sent": self.requests_sent,
            "answered": self.answered,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "retries": sum(self.retries.values()),
            "failures": sum(self.failures.values()),
        }
        flat.update({f"retries_{reason}": n for reason, n in sorted(self.retries.items())})
        flat.update({f"failures_{reason}": n for reason, n in sorted(self.failures.items())})
        return flat
