"""Load and check a workflow config: JSON-schema shape first, then cross-references."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that cannot describe a run; the message names the key and what was expected."""


def _key_path(path) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


def validate_config(config: Mapping[str, Any], schema_path: Path = SCHEMA_PATH) -> None:
    """Raise ConfigError listing every schema violation and every dangling reference."""
    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = [
        f"{_key_path(error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    ]
    if not problems:
        problems = _reference_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _reference_problems(config: Mapping[str, Any]) -> list[str]:
    """Names used in one section must exist in the section that defines them."""
    problems: list[str] = []
    models = set(config["models"])
    sft_sets = set(config["sft_datasets"])

    def check(key: str, value: str, known: set[str], what: str) -> None:
        if value not in known:
            problems.append(f"{key}: {what} {value!r} does not exist (known: {sorted(known)})")

    for i, run in enumerate(config["sft"].get("runs", [])):
        check(f"sft.runs.{i}.model", run["model"], models, "model")
        check(f"sft.runs.{i}.dataset", run["dataset"], sft_sets, "SFT dataset")
    po = config.get("preference_optimization")
    if po:
        pref_sets = set(config.get("preference_sets", {}))
        grids = po["grid"] if isinstance(po["grid"], list) else [po["grid"]]
        for i, grid in enumerate(grids):
            key = "preference_optimization.grid" + (f".{i}" if isinstance(po["grid"], list) else "")
            for m in grid["models"]:
                check(f"{key}.models", m, models, "model")
            for d in grid["sft_datasets"]:
                check(f"{key}.sft_datasets", d, sft_sets, "SFT dataset")
            for a in grid["algorithms"]:
                check(f"{key}.algorithms", a, set(po["algorithms"]), "algorithm")
            for p in grid["preference_sets"]:
                check(f"{key}.preference_sets", p, pref_sets, "preference set")
        for i, ab in enumerate(po.get("ablations", [])):
            key = f"preference_optimization.ablations.{i}"
            check(f"{key}.model", ab["model"], models, "model")
            check(f"{key}.sft_dataset", ab["sft_dataset"], sft_sets, "SFT dataset")
            check(f"{key}.algorithm", ab["algorithm"], set(po["algorithms"]), "algorithm")
            check(f"{key}.preference_set", ab["preference_set"], pref_sets, "preference set")
    judge = config["judge"]
    if judge["model"] == "adapted":
        if "adapt" not in judge or "base_model" not in judge:
            problems.append("judge: model 'adapted' needs judge.adapt and judge.base_model")
        else:
            check("judge.base_model", judge["base_model"], models, "model")
    for name, dataset in config["sft_datasets"].items():
        for category, mix in dataset.get("stance_mix", {}).items():
            if abs(sum(mix.values()) - 1) > 1e-6:
                problems.append(
                    f"sft_datasets.{name}.stance_mix.{category}: shares sum to "
                    f"{sum(mix.values())}, expected 1"
                )
    return problems


def load_config(path: str | Path) -> dict[str, Any]:
    config = yaml.safe_load(Path(path).read_text())
    validate_config(config)
    return config
