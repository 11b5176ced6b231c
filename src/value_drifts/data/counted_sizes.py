"""Sizes the workflow counts: a data set read from the user's own local files may leave
``size`` out, and the workflow counts its training rows (SFT) or pairs (preferences)
before planning, by running the same preparation the data rule runs (so the count is
exactly what the rule will find: rows rejected by the validation and the validation split
are left out).

The plan's checkpoint steps depend on the size, and Snakemake parses the workflow again
in every job, so a count is kept in ``layout.COUNTED_SIZES`` under a digest of what it
depends on: the data set's spec, the seed and the files' sha256 (content, never times).
An edited file is counted again; an unchanged one is read once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from value_drifts.core.io import file_sha256
from value_drifts.core.layout import COUNTED_SIZES
from value_drifts.core.study import local_data_files

SECTIONS = ("sft_datasets", "preference_sets")


def needs_count(spec: Mapping[str, Any]) -> bool:
    """A data set whose size the workflow counts: local files, no ``size``."""
    return "size" not in spec and bool(local_data_files(spec))


def count_key(section: str, spec: Mapping[str, Any], seed: int) -> str:
    """What a count depends on, as one digest: the spec, the seed, each file's sha256."""
    files = {path: file_sha256(path) for path in local_data_files(spec)}
    text = json.dumps({"section": section, "spec": spec, "seed": seed, "files": files},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def count_rows(section: str, spec: Mapping[str, Any], seed: int) -> int:
    """Training rows (SFT: after validation and the validation split) or pairs
    (preferences: after validation) the data rule will prepare from ``spec``."""
    if section == "sft_datasets":
        from value_drifts.data.datasets import load_hub_sft_dataset

        return load_hub_sft_dataset(spec, seed)[2]["train"]
    from value_drifts.data.preference_pairs import load_hub_preference_set

    return load_hub_preference_set(spec, seed)[1]["train"]


def counted_sizes(config: Mapping[str, Any], memo: str | Path = COUNTED_SIZES
                  ) -> dict[tuple[str, str], int]:
    """``{(section, name): size}`` for every data set that leaves its size to be counted
    (``needs_count``), from the memo where its files are unchanged, else counted now.

    Raises ValueError naming the data set when its files hold no usable row."""
    wanted = [(section, name, spec) for section in SECTIONS
              for name, spec in (config.get(section) or {}).items() if needs_count(spec)]
    if not wanted:
        return {}
    memo = Path(memo)
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    sizes, changed = {}, False
    for section, name, spec in wanted:
        key = count_key(section, spec, config.get("seed", 0))
        if key not in known:
            print(f"counting the rows of {section}.{name} (size left out) ...", flush=True)
            known[key] = count_rows(section, spec, config.get("seed", 0))
            changed = True
        if known[key] < 1:
            raise ValueError(f"{section}.{name}: its data files "
                             f"{', '.join(local_data_files(spec))} hold no usable row")
        sizes[(section, name)] = int(known[key])
    if changed:
        memo.parent.mkdir(parents=True, exist_ok=True)
        temporary = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
        os.replace(temporary, memo)
    return sizes
