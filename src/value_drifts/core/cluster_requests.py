"""What each job asks a cluster for, from the model's size and GPU count in config.

Pure functions of config values and Snakemake's ``attempt`` (1 on the first try, then 2,
3, ... on retries): the rules' ``resources`` callables call them, and the SLURM executor
turns the keys into ``sbatch`` options (``gpu`` → ``--gpus``, ``cpus_per_task`` →
``--cpus-per-task``, ``mem_mb`` → ``--mem``, ``runtime`` → ``-t`` in minutes, ``nodes`` →
``--nodes``). Site settings (partition, account, GPU model) stay in the profile.

Training of a model with ``gpus: N > 0`` runs under accelerate + DeepSpeed on N GPUs of
one node; ``gpus: 0`` (the small default) trains on CPU with ``cpu_threads`` threads.
Generation with vLLM takes the fewest GPUs (a power of two) whose memory holds the bf16
weights with half of it left for the KV cache; the transformers backend runs on CPU.
Training runtime comes from the trained tokens' FLOPs, and for PPO from its rollouts too
(``rollout_seconds``: generation-bound, from the GPU's memory bandwidth). Memory grows
linearly with ``attempt``, up to a node's memory (``node_memory_gb``), and runtime too, up
to ``max_runtime_min``: a training job cut at the limit resumes from its last checkpoint
when retried. vLLM jobs (generation, downstream, a vLLM judge) ask for
``cpus_per_gpu`` CPUs per GPU and host memory for vLLM's processes besides the weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from value_drifts.core.config import schema_default

# Training FLOPs per token relative to SFT's 6 × parameters (forward + backward): DPO runs
# chosen and rejected through the policy and a frozen reference; PPO trains the policy and
# a value model over each batch of rollouts TRL's num_ppo_epochs (4) times (2 × 4). PPO's
# rollouts (sampling and the forward passes that score them) come on top: ``Rollouts``.
# Rough, for runtime requests only.
TRAINING_COST = {"sft": 1.0, "reward": 2.0, "simpo": 2.0, "dpo": 2.7, "ppo": 8.0}
# Bytes of one parameter as a trainer's ``precision`` holds and saves it.
BYTES_PER_PARAMETER = {"bf16": 2, "fp32": 4}
# PPO's rollouts (TRL's PPOTrainer, trl/experimental/ppo): before each update every rank
# samples responses for its share of the global batch (global_batch_size / GPUs prompts)
# with transformers' generate, ``local_rollout_forward_batch_size`` sequences at a time
# (TRL's default 64), up to ``response_length`` new tokens (TRL's default 53 when
# ``max_response_length`` is unset), then runs the reference policy, the reward model and
# the value model forward over prompt + response. Decoding is memory-bound: each new token
# reads every weight of the policy once (ZeRO-3 gathers the whole policy onto each GPU to
# generate), for the whole chunk at once, so a decode step takes the policy's bytes over
# the GPU's memory bandwidth (``cluster.gpu_memory_bandwidth_gbps``, H100 SXM 3,350 GB/s,
# NVIDIA's H100 datasheet) divided by the share of it a step achieves. Tuned inference
# servers reach 50-60% of it ("model bandwidth utilisation", Databricks/MosaicML, "LLM
# Inference Performance Engineering: Best Practices", 2023); transformers' eager generate
# (no CUDA graphs, a Python step per token, KV-cache reads on top, padded sequences that
# run to the longest) does worse: 25% here, an estimate, not measured on a GPU.
TRL_ROLLOUT_BATCH = 64
TRL_RESPONSE_LENGTH = 53
ROLLOUT_FORWARD_MODELS = 3  # reference policy, reward model, value model
DECODE_BANDWIDTH_UTILISATION = 0.25
# Model copies a trainer holds besides the trained one: (trained, frozen).
TRAINING_MODELS = {"sft": (1, 0), "reward": (1, 0), "simpo": (1, 0), "dpo": (1, 1), "ppo": (2, 2)}
ACCELERATE_CONFIGS = {2: "config/accelerate/zero2.yaml", 3: "config/accelerate/zero3.yaml"}
# Rules that only read and write small tables or draw figures: they run inside the main
# Snakemake process (``localrules``), never as cluster jobs.
LIGHT_RULES = (
    "all",
    "select_questions",
    "values",
    "judge_health",
    "judge_reference_agreement",
    "drift",
    "sft_drift_table",
    "po_drift_table",
    "figure_sft_trajectories",
    "figure_po_trajectories",
    "figure_po_setups",
    "figure_ablation",
    "figure_trace",
    "trace_drift_table",
    "figure_dataset_stances",
    "figure_value_gap",
    "vprism_figure",
    "paper_comparison",
    "downstream_table",
    "run_configuration",
)
# Rules that call a remote API when their backend is one (core.backends.API_BACKENDS):
# network-bound, and compute nodes often have no internet, so they run on the submit host too
# (cluster.api_jobs_local, default true; value_drifts.core.study.Backend.local). A local model
# (transformers, vLLM) stays a job.
API_JUDGE_RULES = ("judge", "judge_agreement", "dataset_stances", "value_gap_pairs",
                   "judge_prompt_audit")
# Rules defined only when a judge key is set (rules/judge.smk): judge.reference,
# judge.audit. A config without the key has no such rule to run locally.
OPTIONAL_JUDGE_RULES = {
    "judge_reference_agreement": "reference",
    "judge_prompt_audit": "audit",
}
API_VPRISM_RULES = ("vprism_rephrase", "vprism_name_clusters", "vprism_filter")
API_TEACHER_RULES = ("generate_value_gap",)


def _cluster_default(key: str) -> Any:
    return schema_default("cluster", key)


# The schema's defaults for a model's size and a vLLM judge's GPUs, read once.
DEFAULT_MODEL_GPUS = schema_default("models", "-", "gpus")
DEFAULT_MODEL_PARAMS_B = schema_default("models", "-", "params_b")
DEFAULT_JUDGE_TENSOR_PARALLEL = schema_default("judge", "tensor_parallel_size")


@dataclass(frozen=True)
class ClusterSettings:
    """The ``cluster`` config section; every key has the schema's default (described
    there: config/schema/config.schema.yaml)."""

    gpu_memory_gb: float = _cluster_default("gpu_memory_gb")
    cpus_per_gpu: int = _cluster_default("cpus_per_gpu")
    node_memory_gb: float = _cluster_default("node_memory_gb")
    cpu_threads: int = _cluster_default("cpu_threads")
    max_runtime_min: int = _cluster_default("max_runtime_min")
    gpu_tflops: float = _cluster_default("gpu_tflops")
    cpu_tflops: float = _cluster_default("cpu_tflops")
    gpu_memory_bandwidth_gbps: float = _cluster_default("gpu_memory_bandwidth_gbps")
    generation_tokens_per_s: float = _cluster_default("generation_tokens_per_s")
    cpu_generation_tokens_per_s: float = _cluster_default("cpu_generation_tokens_per_s")
    api_jobs_local: bool = _cluster_default("api_jobs_local")  # API rules on the submit host
    hub_jobs_local: bool = _cluster_default("hub_jobs_local")  # hub downloads on the submit host

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ClusterSettings:
        section = config.get("cluster") or {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"cluster: unknown key(s) {unknown}")
        return cls(**section)


@dataclass(frozen=True)
class ModelSize:
    gpus: int
    params_b: float

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ModelSize:
        """``models.<name>`` of the config (a trace's spec alike); a model without
        ``gpus`` runs on CPU. Absent keys take the schema's defaults."""
        return cls(
            gpus=int(spec.get("gpus", DEFAULT_MODEL_GPUS)),
            params_b=float(spec.get("params_b", DEFAULT_MODEL_PARAMS_B)),
        )


def _grow(value: float, attempt: int) -> int:
    return int(math.ceil(round(value * max(attempt, 1), 6)))  # no 400.0000001 -> 401


def _runtime(minutes: float, attempt: int, cluster: ClusterSettings) -> int:
    return min(_grow(minutes, attempt), cluster.max_runtime_min)


def _memory(mb: float, attempt: int, cluster: ClusterSettings) -> int:
    """``mb`` grown with ``attempt``, never above a node's memory (``node_memory_gb``)."""
    return min(_grow(mb, attempt), int(cluster.node_memory_gb * 1000))


def threads(model: ModelSize, cluster: ClusterSettings) -> int:
    """CPU cores of a job on this model: ``cpus_per_gpu`` per GPU, or the CPU setting."""
    return model.gpus * cluster.cpus_per_gpu if model.gpus else cluster.cpu_threads


def zero_stage(model: ModelSize, task: str, cluster: ClusterSettings) -> int:
    """DeepSpeed ZeRO stage: 2 (optimizer state and gradients sharded) while the model
    states fit in half a GPU's memory, else 3 (parameters sharded as well).

    Per GPU under ZeRO-2, a trained model takes 2 bytes/parameter of bf16 weights plus
    (2 + 12)/gpus for its sharded gradients and fp32 Adam state; a frozen one 2 bytes.
    """
    if model.gpus < 1:
        raise ValueError("ZeRO needs at least one GPU")
    trained, frozen = TRAINING_MODELS[task]
    per_param = trained * (2 + 14 / model.gpus) + frozen * 2
    return 2 if per_param * model.params_b <= cluster.gpu_memory_gb / 2 else 3


def accelerate_config(model: ModelSize, task: str, cluster: ClusterSettings) -> str | None:
    """The accelerate config file a training job launches with (None: plain Python on CPU)."""
    if model.gpus == 0:
        return None
    return ACCELERATE_CONFIGS[zero_stage(model, task, cluster)]


@dataclass(frozen=True)
class Rollouts:
    """PPO's sampling over a run: ``updates`` policy updates, each sampling up to
    ``response_length`` new tokens for each of ``batch`` prompts of up to
    ``prompt_length`` tokens, ``chunk`` sequences at a time on each GPU (TRL's
    ``local_rollout_forward_batch_size``), with weights held in ``precision``."""

    updates: int
    batch: int
    response_length: int
    prompt_length: int
    chunk: int = TRL_ROLLOUT_BATCH
    precision: str = "bf16"

    @classmethod
    def for_ppo(cls, hyper: Mapping[str, Any], updates: int) -> Rollouts:
        """A PPO run's rollouts from its hyperparameters (``preference_optimization.
        algorithms.ppo`` with a run's overrides) and its number of updates (its last
        step: ``checkpoints.ppo_total_steps``)."""
        extra = hyper.get("extra") or {}
        return cls(
            updates=updates,
            batch=hyper["global_batch_size"],
            response_length=hyper.get("max_response_length", TRL_RESPONSE_LENGTH),
            prompt_length=hyper["max_length"],
            chunk=int(extra.get("local_rollout_forward_batch_size", TRL_ROLLOUT_BATCH)),
            # filled from the schema in every workflow config; a section built without it
            # (an earlier tree's settings, tests) sizes the rollouts in bf16
            precision=hyper.get("precision", cls.precision),
        )


def _training_flops_per_second(model: ModelSize, cluster: ClusterSettings) -> float:
    return (model.gpus * cluster.gpu_tflops if model.gpus else cluster.cpu_tflops) * 1e12


def rollout_seconds(model: ModelSize, rollouts: Rollouts, cluster: ClusterSettings) -> float:
    """Seconds PPO spends sampling and scoring, over all its updates (see
    ``TRL_ROLLOUT_BATCH`` for the sources):

    - decoding, memory-bound: on GPUs each rank decodes ceil(batch / GPUs) sequences in
      ceil(that / chunk) passes of ``response_length`` steps, each step reading the
      policy's weights (parameters × bytes of ``precision``) at
      ``gpu_memory_bandwidth_gbps`` × ``DECODE_BANDWIDTH_UTILISATION``; on CPU, batch ×
      response_length tokens at ``cpu_generation_tokens_per_s``;
    - the reference policy, reward model and value model forward over every sequence
      (2 × parameters FLOPs per token each, prompt_length + response_length tokens) at
      the training throughput.
    """
    params = model.params_b * 1e9
    if model.gpus:
        per_rank = math.ceil(rollouts.batch / model.gpus)
        passes = math.ceil(per_rank / rollouts.chunk)
        step_s = (params * BYTES_PER_PARAMETER[rollouts.precision]
                  / (cluster.gpu_memory_bandwidth_gbps * 1e9 * DECODE_BANDWIDTH_UTILISATION))
        decode_s = rollouts.updates * passes * rollouts.response_length * step_s
    else:
        tokens = rollouts.updates * rollouts.batch * rollouts.response_length
        decode_s = tokens / cluster.cpu_generation_tokens_per_s
    scored = rollouts.updates * rollouts.batch * (rollouts.prompt_length + rollouts.response_length)
    forward_flops = ROLLOUT_FORWARD_MODELS * 2 * params * scored
    return decode_s + forward_flops / _training_flops_per_second(model, cluster)


def training_seconds(
    model: ModelSize, task: str, tokens: int, cluster: ClusterSettings,
    rollouts: Rollouts | None = None,
) -> float:
    """The estimated training time in seconds, without margin: ``tokens`` trained tokens
    at 6 × parameters FLOPs each (× the task's cost) at the configured throughput, plus
    PPO's ``rollouts`` (``rollout_seconds``: generation-bound)."""
    flops = 6 * model.params_b * 1e9 * tokens * TRAINING_COST[task]
    seconds = flops / _training_flops_per_second(model, cluster)
    if rollouts is not None:
        seconds += rollout_seconds(model, rollouts, cluster)
    return seconds


def training_runtime_min(
    model: ModelSize, task: str, tokens: int, attempt: int, cluster: ClusterSettings,
    rollouts: Rollouts | None = None,
) -> int:
    """Minutes a training job asks for: ``training_seconds`` with 50% margin and 15
    minutes of set-up, at most the time limit."""
    seconds = training_seconds(model, task, tokens, cluster, rollouts)
    return _runtime(15 + 1.5 * seconds / 60, attempt, cluster)


def training_mem_mb(model: ModelSize, task: str, attempt: int, cluster: ClusterSettings) -> int:
    """Host memory: each GPU process loads the model (4 bytes/parameter, fp32) once per
    model copy it holds; on CPU the whole fp32 training state (16 bytes/parameter for
    weights, gradients and Adam) plus activations. At most a node's memory."""
    trained, frozen = TRAINING_MODELS[task]
    copies = trained + frozen
    if model.gpus:
        return _memory(32_000 + 4_000 * model.params_b * copies * model.gpus, attempt, cluster)
    return _memory(8_000 + 60_000 * model.params_b * copies, attempt, cluster)


def endless_restart_problem(
    run: str, model: ModelSize, task: str, tokens: int, cluster: ClusterSettings,
    rollouts: Rollouts | None = None, resumes: bool = True,
) -> str | None:
    """Why a training run would never finish, or None: its estimated training time
    (``training_seconds``, without the request's margin) is over
    ``cluster.max_runtime_min`` while a cut job cannot resume (``resumes`` false:
    ``save_only_model: true``, or the reward model, which saves no checkpoint before its
    end), so every job is cut at the limit and every retry starts the run over."""
    if resumes:
        return None
    needed = math.ceil(training_seconds(model, task, tokens, cluster, rollouts) / 60)
    if needed <= cluster.max_runtime_min:
        return None
    return (f"{run}: about {needed} min of training, over cluster.max_runtime_min "
            f"({cluster.max_runtime_min}), and a cut job cannot resume (nothing saved to "
            "resume from), so every retry would start it over")


def training_resources(
    model: ModelSize, task: str, tokens: int, attempt: int, cluster: ClusterSettings,
    rollouts: Rollouts | None = None,
) -> dict[str, int]:
    """Everything a training job asks for (keys as the SLURM executor reads them);
    ``rollouts``: PPO's sampling, part of its runtime."""
    return {
        "gpu": model.gpus,
        "nodes": 1,
        "cpus_per_task": threads(model, cluster),
        "mem_mb": training_mem_mb(model, task, attempt, cluster),
        "runtime": training_runtime_min(model, task, tokens, attempt, cluster, rollouts),
    }


def generation_gpus(model: ModelSize, backend: str, cluster: ClusterSettings) -> int:
    """vLLM's tensor-parallel size: the fewest GPUs (1, 2, 4, 8) holding the bf16 weights
    in half their memory, the other half for the KV cache. 0 for the transformers
    backend and for CPU models."""
    if backend != "vllm" or model.gpus == 0:
        return 0
    weights_gb = 2 * model.params_b
    size = 1
    while weights_gb / size > cluster.gpu_memory_gb / 2 and size < 8:
        size *= 2
    return size


def generation_resources(
    model: ModelSize, backend: str, tokens: int, attempt: int, cluster: ClusterSettings,
    checkpoints: int = 1,
) -> dict[str, int]:
    """A generation job: ``tokens`` is the most it can produce from one checkpoint
    (questions × samples × max new tokens). A job answering ``checkpoints`` checkpoints of
    a run (``generation.one_job_per_run``) sets up once and adds, per later checkpoint,
    its sampling and a minute to load its weights."""
    return inference_resources(
        model, generation_gpus(model, backend, cluster), tokens, attempt, cluster,
        vllm=backend == "vllm", checkpoints=checkpoints,
    )


def downstream_gpus(model: ModelSize, backend: str, cluster: ClusterSettings) -> int:
    """GPUs of a downstream-evaluation job (lm-evaluation-harness): vLLM's tensor-parallel
    size as for generation; the HF backend puts the model on one GPU (``device: cuda``)
    for a GPU model, none for a CPU model. The job passes exactly this number to vLLM."""
    if backend == "vllm":
        return generation_gpus(model, backend, cluster)
    return 1 if model.gpus else 0


def downstream_resources(
    model: ModelSize, backend: str, attempt: int, cluster: ClusterSettings
) -> dict[str, int]:
    """A downstream-evaluation job: the GPUs of ``downstream_gpus``, memory as for
    generation, 8 hours per attempt (the paper's four benchmarks, 5-shot)."""
    resources = inference_resources(
        model, downstream_gpus(model, backend, cluster), 0, attempt, cluster,
        vllm=backend == "vllm",
    )
    resources["runtime"] = _runtime(8 * 60, attempt, cluster)
    return resources


def judge_gpus(judge: Mapping[str, Any]) -> int:
    """GPUs of a judge job: ``judge.tensor_parallel_size`` (default 1) for the vLLM
    backend, which the job passes to vLLM as its tensor-parallel size; none otherwise
    (a local transformers judge runs on CPU, an API judge on the submit host)."""
    if judge["backend"] == "vllm":
        return int(judge.get("tensor_parallel_size", DEFAULT_JUDGE_TENSOR_PARALLEL))
    return 0


# Host memory of a vLLM job besides the weights: its main (or API) process, the engine
# core, the tokenizer and compile and CUDA-graph capture; and per GPU one worker process
# (CUDA context, NCCL and pinned buffers). Rough, for requests only.
VLLM_HOST_MB = 24_000
VLLM_WORKER_MB = 8_000


def vllm_mem_mb(gpus: int, weights_gb: float) -> float:
    """Host memory of a vLLM engine on ``gpus`` GPUs loading ``weights_gb`` of weights."""
    return VLLM_HOST_MB + VLLM_WORKER_MB * max(gpus, 1) + 1_000 * weights_gb


def judge_resources(
    gpus: int, mem_mb: int, runtime_min: int, attempt: int, cluster: ClusterSettings
) -> dict[str, int]:
    """A job running the judge (``judge``, ``judge_agreement``, ``dataset_stances``,
    ``value_gap_pairs``), asking for ``mem_mb`` and ``runtime_min`` on CPU. A vLLM judge
    on ``gpus`` GPUs (``judge_gpus``) gets ``cpus_per_gpu`` CPUs per GPU and vLLM's host
    memory (``vllm_mem_mb``) for weights of up to half those GPUs' memory: the judge's
    size is not configured, and its weights must fit there beside the KV cache."""
    cpus, mem = 1, float(mem_mb)
    if gpus:
        cpus = gpus * cluster.cpus_per_gpu
        mem = max(mem, vllm_mem_mb(gpus, gpus * cluster.gpu_memory_gb / 2))
    return {
        "gpu": gpus,
        "cpus_per_task": cpus,
        "mem_mb": _memory(mem, attempt, cluster),
        "runtime": _runtime(runtime_min, attempt, cluster),
    }


def inference_resources(
    model: ModelSize, gpus: int, tokens: int, attempt: int, cluster: ClusterSettings,
    vllm: bool = False, checkpoints: int = 1,
) -> dict[str, int]:
    """A job running a model forward on ``gpus`` GPUs (0: CPU) producing up to ``tokens``
    tokens from each of ``checkpoints`` checkpoints: CPUs per GPU, host memory for the
    weights (with ``vllm``, vLLM's processes too: ``vllm_mem_mb``), runtime at the
    configured throughput with 50% margin, 15 minutes of set-up and a minute per later
    checkpoint's weights."""
    if gpus:
        rate = gpus * cluster.generation_tokens_per_s
        weights_gb = 4 * model.params_b  # fp32 at most: a checkpoint trained in fp32
        mem = vllm_mem_mb(gpus, weights_gb) if vllm else 16_000 + 1_000 * weights_gb
        cpus = gpus * cluster.cpus_per_gpu
    else:
        rate = cluster.cpu_generation_tokens_per_s
        mem = max(8_000, 4_000 + 20_000 * model.params_b)
        cpus = 1
    return {
        "gpu": gpus,
        "nodes": 1,
        "cpus_per_task": cpus,
        "mem_mb": _memory(mem, attempt, cluster),
        "runtime": _runtime(
            15 + (checkpoints - 1) + checkpoints * 1.5 * tokens / rate / 60, attempt, cluster
        ),
    }


def prepare_model_resources(model: ModelSize, attempt: int, cluster: ClusterSettings) -> dict[str, int]:
    """Downloading (or converting) a base model on CPU: room for its fp32 weights."""
    return {
        "mem_mb": _memory(max(8_000, 6_000 * model.params_b), attempt, cluster),
        "runtime": _grow(120, attempt),
    }


def check_global_batches(config: Mapping[str, Any], trainers: Mapping[str, list[str]]) -> None:
    """Every trainer's global batch must split evenly over the GPUs of every model it
    trains: per-device batch × GPUs × accumulation = global batch. ``trainers`` maps a
    config path (e.g. ``sft`` or ``preference_optimization.algorithms.dpo``) to models."""
    problems = []
    for path, models in trainers.items():
        if not models:  # a trainer that trains nothing (its section may be absent)
            continue
        section: Any = config
        for key in path.split("."):
            section = section[key]
        for name in models:
            gpus = max(ModelSize.from_spec(config["models"][name]).gpus, 1)
            per_step = section["per_device_batch_size"] * gpus
            if section["global_batch_size"] % per_step:
                problems.append(
                    f"{path}.global_batch_size: {section['global_batch_size']} is not a multiple"
                    f" of per_device_batch_size {section['per_device_batch_size']} × {gpus}"
                    f" GPU(s) of model {name}"
                )
    if problems:
        raise ValueError("invalid config:\n  " + "\n  ".join(problems))
