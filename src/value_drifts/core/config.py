"""Load and check a workflow config: JSON-schema shape first, then cross-references;
the schema's ``default:`` values are the one place a config key's default is defined
(``with_defaults``, ``schema_default``)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from value_drifts.core.backends import backend_kind
from value_drifts.core.secrets import credential_problems, redact

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "config" / "schema" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that cannot describe a run; the message names the key and what was expected."""


def _key_path(path) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


@functools.cache
def _schema(schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    # libyaml's loader where PyYAML has it: 10x faster than the pure-Python one (0.12 s),
    # and every workflow start reads the schema
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(Path(schema_path).read_text(), Loader=loader)


def validate_config(config: Mapping[str, Any], schema_path: Path = SCHEMA_PATH) -> None:
    """Raise ConfigError listing every schema violation, every credential
    (``core.secrets.credential_problems``) and every dangling reference. No message echoes
    a credential: schema messages quote the values they reject, so they are redacted."""
    schema = _schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    problems = credential_problems(config) + [
        redact(f"{_key_path(error.absolute_path)}: {error.message}")
        for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    ]
    if not problems:
        problems = _reference_judge_problems(config.get("judge") or {}, schema)
    if not problems:
        problems = _reference_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


# judge.reference's own keys (not a judge section's), and the judge keys a reference judge
# cannot have: it neither has a reference of its own nor is adapted, audited or scored on
# the labelled set.
REFERENCE_OWN_KEYS = ("answers_per_checkpoint",)
NOT_FOR_A_REFERENCE = ("reference", "agreement", "adapt", "audit", "audit_answers",
                       "one_job_per_run")


def reference_judge(judge: Mapping[str, Any]) -> dict[str, Any] | None:
    """The reference judge of a ``judge`` section (``judge.reference``) as a judge section
    of its own, as ``judge.backends.make_backend`` takes one: its keys without
    ``REFERENCE_OWN_KEYS``, ``prompt`` defaulting to the main judge's and ``cache`` to the
    main judge's cache (one cache: its keys hold model identity and decoding settings, so
    two judges never share an entry). None when no reference judge is configured."""
    reference = judge.get("reference")
    if not reference:
        return None
    section = {k: copy.deepcopy(v) for k, v in reference.items() if k not in REFERENCE_OWN_KEYS}
    for key in ("prompt", "cache"):
        if key in judge:
            section.setdefault(key, judge[key])
    return section


def _reference_judge_problems(judge: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """A reference judge is checked against the judge section's own schema."""
    section = reference_judge(judge)
    if section is None:
        return []
    problems = [f"judge.reference.{key}: not a key of a reference judge"
                for key in NOT_FOR_A_REFERENCE if key in section]
    judge_schema = {"$defs": schema.get("$defs", {}), **schema["properties"]["judge"]}
    validator = jsonschema.Draft202012Validator(judge_schema)
    problems += [
        redact(f"{_key_path(['judge', 'reference', *error.absolute_path])}: {error.message}")
        for error in sorted(validator.iter_errors(section), key=lambda e: list(e.absolute_path))
    ]
    return problems


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
    if judge.get("one_job_per_run") and backend_kind(judge["backend"]).api:
        problems.append(
            f"judge.one_job_per_run: for local judges (vllm, transformers), not backend "
            f"{judge['backend']!r}: an API judge has no start-up to share")
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


def _filling_validator(schema: Mapping[str, Any]):
    """A validator that, while it checks an object's ``properties``, sets every absent one
    that has a ``default`` (the recipe of jsonschema's FAQ, "Why doesn't my schema's
    default property set the default on my instance?"). Defaults are copied, so a filled
    config never shares a list or mapping with the schema."""
    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties(validator, subschemas, instance, schema_):
        if isinstance(instance, dict):
            for name, subschema in subschemas.items():
                if isinstance(subschema, Mapping) and "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, subschemas, instance, schema_)

    return jsonschema.validators.extend(base, {"properties": properties})(schema)


def _filled(schema: Mapping[str, Any], instance: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``instance`` with ``schema``'s defaults filled in."""
    filled = copy.deepcopy(dict(instance))
    for _error in _filling_validator(schema).iter_errors(filled):
        pass  # shape errors are validate_config's to report
    return filled


def with_defaults(config: Mapping[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """A deep copy of ``config`` with the schema's defaults filled in: every key with a
    ``default:`` that is absent from an object the config has (a section the config
    leaves out stays out: its absence means the stage is off). Keys the config sets are
    kept as they are. Validate first (``validate_config``): defaults are filled only
    where the shape is right. Source: JSON Schema 2020-12 ``default`` (an annotation;
    filling it is this project's choice, as Snakemake's ``validate(set_default=True)``)."""
    return _filled(_schema(schema_path), config)


def without_added_defaults(filled: Any, raw: Any, keys: frozenset[str] | set[str]) -> Any:
    """``filled`` (a config with the schema's defaults filled in) without the ``keys``
    that ``raw`` (the same config as written) leaves out at the same place, at any depth:
    the config as it was filled before those keys got a schema default. For settings
    recorded then (``job_settings.record_settings``'s ``earlier_forms``)."""
    if isinstance(filled, Mapping):
        raw_map = raw if isinstance(raw, Mapping) else {}
        return {
            key: without_added_defaults(value, raw_map.get(key), keys)
            for key, value in filled.items()
            if key not in keys or key in raw_map
        }
    if isinstance(filled, list) and isinstance(raw, list) and len(raw) == len(filled):
        return [without_added_defaults(f, r, keys) for f, r in zip(filled, raw, strict=True)]
    return filled


def section_with_defaults(
    name: str, section: Mapping[str, Any], schema_path: Path = SCHEMA_PATH
) -> dict[str, Any]:
    """A copy of one top-level section (e.g. ``judge``) with the schema's defaults filled
    in, as ``with_defaults`` fills it in a whole config: for code handed a section alone."""
    schema = _schema(schema_path)
    return _filled({"$defs": schema.get("$defs", {}), **schema["properties"][name]}, section)


def schema_default(*path: str, schema_path: Path = SCHEMA_PATH) -> Any:
    """The ``default:`` the schema gives the key at ``path`` (section names, e.g.
    ``("judge", "min_label_mass")``; a name of a by-name mapping such as ``models`` is
    any string). For code that reads a section it was handed without the defaults
    filled (tests, other tools): it asks here instead of spelling the value again.
    Raises KeyError when the schema has no default there."""
    schema = _schema(schema_path)
    node: Mapping[str, Any] = schema
    for key in path:
        node = _resolve(schema, node)
        if key in node.get("properties", {}):
            node = node["properties"][key]
        elif isinstance(node.get("additionalProperties"), Mapping):
            node = node["additionalProperties"]  # ``key`` names an entry
        else:
            raise KeyError(f"no schema entry for {'.'.join(path)}")
    node = _resolve(schema, node)
    if "default" not in node:
        raise KeyError(f"the schema gives {'.'.join(path)} no default")
    return copy.deepcopy(node["default"])


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` with a local ``$ref`` (``#/$defs/...``) merged under its own keys."""
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = schema
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    merged = dict(_resolve(schema, target))
    merged["properties"] = {**merged.get("properties", {}), **node.get("properties", {})}
    merged.update({k: v for k, v in node.items() if k not in ("$ref", "properties")})
    return merged
