"""The schema's ``default:`` values are the one place a config key's default is defined:
filled into the study's config, asked for by code handed a bare section, and never
spelled again as a fallback in the workflow; results recorded before the defaults were
filled in stay current."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest

from tests.support.workflow import REPO
from value_drifts.core.cluster_requests import ClusterSettings, ModelSize
from value_drifts.core.config import (
    _schema,
    schema_default,
    section_with_defaults,
    validate_config,
    with_defaults,
)
from value_drifts.core.job_settings import output_settings
from value_drifts.core.study import load_study
from value_drifts.judge.run import judge_fingerprint, judge_output_settings


def _defaults(node, path=(), under_branch=False):
    """(path, subschema, whether under a combinator branch) of every ``default`` in the
    schema."""
    if isinstance(node, dict):
        if "default" in node:
            yield path, node, under_branch
        for key, value in node.items():
            branch = under_branch or key in ("oneOf", "anyOf", "allOf", "if", "then", "else", "not")
            yield from _defaults(value, (*path, key), branch)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _defaults(value, (*path, i), under_branch)


def test_every_default_is_valid_for_its_key_and_outside_combinator_branches():
    schema = _schema()
    found = list(_defaults(schema))
    assert len(found) >= 40
    for path, node, under_branch in found:
        # a default in a oneOf/anyOf branch would be filled even where the branch fails
        assert not under_branch, path
        subschema = {"$defs": schema["$defs"], **{k: v for k, v in node.items() if k != "default"}}
        jsonschema.Draft202012Validator(subschema).validate(node["default"])


def test_defaults_fill_absent_keys_and_keep_what_the_config_sets(small_config):
    small_config["judge"].pop("min_label_mass", None)
    small_config["judge"]["max_unreadable_share"] = 0.2
    small_config.pop("cluster", None)
    small_config.pop("downstream", None)
    before = copy.deepcopy(small_config)
    filled = with_defaults(small_config)
    assert small_config == before  # a copy: the config handed in is not changed
    assert filled["judge"]["min_label_mass"] == 0.5
    assert filled["judge"]["max_unreadable_share"] == 0.2  # set: kept
    assert filled["judge"]["agreement"] == {"labelled": "resources/stance_agreement.yaml"}
    # a section with a default of its own is filled whole ...
    assert ClusterSettings(**filled["cluster"]) == ClusterSettings()
    assert filled["cluster"]["cpu_threads"] == 2 and filled["cluster"]["api_jobs_local"] is True
    # ... one without stays out: its absence turns a stage off
    assert "downstream" not in filled
    # entries of a by-name mapping each get their defaults
    for spec in filled["models"].values():
        assert "gpus" in spec and "params_b" in spec
    validate_config(filled)


def test_the_study_holds_the_filled_config_on_both_shipped_configs(small_config, paper_config):
    for config in (small_config, paper_config):
        study = load_study(config)
        assert study.config == with_defaults(config)
        assert study.config["analysis"]["bootstrap_resamples"] == config["analysis"].get(
            "bootstrap_resamples", 1000)
        assert study.config["generation"]["delete_checkpoint_weights"] == config[
            "generation"].get("delete_checkpoint_weights", False)


def test_a_bare_section_gets_the_same_defaults():
    judge = section_with_defaults("judge", {"backend": "vllm", "model": "m", "prompt": "p"})
    assert judge["top_logprobs"] == 20 and judge["seed"] == 0
    assert judge["tensor_parallel_size"] == 1 and judge["max_tokens"] == 1
    assert ModelSize.from_spec({}) == ModelSize(
        gpus=schema_default("models", "any-name", "gpus"),
        params_b=schema_default("models", "any-name", "params_b"))


def test_schema_default_names_what_it_cannot_find():
    assert schema_default("vprism", "ngrams", "ngram_range") == [1, 2]
    assert schema_default("vprism", "ngrams", "ngram_range") is not schema_default(
        "vprism", "ngrams", "ngram_range")  # a copy each time
    with pytest.raises(KeyError, match="judge.no_such_key"):
        schema_default("judge", "no_such_key")
    with pytest.raises(KeyError, match="no default"):
        schema_default("judge", "model")



def test_the_workflow_never_spells_a_schema_default_again():
    """Rules and workflow scripts read the filled config: a ``.get(key, fallback)`` of a
    key with a schema default would be a second definition that can drift apart."""
    keys = {path[-1] for path, _, _ in _defaults(_schema())}
    pattern = re.compile(r"""\.get\(\s*["'](\w+)["']\s*,""")
    found = []
    files = [*Path(REPO, "rules").glob("*.smk"), Path(REPO, "Snakefile"),
             *Path(REPO, "workflow_scripts").glob("*.py")]
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for key in pattern.findall(line):
                if key in keys:
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_judgments_recorded_before_the_defaults_keep_their_judge_id():
    raw = {"backend": "transformers", "model": "adapted", "prompt": "p", "base_model": "m"}
    template = "Topic: {topic}\n{question}\n{response}"
    before = judge_fingerprint(raw, template)["id"]
    filled = section_with_defaults("judge", raw)
    # filled defaults (seed, max_tokens, top_logprobs) change the id of the section alone ...
    assert judge_fingerprint(filled, template)["id"] != before
    # ... the judge job takes the settings as its settings file recorded them
    recorded = output_settings(judge_output_settings(raw))
    assert judge_fingerprint(filled, template, settings=recorded)["id"] == before


def _settings_files(root: Path) -> dict[str, tuple[bytes, float]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime)
            for p in sorted((root / "results" / "settings").rglob("*.json"))}


def _as_before_the_defaults(common: str, settings: str) -> tuple[str, str]:
    """rules/common.smk and rules/settings.smk as an earlier version ran them: settings
    recorded from the config as written, and rules reading that config."""
    assert "config.update(STUDY.config)\n" in common
    patched = settings.replace(
        "output_settings(settings_from(config)),",
        "output_settings(settings_from(RAW_CONFIG)),",
    )
    assert patched.count("RAW_CONFIG") > settings.count("RAW_CONFIG")
    return common.replace("config.update(STUDY.config)\n", ""), patched


def test_settings_recorded_before_the_defaults_stay_current(tmp_path):
    """A results tree whose settings files were written from the config as written
    (before the schema's defaults were filled in) keeps every file as it is: digest, bytes
    and time, so no job reruns. Without the earlier forms the same run would rewrite
    them (the control), so the test can fail."""
    from tests.support.workflow import copy_repo, snakemake

    work = copy_repo(tmp_path / "repo")
    common, settings = work / "rules" / "common.smk", work / "rules" / "settings.smk"
    current_common, current = common.read_text(), settings.read_text()
    earlier_common, earlier = _as_before_the_defaults(current_common, current)
    common.write_text(earlier_common)
    settings.write_text(earlier)
    snakemake("-n", "--nolock", "--quiet", cwd=work)
    for path in (work / "results" / "settings").rglob("*.json"):
        path.touch()  # a time of its own, so a rewrite shows
    before = _settings_files(work)
    assert len(before) >= 10

    common.write_text(current_common)
    settings.write_text(current)
    snakemake("-n", "--nolock", "--quiet", cwd=work)
    assert _settings_files(work) == before

    assert "            output_settings(settings_from(RAW_CONFIG)),\n" in current
    settings.write_text(current.replace(
        "            output_settings(settings_from(RAW_CONFIG)),\n", ""))
    snakemake("-n", "--nolock", "--quiet", cwd=work)
    after = _settings_files(work)
    changed = sorted(name for name in before if after.get(name) != before[name])
    # the small default leaves out keys the schema now fills: these files would be rewritten
    assert "results/settings/configuration.json" in changed
    assert "results/settings/judge.json" in changed


def test_settings_recorded_before_the_trainer_defaults_moved_into_the_schema_stay_current(
        tmp_path):
    """The trainer sections' optional keys (warmup_ratio, lr_scheduler, weight_decay,
    gradient_checkpointing, save_only_model, precision) take their defaults from the
    schema now. A tree whose settings were recorded before keeps every settings file as it
    is, the training ones included; without the earlier form (the control) the run's
    configuration file would be rewritten."""
    import yaml

    from tests.support.workflow import copy_repo, snakemake
    from value_drifts.training.common import TRAINER_DEFAULT_KEYS

    work = copy_repo(tmp_path / "repo")
    schema_path = work / "config" / "schema" / "config.schema.yaml"
    current_schema = schema_path.read_text()
    schema = yaml.safe_load(current_schema)
    trainer = schema["$defs"]["trainer"]["properties"]
    assert {key for key in TRAINER_DEFAULT_KEYS if "default" in trainer[key]} == set(
        TRAINER_DEFAULT_KEYS)
    # the code as it was: the trainer defaults in the dataclass, none in the schema
    common = work / "src" / "value_drifts" / "training" / "common.py"
    current_common = common.read_text()
    earlier_common = current_common
    for key in TRAINER_DEFAULT_KEYS:
        earlier_common = earlier_common.replace(
            f'schema_default("sft", "{key}")', repr(trainer[key].pop("default")))
    assert "schema_default(" not in earlier_common.split("class TrainerSettings")[1]
    common.write_text(earlier_common)
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    snakemake("-n", "--nolock", "--quiet", cwd=work)
    for path in (work / "results" / "settings").rglob("*.json"):
        path.touch()
    before = _settings_files(work)
    assert any("results/settings/training/" in name for name in before)

    schema_path.write_text(current_schema)
    common.write_text(current_common)
    snakemake("-n", "--nolock", "--quiet", cwd=work)
    assert _settings_files(work) == before

    settings = work / "rules" / "settings.smk"
    settings.write_text(settings.read_text().replace(
        "output_settings(settings_from(CONFIG_BEFORE_TRAINER_DEFAULTS)),", ""))
    snakemake("-n", "--nolock", "--quiet", cwd=work)
    after = _settings_files(work)
    changed = sorted(name for name in before if after.get(name) != before[name])
    # the run's whole configuration holds the trainer sections and other filled defaults:
    # it alone needs this form (the training files' sections had no other defaults, so
    # their form as written already matches)
    assert "results/settings/configuration.json" in changed, changed
