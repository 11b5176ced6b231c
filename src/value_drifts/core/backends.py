"""The backend registry: every backend a config can name, as plain data.

A backend is the library or service a role's jobs run on. The roles are the config
sections that name one: ``generation``, ``judge``, ``downstream``, ``value_gap.teacher``
(role ``teacher``) and ``vprism.llm`` (role ``vprism_llm``). For each backend the registry
says the conda env its jobs run in (``envs/<env>.yaml``), the top-level modules its code
imports (the env must provide them; tests/workflow/test_envs.py checks), whether it calls a
remote API (network-bound: such jobs may run on the submit host, ``cluster.api_jobs_local``),
the roles that accept it, and other spellings accepted for it.

``name`` is the spelling *recorded* in settings files and judge fingerprints, so it never
changes; an alias (``transformers`` for lm-eval's ``hf`` model type in ``downstream``,
``openai`` for the ``openai_chat`` teacher and V-PRISM LLM) is read as that name when the
study is loaded (:func:`canonical_name`), so a config written either way records the same.

Adding a backend: a row here, its value in the schema's enum of each role it serves
(config/schema/config.schema.yaml; a test compares them with :func:`accepted_names`), and the
code that builds it (judge: ``value_drifts.judge.backends``; generation:
``workflow_scripts/generate.py``; teacher and V-PRISM LLM: ``value_drifts.data.teacher``).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLE_NAMES = ("generation", "judge", "downstream", "teacher", "vprism_llm")


@dataclass(frozen=True)
class BackendKind:
    """One backend: ``name`` as recorded, its conda ``env``, the modules its code
    ``imports``, whether it is a remote ``api``, the ``roles`` that accept it and the
    ``aliases`` those roles also accept for it."""

    name: str
    env: str
    imports: tuple[str, ...]
    api: bool
    roles: tuple[str, ...]
    aliases: tuple[str, ...] = ()


REGISTRY: tuple[BackendKind, ...] = (
    # generation.sampling.generate_transformers, judge.transformers_backend, the teacher's
    # local model
    BackendKind("transformers", "transformers", ("torch", "transformers"), api=False,
                roles=("generation", "judge", "teacher", "vprism_llm")),
    # analysis.downstream with lm-eval's hf model type (accelerate is imported there)
    BackendKind("hf", "transformers", ("lm_eval", "torch", "transformers", "accelerate"),
                api=False, roles=("downstream",), aliases=("transformers",)),
    # generation.sampling.generate_vllm, judge.vllm_backend (its tokenizer), lm-eval's vllm
    BackendKind("vllm", "vllm", ("vllm", "transformers", "lm_eval"), api=False,
                roles=("generation", "judge", "downstream")),
    # judge.openai_backend, judge.batch_api
    BackendKind("openai", "api", ("openai",), api=True, roles=("judge",)),
    BackendKind("openai_batch", "api", ("openai",), api=True, roles=("judge",)),
    # the teacher and V-PRISM LLM over an OpenAI-compatible API (backends.openai_client)
    BackendKind("openai_chat", "api", ("openai",), api=True, roles=("teacher", "vprism_llm"),
                aliases=("openai",)),
)
BY_NAME = {kind.name: kind for kind in REGISTRY}


def backend_kind(name: str) -> BackendKind:
    """The registry's row for a recorded backend name; KeyError naming the known ones."""
    if name not in BY_NAME:
        raise KeyError(f"unknown backend {name!r} (backends: {', '.join(BY_NAME)})")
    return BY_NAME[name]


def accepted_names(role: str) -> tuple[str, ...]:
    """Every spelling ``role`` accepts: its backends' names, then their aliases."""
    kinds = [kind for kind in REGISTRY if role in kind.roles]
    return (*(k.name for k in kinds), *(a for k in kinds for a in k.aliases))


def canonical_name(role: str, name: str) -> str:
    """The recorded name of the backend ``name`` means in ``role`` (itself, or the backend
    it is an alias of). Raises ValueError for a name ``role`` does not accept."""
    for kind in REGISTRY:
        if role in kind.roles and (name == kind.name or name in kind.aliases):
            return kind.name
    raise ValueError(f"{role}: unknown backend {name!r} (one of {', '.join(accepted_names(role))})")


# Derived views, for the code that asks one question of every backend.
BACKEND_ENVS = {kind.name: kind.env for kind in REGISTRY}
BACKEND_IMPORTS = {kind.name: list(kind.imports) for kind in REGISTRY}
API_BACKENDS = tuple(kind.name for kind in REGISTRY if kind.api)
API_JUDGE_BACKENDS = tuple(kind.name for kind in REGISTRY if kind.api and "judge" in kind.roles)
