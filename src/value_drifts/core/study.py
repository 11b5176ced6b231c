"""The study as one typed model: built once from a validated config, asked by the rules,
their input functions, the cost plan (``judge.plan_cost``) and ``value-drifts trace``.

``load_study(config)`` checks the config (schema, cross-references, names that would share
a path, global batches), reads the topic map and every trace's checkpoint series once, and
builds:

- the grid (``value_drifts.core.plan``): every phase with its run id, parent, steps and paths
  (``Phase.checkpoint_dir``, ``Phase.step_dir``, ``Phase.run_dir``, spelled in
  ``value_drifts.core.layout``);
- one :class:`Backend` per model-calling role (generation, judge, teacher, downstream,
  V-PRISM LLM): which backend, the conda env holding its library, the rules it runs, whether
  those run in the main Snakemake process (an API backend with ``cluster.api_jobs_local``)
  and the GPUs a job asks for (with vLLM, the tensor-parallel size the job passes on);
- the rules that run locally (``Study.local_rules``) and the questions a checkpoint answers
  (``Study.questions_per_checkpoint``), the one estimate resources and the cost plan use.

Nothing here runs a model or needs a GPU library: the Snakefile builds it at parse time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from value_drifts.core import cluster_requests as res
from value_drifts.core.backends import API_BACKENDS, canonical_name
from value_drifts.core.config import ConfigError, schema_default, validate_config, with_defaults
from value_drifts.core.envs import env_name
from value_drifts.core.layout import TRACES
from value_drifts.core.plan import Plan, build_plan, name_problems, slug
from value_drifts.core.traces import TraceError, read_traces

__all__ = [
    "ESTIMATED_QUESTIONS_PER_CATEGORY", "ROLES", "Backend", "Study", "StudyError",
    "load_study",
]

# The questions per category assumed when ``questions.per_category`` is absent (every
# question of a category) and the questions file does not exist yet: for job runtimes and
# the cost plan's estimate only, never for what is evaluated.
ESTIMATED_QUESTIONS_PER_CATEGORY = 50

# Role -> (config section path, its backend when the section is absent, the rules that call
# its backend, whether the role exists without its section: a study without
# value_gap.teacher or vprism.llm has no teacher or V-PRISM LLM, while downstream takes the
# schema's default backend). Every section present names its backend (schema: required).
ROLES: dict[str, tuple[tuple[str, ...], str | None, tuple[str, ...], bool]] = {
    "generation": (("generation",), None, ("generate", "generate_run"), True),
    "judge": (("judge",), None, res.API_JUDGE_RULES, True),
    "downstream": (
        ("downstream",), schema_default("downstream", "backend"), ("downstream_eval",), True
    ),
    "teacher": (("value_gap", "teacher"), None, res.API_TEACHER_RULES, False),
    "vprism_llm": (("vprism", "llm"), None, res.API_VPRISM_RULES, False),
}


class StudyError(ConfigError):
    """A config, topic map or trace that cannot describe a study; the message says why."""


@dataclass(frozen=True)
class Backend:
    """How the jobs of one role run: ``name`` (e.g. ``vllm``), its conda env
    (``envs/<env>.yaml``), its ``rules``, ``local`` (run in the main Snakemake process:
    an API backend while ``cluster.api_jobs_local``) and the GPUs of a job (:meth:`gpus`)."""

    role: str
    name: str
    env: str
    rules: tuple[str, ...]
    local: bool
    settings: Mapping[str, Any] = field(repr=False)
    cluster: res.ClusterSettings = field(repr=False)

    @property
    def is_api(self) -> bool:
        return self.name in API_BACKENDS

    def gpus(self, model: res.ModelSize | None = None) -> int:
        """GPUs one job asks for on ``model`` (its size; unused by the judge, whose model
        is fixed). With vLLM this is the tensor-parallel size the job passes on; lm-eval's
        ``hf`` backend puts a GPU model on 1 GPU; 0 for a CPU model, a transformers
        generation or judge, and an API backend. Sources:
        ``value_drifts.core.cluster_requests.generation_gpus`` / ``downstream_gpus`` / ``judge_gpus``."""
        if self.role == "judge":
            return res.judge_gpus({"backend": self.name, **self.settings})
        if model is None:
            raise ValueError(f"the GPUs of a {self.role} job depend on its model's size")
        if self.role == "generation":
            return res.generation_gpus(model, self.name, self.cluster)
        if self.role == "downstream":
            return res.downstream_gpus(model, self.name, self.cluster)
        return 0  # teacher and V-PRISM LLM: an API, or a local model on CPU

    def tensor_parallel_size(self, model: res.ModelSize | None = None) -> int:
        """What the job passes to vLLM: the GPUs it asked for (at least 1)."""
        return max(self.gpus(model), 1)


@dataclass(frozen=True)
class Study:
    """One study: the validated ``config``, with the schema's defaults filled in, and
    everything derived from it once."""

    config: Mapping[str, Any]
    topics: Mapping[str, str]  # category -> the topic the judge is asked about
    traces: Mapping[str, Any]  # name -> traces.TraceSeries
    plan: Plan
    cluster: res.ClusterSettings
    backends: Mapping[str, Backend]

    @property
    def categories_by_slug(self) -> dict[str, str]:
        return {slug(category): category for category in self.topics}

    @property
    def figure_topics(self) -> list[str]:
        return list(self.config["analysis"].get("figure_topics", list(self.topics)))

    @property
    def local_rules(self) -> tuple[str, ...]:
        """Rules the main Snakemake process runs itself instead of submitting: the light
        ones (tables, figures, aggregation), those of every local backend, and those that
        download from the hub (``hub_download_rules``, while ``cluster.hub_jobs_local``)."""
        names = list(res.LIGHT_RULES)
        for backend in self.backends.values():
            if backend.local:
                names += [rule for rule in backend.rules if rule not in names]
        if self.cluster.hub_jobs_local:
            names += [rule for rule in hub_download_rules(self.config) if rule not in names]
        judge = self.config.get("judge") or {}
        # a rule of a judge key the config leaves out is not defined (rules/judge.smk)
        return tuple(name for name in names
                     if name not in res.OPTIONAL_JUDGE_RULES
                     or judge.get(res.OPTIONAL_JUDGE_RULES[name]))

    def model_size(self, model: str, run: str | None = None) -> res.ModelSize:
        """The size of ``model`` from ``models.<model>``; a trace's own ``gpus`` /
        ``params_b`` (model ``layout.TRACES``, ``run`` the trace's name)."""
        if model == TRACES:
            series = self.traces[run]
            return res.ModelSize(gpus=series.gpus, params_b=series.params_b)
        return res.ModelSize.from_spec(self.config["models"][model])

    def questions_per_checkpoint(self) -> int:
        """Questions one checkpoint answers (times ``generation.samples`` for its answers):
        ``questions.per_category`` × the evaluated categories; with every question of a
        category, the questions file's rows where it exists, else
        ``ESTIMATED_QUESTIONS_PER_CATEGORY`` per category (also when the file cannot be
        read: a half-written or malformed file is select_questions' to report, with its
        reason). For runtimes and cost estimates."""
        questions = self.config["questions"]
        categories = questions.get("categories") or list(self.topics)
        if questions.get("per_category"):
            return int(questions["per_category"]) * len(categories)
        path = Path(questions["path"])
        if path.is_file():
            # what select_questions evaluates; imported here, as only this case reads a file
            from value_drifts.core.questions import read_questions, sample_questions

            try:
                table = read_questions(str(path), list(self.topics))
                return max(sample_questions(table, None, self.config["seed"],
                                            questions.get("categories")).height, 1)
            except Exception:  # noqa: BLE001 (polars' errors): select_questions reports it
                pass
        return ESTIMATED_QUESTIONS_PER_CATEGORY * len(categories)


def _section(config: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any] | None:
    node: Any = config
    for key in path:
        node = (node or {}).get(key)
    return node


# datasets' builders that read local files (data_files); any other hub_id is a hub
# repository whose data_files are paths inside it.
LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")


def is_hub_data(spec: Mapping[str, Any] | None) -> bool:
    """Whether a data spec loads a hub repository (``datasets.load_dataset`` of its
    ``hub_id``), not local files through a builder such as ``json``."""
    return bool(spec) and "hub_id" in spec and spec["hub_id"] not in LOCAL_BUILDERS


def _is_hub_model(spec: Mapping[str, Any]) -> bool:
    template = spec.get("chat_template")
    return spec["source"] == "hub" or bool(template and not Path(template).exists())


def hub_download_rules(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The rules that download from the Hugging Face hub under ``config``: a base model
    from the hub (or a chat template copied from a hub model), a hub SFT or preference
    data set, V-PRISM's PRISM prompts from the hub. Their work is the download; they run
    on the submit host while ``cluster.hub_jobs_local``. (Sentence encoders, lm-eval's
    tasks and a vLLM judge by hub id are read by jobs that compute: docs/cluster.md says
    how to pre-fetch them.)"""
    uses = {
        "prepare_base_model": any(_is_hub_model(s) for s in config["models"].values()),
        "prepare_sft_dataset": any(s.get("source") == "hub" and is_hub_data(s)
                                   for s in config["sft_datasets"].values()),
        "prepare_preference_set": any(s.get("source") == "hub" and is_hub_data(s)
                                      for s in (config.get("preference_sets") or {}).values()),
        "vprism_load_prompts": is_hub_data((config.get("vprism") or {}).get("source")),
    }
    return tuple(rule for rule, downloads in uses.items() if downloads)


def _patterns(data_files: Any) -> list[str]:
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, Mapping):
        return [p for value in data_files.values() for p in _patterns(value)]
    return [p for value in data_files or [] for p in _patterns(value)]


def _starts_with_data(path: Path) -> bool:
    with open(path, "rb") as handle:
        return bool(handle.read(4096).strip())


def local_data_files(spec: Mapping[str, Any]) -> list[str]:
    """The local files a data spec reads (its ``data_files`` with a local builder as
    ``hub_id``, globs expanded, sorted); [] for a hub repository or a synthetic set. The
    workflow makes them inputs of the rule that prepares the set, so editing one in place
    reruns what was made from it."""
    import glob

    if spec.get("hub_id") not in LOCAL_BUILDERS or not spec.get("data_files"):
        return []
    files = []
    for pattern in _patterns(spec["data_files"]):
        files += sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    return sorted(set(files))


def data_file_problems(config: Mapping[str, Any]) -> list[str]:
    """Local data files (``data_files`` of a ``json``/``csv``/``parquet``/... source) that
    are missing or empty, named with their config key, so the workflow stops at start
    instead of a data job ending in a bare StopIteration."""
    import glob

    problems = []
    for section in ("sft_datasets", "preference_sets"):
        for name, spec in (config.get(section) or {}).items():
            if spec.get("hub_id") not in LOCAL_BUILDERS or not spec.get("data_files"):
                continue
            for pattern in _patterns(spec["data_files"]):
                files = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
                for file in files or [pattern]:
                    path = Path(file)
                    if not path.is_file():
                        problems.append(f"{section}.{name}.data_files: no file {file}")
                    elif not _starts_with_data(path):
                        problems.append(f"{section}.{name}.data_files: {file} is empty (no rows)")
    return problems


def _canonical_backends(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a filled copy) with each role's backend spelled as recorded: an alias
    (``core.backends``) becomes the name it stands for, so settings files and judge
    fingerprints do not depend on which spelling a config used."""
    for role, (path, _, _, _) in ROLES.items():
        section = _section(config, path)
        if isinstance(section, dict) and "backend" in section:
            section["backend"] = canonical_name(role, section["backend"])
    return config


def _backends(config: Mapping[str, Any], cluster: res.ClusterSettings) -> dict[str, Backend]:
    backends = {}
    for role, (path, default, rules, always) in ROLES.items():
        settings = _section(config, path)
        if settings is None and not always:
            continue
        settings = dict(settings or {})
        name = settings.get("backend", default)
        backends[role] = Backend(
            role=role, name=name, env=env_name(name), rules=tuple(rules),
            local=name in API_BACKENDS and cluster.api_jobs_local,
            settings=settings, cluster=cluster,
        )
    return backends


def _trainers(plan: Plan) -> dict[str, list[str]]:
    """Config path of each trainer -> the models it trains (for the global-batch check)."""
    po = plan.po_phases()
    return {
        "sft": [p.model for p in plan.sft_phases()],
        **{
            f"preference_optimization.algorithms.{algorithm}": [
                p.model for p in po if p.algorithm == algorithm
            ]
            for algorithm in sorted({p.algorithm for p in po})
        },
        "preference_optimization.algorithms.ppo.reward_model": [
            p.model for p in po if p.algorithm == "ppo"
        ],
    }


def _fill_sizes(config: dict[str, Any], count_sizes) -> list[str]:
    """Put counted sizes into ``config``'s data sets that leave ``size`` out; the
    problems (a set without one, or one its files cannot give)."""
    missing = [(section, name) for section in ("sft_datasets", "preference_sets")
               for name, spec in (config.get(section) or {}).items() if "size" not in spec]
    if not missing:
        return []
    if count_sizes is None:
        return [f"{section}.{name}: size left out and not counted (only data sets on local "
                "data_files may leave it out; the workflow counts those)"
                for section, name in missing]
    try:
        sizes = count_sizes(config)
    except (ValueError, OSError) as error:
        return [str(error)]
    problems = []
    for section, name in missing:
        if (section, name) in sizes:
            config[section][name]["size"] = int(sizes[(section, name)])
        else:
            problems.append(f"{section}.{name}: size is required (only data sets read from "
                            "local data_files may leave it out: the workflow counts them)")
    return problems


def load_study(
    config: Mapping[str, Any],
    count_sizes: Callable[[Mapping[str, Any]], Mapping[tuple[str, str], int]] | None = None,
) -> Study:
    """The study a config describes, its ``config`` a copy with the schema's defaults
    filled in (``config.with_defaults``). Raises ``StudyError`` naming every problem: schema
    violations and dangling references (``config.validate_config``), names that would
    share a path (``plan.name_problems``), unreadable traces, global batches that do not
    split over a model's GPUs, unknown ``cluster`` keys.

    ``count_sizes``: gives ``{(section, name): size}`` for data sets on local files that
    leave ``size`` out (``value_drifts.data.counted_sizes.counted_sizes``, which reads the
    files: this layer does not); without it such a data set is a problem."""
    try:
        validate_config(config)
    except ConfigError as error:
        raise StudyError(str(error)) from None
    config = _canonical_backends(with_defaults(config))
    topics = yaml.safe_load(Path(config["topics"]).read_text())
    problems = name_problems(config, topics) + data_file_problems(config)
    if not problems:
        problems = _fill_sizes(config, count_sizes)
    if problems:
        raise StudyError("invalid config:\n  " + "\n  ".join(problems))
    try:
        traces = read_traces(config)  # read once: the DAG stays static
        cluster = res.ClusterSettings.from_config(config)
        plan = build_plan(config, traces)
        res.check_global_batches(config, _trainers(plan))
    except (TraceError, ValueError) as error:
        raise StudyError(str(error)) from None
    return Study(
        config=config, topics=topics, traces=traces, plan=plan, cluster=cluster,
        backends=_backends(config, cluster),
    )
