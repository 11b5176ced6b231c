"""The backend registry is the one list of backends: the schema accepts exactly its names
and aliases per role, an alias is recorded as the name it stands for, and the envs, API
flags and study backends are read from it."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.support.workflow import REPO
from value_drifts.core.backends import (
    API_BACKENDS,
    BACKEND_ENVS,
    REGISTRY,
    ROLE_NAMES,
    accepted_names,
    canonical_name,
)
from value_drifts.core.study import ROLES, load_study

SCHEMA = yaml.safe_load((REPO / "config/schema/config.schema.yaml").read_text())
# Where each role's backend enum sits in the schema.
SCHEMA_PATHS = {
    "generation": ("generation",),
    "judge": ("judge",),
    "downstream": ("downstream",),
    "teacher": ("value_gap", "teacher"),
    "vprism_llm": ("vprism", "llm"),
}


def schema_enum(path: tuple[str, ...]) -> list[str]:
    node = SCHEMA
    for key in path:
        node = node["properties"][key]
    return node["properties"]["backend"]["enum"]


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_the_schema_accepts_exactly_the_registry_names_of_each_role(role):
    assert sorted(schema_enum(SCHEMA_PATHS[role])) == sorted(accepted_names(role))


def test_the_study_roles_are_the_registry_roles():
    assert set(ROLES) == set(ROLE_NAMES) == {r for kind in REGISTRY for r in kind.roles}


def test_an_alias_means_its_backend_only_in_its_roles():
    assert canonical_name("downstream", "transformers") == "hf"
    assert canonical_name("generation", "transformers") == "transformers"
    assert canonical_name("teacher", "openai") == "openai_chat"
    assert canonical_name("judge", "openai") == "openai"
    with pytest.raises(ValueError, match="generation: unknown backend 'hf'"):
        canonical_name("generation", "hf")
    with pytest.raises(ValueError, match="one of openai, openai_batch|one of transformers"):
        canonical_name("judge", "openai_chat")


def test_no_alias_is_another_backends_name_in_the_same_role():
    for role in ROLE_NAMES:
        names = accepted_names(role)
        assert len(names) == len(set(names)), (role, names)


def test_derived_views():
    assert BACKEND_ENVS["hf"] == BACKEND_ENVS["transformers"] == "transformers"
    assert set(API_BACKENDS) == {"openai", "openai_batch", "openai_chat"}


def test_a_config_written_with_aliases_records_the_names(small_config):
    aliased = copy.deepcopy(small_config)
    aliased["downstream"]["backend"] = "transformers"
    aliased["vprism"]["llm"] = {**aliased["vprism"]["llm"], "backend": "openai",
                                "model": "gpt-4o", "base_url": "http://localhost:1/v1"}
    plain = copy.deepcopy(aliased)
    plain["downstream"]["backend"] = "hf"
    plain["vprism"]["llm"]["backend"] = "openai_chat"
    study, reference = load_study(aliased), load_study(plain)
    assert study.config == reference.config
    assert study.config["downstream"]["backend"] == "hf"
    assert study.config["vprism"]["llm"]["backend"] == "openai_chat"
    assert study.backends["downstream"].env == "transformers"
    assert study.backends["vprism_llm"].is_api and study.backends["vprism_llm"].env == "api"
    assert aliased["downstream"]["backend"] == "transformers"  # the config given is not changed
