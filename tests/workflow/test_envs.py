"""The conda environments in envs/: pinned like requirements.txt, declaring what their jobs
import, and named by every rule (value_drifts.core.envs). Fast and offline: `make check-envs`
runs pip's resolver on them against the package registry."""

from __future__ import annotations

import ast
import os
import re
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.workflow import REPO
from value_drifts.core import envs
from value_drifts.core.backends import BACKEND_ENVS, BACKEND_IMPORTS
from value_drifts.core.envs import (
    ENV_NAMES,
    MODULE_DISTRIBUTIONS,
    STAGE_ENVS,
    conda_env,
    env_name,
    normalise,
    project_dependencies,
    read_env,
    read_pins,
)

REQUIREMENTS = read_pins(REPO / "requirements.txt")
# Where envs/constraints-vllm.txt (so envs/vllm.yaml) differs from requirements.txt: vLLM
# 0.33.0 pins torch and numba, caps transformers and (through mistral-common) numpy.
VLLM_PINS = {"torch": "2.14.0", "transformers": "5.20.2", "numpy": "2.3.5", "numba": "0.65.0"}
# Pinned in an env but not in requirements.txt: DeepSpeed (the Makefile's $(DEEPSPEED)).
MAKEFILE_PINS = {"train": {"deepspeed"}}
# Config keys whose value is a backend, as the schema's enums list them.
BACKEND_KEYS = {
    "generation": ("generation", "backend"),
    "judge": ("judge", "backend"),
    "downstream": ("downstream", "backend"),
    "teacher": ("value_gap", "teacher", "backend"),
    "vprism_llm": ("vprism", "llm", "backend"),
    "judge_reference": ("judge", "reference", "backend"),
}
# Rules whose env follows a configured backend (the BACKEND_KEYS entry) and its default.
RULE_BACKENDS = {
    "generate": ("generation", None),
    "generate_run": ("generation", None),
    "judge": ("judge", None),
    "judge_run": ("judge", None),
    "judge_agreement": ("judge", None),
    "dataset_stances": ("judge", None),
    "value_gap_pairs": ("judge", None),
    "reference_judge": ("judge_reference", None),
    "judge_prompt_audit": ("judge", None),
    "downstream_eval": ("downstream", "hf"),
    "generate_value_gap": ("teacher", None),
    "vprism_rephrase": ("vprism_llm", None),
    "vprism_name_clusters": ("vprism_llm", None),
    "vprism_filter": ("vprism_llm", None),
}
TRAIN_RULES = {"prepare_base_model", "adapt_local_judge", "train_sft", "train_reward_model",
               "train_preference_optimisation"}
# What a job imports inside the package functions it calls (lazily), beyond its backend's
# BACKEND_IMPORTS: found by reading those functions, kept here per workflow script.
LAZY_IMPORTS = {
    "prepare_base_model.py": ["torch", "transformers", "huggingface_hub", "gguf"],
    "adapt_local_judge.py": ["torch", "transformers", "trl", "datasets"],
    "train_sft.py": ["torch", "transformers", "trl", "datasets", "accelerate"],
    "train_reward_model.py": ["torch", "transformers", "trl", "datasets", "accelerate"],
    "train_preference_optimisation.py": ["torch", "transformers", "trl", "datasets",
                                         "accelerate"],
    "judge_agreement.py": ["matplotlib", "seaborn"],
    "judge_reference_agreement.py": ["sklearn", "krippendorff", "matplotlib", "seaborn"],
    "dataset_stances.py": ["sentence_transformers"],
    "value_gap_pairs.py": ["sentence_transformers"],
    "prepare_sft_dataset.py": ["datasets"],
    "prepare_preference_set.py": ["datasets"],
    "retrieve_value_gap_prompts.py": ["sentence_transformers", "datasets"],
    "vprism_load_prompts.py": ["datasets"],
    "vprism_embed.py": ["sentence_transformers"],
    "vprism_umap.py": ["umap"],
    "vprism_cluster.py": ["hdbscan", "sklearn"],
    "vprism_assign_categories.py": ["tabulate"],
    "vprism_figure.py": ["seaborn", "matplotlib"],
    "figure_dataset_stances.py": ["matplotlib", "seaborn", "tabulate"],
    "figure_value_gap.py": ["matplotlib", "seaborn", "tabulate"],
}


def declared(env: envs.EnvFile) -> set[str]:
    """The distributions an env pins by name (what it promises its jobs)."""
    return set(env.pins)


def distributions(modules) -> set[str]:
    return {normalise(MODULE_DISTRIBUTIONS[module]) for module in modules}


# ---- the files ---------------------------------------------------------------------------


def test_env_files_are_the_known_envs():
    assert {p.stem for p in (REPO / "envs").glob("*.yaml")} == set(ENV_NAMES)
    assert set(STAGE_ENVS) <= set(ENV_NAMES)
    assert set(BACKEND_ENVS.values()) <= set(ENV_NAMES)
    assert set(BACKEND_IMPORTS) == set(BACKEND_ENVS)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_env_file_parses_and_pins_everything(name):
    spec = yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())
    assert spec["channels"][-1] == "nodefaults"
    env = read_env(name)
    assert set(env.conda) == {"python==3.11.7", "pip==24.3.1"}
    assert env.extras == [name], "installs the project with its own extra"
    assert not env.other_lines, f"envs/{name}.yaml: lines not pinned with ==: {env.other_lines}"
    (constraints,) = env.constraints
    expected = "constraints-vllm.txt" if name == "vllm" else "requirements.txt"
    assert constraints.name == expected and constraints.is_file()
    assert all(f"${{{envs.ROOT_VARIABLE}}}" in line for line in env.pip if line[:2] in ("-c", "-e"))


@pytest.mark.parametrize("name", ENV_NAMES)
def test_env_pins_agree_with_its_constraints(name):
    env = read_env(name)
    (constraints,) = env.constraints
    allowed = read_pins(constraints)
    makefile = (REPO / "Makefile").read_text()
    for distribution, version in env.pins.items():
        if distribution in MAKEFILE_PINS.get(name, set()):
            assert f"{distribution}=={version}" in makefile, distribution
        else:
            assert allowed.get(distribution) == version, (name, distribution, version)


def test_vllm_constraints_are_requirements_with_vllms_pins():
    vllm = read_pins(REPO / "envs/constraints-vllm.txt")
    assert set(vllm) - set(REQUIREMENTS) == {"vllm"}
    assert set(REQUIREMENTS) - set(vllm) == set()
    differing = {name: vllm[name] for name in REQUIREMENTS if vllm[name] != REQUIREMENTS[name]}
    assert differing == VLLM_PINS
    # the other envs agree with requirements.txt exactly (checked above through -c)
    assert read_env("vllm").pins["torch"] == VLLM_PINS["torch"]


@pytest.mark.parametrize("name", ENV_NAMES)
def test_env_pins_every_distribution_the_project_declares_for_it(name):
    env = read_env(name)
    groups = project_dependencies()
    for text in groups[""] + groups[name]:
        requirement = Requirement(text)
        pinned = env.pins.get(normalise(requirement.name))
        assert pinned, f"envs/{name}.yaml does not pin {requirement.name} (pyproject: {text})"
        assert Version(pinned) in requirement.specifier, (name, text, pinned)


def test_core_is_small():
    core = {normalise(Requirement(r).name) for r in project_dependencies()[""]}
    assert not core & {"torch", "transformers", "trl", "vllm", "openai", "lm-eval",
                       "sentence-transformers", "datasets"}


# ---- backends ----------------------------------------------------------------------------


def schema_backends() -> dict[str, list[str]]:
    schema = yaml.safe_load((REPO / "config/schema/config.schema.yaml").read_text())
    found = {}
    for key, path in BACKEND_KEYS.items():
        if key == "judge_reference":  # its backend is checked against judge's enum
            continue
        node = schema
        for part in path:
            node = node["properties"][part]
        found[key] = node["enum"]
    return found


def test_every_backend_in_the_schema_has_an_env():
    for key, backends in schema_backends().items():
        for backend in backends:
            assert backend in BACKEND_ENVS, f"{key} backend {backend!r} has no env"


@pytest.mark.parametrize("backend", sorted(BACKEND_ENVS))
def test_backend_env_lists_what_the_backend_imports(backend):
    env = read_env(BACKEND_ENVS[backend])
    missing = distributions(BACKEND_IMPORTS[backend]) - declared(env)
    assert not missing, f"envs/{env.name}.yaml lacks {missing} for backend {backend}"


def test_conda_env_paths():
    assert conda_env("train") == "../envs/train.yaml"
    assert conda_env("hf") == "../envs/transformers.yaml"
    assert conda_env("openai_batch") == "../envs/api.yaml"
    assert env_name("vllm") == "vllm"
    with pytest.raises(ValueError, match="no conda env for 'llama'"):
        conda_env("llama")


def test_conda_env_exports_the_project_root(monkeypatch):
    monkeypatch.delenv(envs.ROOT_VARIABLE, raising=False)
    conda_env("analysis")
    assert Path(os.environ[envs.ROOT_VARIABLE]) == REPO


# ---- the rules ---------------------------------------------------------------------------


def test_every_conda_path_in_the_rules_exists():
    """Literal paths and conda_env("<env>") calls; calls with a config value are checked
    on the loaded workflow below."""
    literal = re.compile(r"""["'](\.\./envs/[^"']+\.yaml)["']""")
    call = re.compile(r"""conda_env\(\s*["']([\w-]+)["']\s*\)""")
    directives = 0
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        directives += len(re.findall(r"^\s+conda:", text, flags=re.M))
        for path in literal.findall(text):
            assert (smk.parent / path).is_file(), f"{smk.name}: {path} does not exist"
        for argument in call.findall(text):
            assert (smk.parent / conda_env(argument)).resolve().is_file(), (smk.name, argument)
    assert directives > 30


@cache
def module_imports(path: Path) -> frozenset[str]:
    """Top-level modules imported when ``path`` is imported (function bodies left out),
    following the package's own modules."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and not child.level:
                names = [child.module] + [f"{child.module}.{a.name}" for a in child.names]
            else:
                visit(child)
                continue
            for name in names:
                found.update(imports_of(name))

    visit(tree)
    return frozenset(found)


def imports_of(name: str) -> set[str]:
    top = name.split(".")[0]
    if top == "__future__" or top in sys.stdlib_module_names:
        return set()
    if top != "value_drifts":
        return {top}
    base = REPO / "src" / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return set(module_imports(candidate))
    return set()  # a name imported from a module, not a module


def rule_backend(config: dict, key: str, default: str | None) -> str | None:
    node = config
    for part in BACKEND_KEYS[key]:
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


@pytest.fixture(scope="module", params=["config/config.yaml", "config/paper.yaml"])
def loaded_rules(request):
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    configfile = REPO / request.param
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=[configfile]),
            snakefile=REPO / "Snakefile",
            workdir=REPO,
        )._workflow  # noqa: SLF001 - the loaded Snakefile
        rules = [
            (rule.name, Path(rule.snakefile).parent, rule.conda_env, rule.script)
            for rule in workflow.rules
        ]
        config = dict(workflow.config)
    return request.param, config, rules


def test_each_rule_runs_in_the_env_its_backend_needs(loaded_rules):
    configfile, config, rules = loaded_rules
    checked = 0
    for name, rule_dir, conda, script in rules:
        if script is None:
            continue
        assert conda, f"rule {name} has a script but no conda env"
        path = (rule_dir / str(conda)).resolve()
        assert path.is_file(), f"{configfile}: rule {name}: {conda} does not exist"
        env = read_env(path.stem)
        if name in RULE_BACKENDS:
            backend = rule_backend(config, *RULE_BACKENDS[name])
            if backend is not None:
                assert env.name == BACKEND_ENVS[backend], (configfile, name, backend, env.name)
                needed = set(BACKEND_IMPORTS[backend])
            else:
                needed = set()
        else:
            assert env.name == ("train" if name in TRAIN_RULES else "analysis"), (name, env.name)
            needed = set()
        script_path = (rule_dir / script).resolve()
        needed |= module_imports(script_path) | set(LAZY_IMPORTS.get(script_path.name, []))
        missing = distributions(needed) - declared(env)
        assert not missing, f"{configfile}: rule {name} ({env.name} env) imports {missing}"
        checked += 1
    assert checked > 30
