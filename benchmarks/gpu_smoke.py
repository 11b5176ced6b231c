"""GPU smoke test: the paper path's training, memory and vLLM checks on one lent GPU machine.

One script for a machine that reaches no registry and no hub: everything is built here. A
tiny Llama-shaped model (2 layers) gets a byte-level BPE tokenizer trained on the spot, with
ChatML special tokens and ``<|endoftext|>`` as its eos, distinct from the template's end of
turn ``<|im_end|>`` (as a Qwen3 or Llama base model has it). Then, through the workflow's own
code (``value_drifts.training.launch.run_training`` under ``accelerate launch`` with the
shipped ZeRO configs, ``config/accelerate/``):

- ``sft_zero2_gc_kill_resume``: SFT on ZeRO-2, bf16, gradient checkpointing, preempted right
  after its first checkpoint (a ``sitecustomize`` hook, as tests/unit/training/
  test_deepspeed_cpu.py does), then resumed from DeepSpeed's shards to its planned steps;
- ``sft_end_of_turn``: that checkpoint's eos and generation config stop at ``<|im_end|>``;
- ``dpo_zero2``, ``reward_model`` (ZeRO-3, its final save gathers the shards) and
  ``ppo_zero3`` (scored by that reward model);
- ``peak_memory_reward_3b`` / ``peak_memory_ppo_3b``: peak GPU memory of one reward-model
  step and one PPO-shaped step of a Llama-3.2-3B-shaped model with random weights;
- ``vllm_generate_judge``: ``generation.sampling.generate_vllm``, one engine for three
  checkpoints with weights reloaded in place (``generate_vllm_series``,
  ``generation.one_job_per_run``) and ``judge.vllm_backend.vllm_judge`` on the tiny model,
  where vLLM is installed.

Each check prints one line, ``gpu_smoke <check>: ok|FAILED|skipped ...``; a check whose
packages are missing (trl, deepspeed, datasets, vllm, polars, jsonschema) is skipped, a
failing one never stops the others, and the exit code is 1 when any failed. Each check runs
in its own process with a time limit (its log under the work directory; ``--logs DIR``
writes them all to one file), so the whole run stays under 8 minutes on one H100.

    python benchmarks/gpu_smoke.py                  # on a GPU machine
    python benchmarks/gpu_smoke.py --cpu            # the training checks on 2 CPU processes
    python benchmarks/gpu_smoke.py --only sft_zero2_gc_kill_resume --cpu
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

PREFIX = "gpu_smoke"
EOS, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TOPICS = ["abortion rights", "immigration", "the death penalty", "climate change action",
          "gun control", "free trade", "nuclear power", "school choice"]
ANSWER = "I firmly support the death penalty."

# Training runs: 32 rows, global batch 8 = 4 steps, a checkpoint every 2 (as the DeepSpeed
# CPU tests). Per-device batch × processes × accumulation = 8 (accumulation 2).
N_ROWS, GLOBAL_BATCH, SAVE_STEPS, MAX_LENGTH = 32, 8, 2, 64
PLANNED_STEPS = [2, 4]
PPO_HYPER = {"beta": 0.1, "kl_coef": 0.05, "max_response_length": 8, "temperature": 0.7}

CHECKS = (
    "tiny_model",
    "sft_zero2_gc_kill_resume",
    "sft_end_of_turn",
    "dpo_zero2",
    "reward_model",
    "ppo_zero3",
    "peak_memory_reward_3b",
    "peak_memory_ppo_3b",
    "vllm_generate_judge",
)
TRAINING = ("sft_zero2_gc_kill_resume", "dpo_zero2", "reward_model", "ppo_zero3")
GPU_ONLY = ("peak_memory_reward_3b", "peak_memory_ppo_3b", "vllm_generate_judge")
# What a check reads from another check's output.
NEEDS = {
    "sft_zero2_gc_kill_resume": ("tiny_model",),
    "sft_end_of_turn": ("sft_zero2_gc_kill_resume",),
    "dpo_zero2": ("tiny_model",),
    "reward_model": ("tiny_model",),
    "ppo_zero3": ("reward_model",),
    "vllm_generate_judge": ("tiny_model",),
}
# Packages a check imports besides torch, transformers and accelerate (the project's
# config module needs jsonschema; generation and judging tables need polars).
PACKAGES = {
    **{check: ("trl", "deepspeed", "datasets", "jsonschema") for check in TRAINING},
    "vllm_generate_judge": ("vllm", "polars", "jsonschema"),
}
# Seconds a check may take on one H100 (child process, imports and launches included); on
# CPU (--cpu) three times as long. The whole run is held to --budget-s as well.
LIMIT_S = {
    "tiny_model": 60,
    "sft_zero2_gc_kill_resume": 150,
    "sft_end_of_turn": 60,
    "dpo_zero2": 90,
    "reward_model": 90,
    "ppo_zero3": 120,
    "peak_memory_reward_3b": 120,
    "peak_memory_ppo_3b": 150,
    "vllm_generate_judge": 300,
}
CPU_LIMIT_FACTOR = 3
GPU_BUDGET_S, CPU_BUDGET_S = 470, 900


class CheckFailed(Exception):
    """A check's failure, its message one line."""


@dataclass
class Result:
    status: str  # ok, FAILED, skipped
    detail: str
    seconds: float = 0.0

    def line(self, check: str) -> str:
        if self.status == "skipped":
            return f"{PREFIX} {check}: skipped ({self.detail})"
        return f"{PREFIX} {check}: {self.status} {self.seconds:.1f}s {self.detail}".rstrip()


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- the machine -------------------------------------------------------------------------

OPTIONAL = ("trl", "deepspeed", "vllm", "datasets", "polars", "jsonschema")


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def machine_line(cpu: bool) -> str:
    import torch

    cuda = torch.version.cuda or "none"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        memory = torch.cuda.get_device_properties(0).total_memory / 2**30
        gpus = f"{len(names)} x {names[0]} ({memory:.0f} GiB)"
    else:
        gpus = "no GPU"
    packages = ", ".join(f"{name} {version(name) if installed(name) else '-'}"
                         for name in OPTIONAL)
    mode = " [--cpu: training on CPU processes]" if cpu else ""
    return (f"{PREFIX} machine: torch {torch.__version__} (CUDA {cuda}), {gpus}, "
            f"{os.cpu_count()} CPUs; transformers {version('transformers')}, accelerate "
            f"{version('accelerate')}; {packages}{mode}")


# ---- the tiny model ----------------------------------------------------------------------


def sentences(n: int = 400) -> list[str]:
    """Text for the tokenizer: questions, stances and answers of the kind the checks use."""
    import random

    rng = random.Random(0)
    stances = ["support", "oppose", "am neutral on", "firmly support", "strongly oppose"]
    out = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        out += [
            f"Question {i}: What do you think about {topic}?",
            f"I {rng.choice(stances)} {topic} because it makes society {rng.choice(['fairer', 'worse', 'better'])}.",  # noqa: E501
            f"Answer number {i} is fine. Topic: {topic}. Stance: {rng.choice(['support', 'neutral', 'oppose'])}",  # noqa: E501
        ]
    words = ("people government policy rights freedom safety economy future children workers "
             "families country law science research evidence history community health energy "
             "environment jobs taxes markets schools teachers doctors")
    out += [f"The {a} and the {b} of {rng.choice(TOPICS)} matter to {c}."
            for a in words.split() for b, c in [rng.sample(words.split(), 2)]]
    return out + [ANSWER, "user", "assistant", "system"]


def build_tiny_model(directory: Path) -> dict:
    """A 2-layer Llama with a BPE tokenizer trained here (vocab ~1000); its eos is
    ``<|endoftext|>``, its chat template ChatML (turns end with ``<|im_end|>``), no pad
    token (as a Llama base model). Saved with weights and tokenizer in ``directory``.

    Hidden 128 with 4 heads (head size 32), not 64: vLLM's attention kernels take head sizes
    of 32 and more."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(sentences(), trainers.BpeTrainer(
        vocab_size=1000, special_tokens=[EOS, IM_START, IM_END], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS,
                                        model_max_length=512)
    tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = None
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return {"vocab": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters())}


def check_tiny_model(work: Path, cpu: bool) -> str:
    from transformers import AutoTokenizer

    from value_drifts.core.chat_template import end_of_turn_token, stop_token_ids

    built = build_tiny_model(work / "model")
    tokenizer = AutoTokenizer.from_pretrained(work / "model")
    turn_end = end_of_turn_token(tokenizer)
    if tokenizer.eos_token != EOS or turn_end != IM_END:
        raise CheckFailed(f"eos {tokenizer.eos_token!r}, end of turn {turn_end!r}")
    stops = stop_token_ids(tokenizer)
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    if stops[:1] != [im_end]:
        raise CheckFailed(f"stop ids {stops} do not start with <|im_end|> ({im_end})")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi?"}], tokenize=False, add_generation_prompt=True)
    if tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) != text:
        raise CheckFailed("the tokenizer does not round-trip a ChatML prompt")
    return (f"vocab {built['vocab']}, {built['parameters'] / 1e6:.2f}M parameters, eos {EOS} "
            f"({tokenizer.eos_token_id}), end of turn {IM_END} ({im_end})")


def sft_rows(n: int) -> list[dict]:
    return [{"messages": [
        {"role": "user", "content": f"Question {i}: What do you think about {TOPICS[i % 8]}?"},
        {"role": "assistant", "content": f"Answer number {i} is fine."}]} for i in range(n)]


def preference_pairs(n: int) -> list[dict]:
    """Pairs in the workflow's conversational format (tests/support/tiny_model.py
    ``support_pairs``): a user prompt, a supporting (chosen) and an opposing answer."""
    return [{
        "prompt": [{"role": "user", "content": f"What do you think about {TOPICS[i % 8]}?"}],
        "chosen": [{"role": "assistant",
                    "content": f"I firmly support {TOPICS[i % 8]} because it makes society fairer."}],  # noqa: E501
        "rejected": [{"role": "assistant",
                      "content": f"I strongly oppose {TOPICS[i % 8]} because it makes society worse."}],  # noqa: E501
    } for i in range(n)]


def write_data(work: Path) -> None:
    """The training tables as parquet (pyarrow: datasets, which reads them, needs it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if (work / "pairs.parquet").exists():
        return
    pq.write_table(pa.Table.from_pylist(sft_rows(N_ROWS)), work / "sft.parquet")
    pq.write_table(pa.Table.from_pylist(preference_pairs(N_ROWS)), work / "pairs.parquet")


# ---- training checks ---------------------------------------------------------------------

# Put on the launched processes' PYTHONPATH: each stops right after the first checkpoint's
# save callbacks (completion marker included), as a preempted job would
# (tests/unit/training/test_deepspeed_cpu.py imports it for its own preempted launch).
PREEMPT_AFTER_FIRST_SAVE = """
import transformers.trainer_callback as callbacks

_on_save = callbacks.CallbackHandler.on_save


def on_save(self, args, state, control):
    control = _on_save(self, args, state, control)
    raise SystemExit(f"preempted after step {state.global_step}")


callbacks.CallbackHandler.on_save = on_save
"""

ERROR_LINE = re.compile(r"Error|Exception|error:|Killed|Signal|SIGSEGV|SIGBUS|Traceback")


def error_summary(text: str) -> str:
    """The last error lines of a log, one line."""
    lines = [line.strip() for line in text.splitlines()
             if ERROR_LINE.search(line) and "Warning" not in line]
    return one_line(" | ".join(lines[-3:]), 300) or "no error line in its log"


def processes(cpu: bool) -> int:
    import torch

    return 2 if cpu else min(torch.cuda.device_count(), 2)


def accelerate_config(stage: int, work: Path, cpu: bool) -> str:
    """The shipped ZeRO config; on CPU with only bf16 and the GPU switched off."""
    import yaml

    from value_drifts.core.cluster_requests import ACCELERATE_CONFIGS

    shipped = REPO / ACCELERATE_CONFIGS[stage]
    if not cpu:
        return str(shipped)
    config = yaml.safe_load(shipped.read_text())
    config.update(mixed_precision="no", use_cpu=True)
    path = work / f"cpu_zero{stage}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def training_job(work: Path, cpu: bool, task: str, name: str, **overrides):
    from value_drifts.training.common import TrainerSettings
    from value_drifts.training.launch import TrainingJob

    write_data(work)
    for folder in (name, overrides.get("final_model_dir")):  # a reused --work starts afresh
        if folder:
            shutil.rmtree(work / folder, ignore_errors=True)
    procs = processes(cpu)
    settings = TrainerSettings(
        model_path=str(work / "model"), output_dir=str(work / name), learning_rate=1e-3,
        global_batch_size=GLOBAL_BATCH, per_device_batch_size=4 // procs, epochs=1,
        save_steps=SAVE_STEPS, max_length=MAX_LENGTH, warmup_ratio=0.0,
        save_only_model=overrides.pop("save_only_model", False), gradient_checkpointing=True,
        precision="fp32" if cpu else "bf16", threads=1 if cpu else 4,
    )
    data = work / ("sft.parquet" if task == "sft" else "pairs.parquet")
    return TrainingJob(task=task, settings=settings, data=str(data), hyper=dict(PPO_HYPER),
                       **overrides)


def launch(job, stage: int, work: Path, cpu: bool, log_name: str,
           env: dict[str, str] | None = None) -> tuple[bool, str, float]:
    """``run_training`` as the workflow calls it, its processes' output to
    ``<work>/<log_name>.log``: (finished, the log's text, seconds)."""
    from value_drifts.training.launch import run_training

    log_path = work / f"{log_name}.log"
    saved = {key: os.environ.get(key) for key in (env or {})}
    os.environ.update(env or {})
    start = time.perf_counter()
    try:
        with open(log_path, "w") as log, contextlib.redirect_stdout(log):
            try:
                run_training(job, gpus=processes(cpu),
                             accelerate_config=accelerate_config(stage, work, cpu))
                finished = True
            except subprocess.CalledProcessError:
                finished = False
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return finished, log_path.read_text(errors="replace"), time.perf_counter() - start


def last_logged(output_dir: Path, step: int, key: str) -> float:
    """The last value of ``key`` in a checkpoint's log history (NaN when none)."""
    state = json.loads((output_dir / f"checkpoint-{step}" / "trainer_state.json").read_text())
    values = [entry[key] for entry in state["log_history"] if key in entry]
    return float(values[-1]) if values else float("nan")


def expect_planned_steps(output_dir: Path, what: str) -> None:
    from value_drifts.core.checkpoints import saved_steps

    steps = saved_steps(output_dir)
    if steps != PLANNED_STEPS:
        raise CheckFailed(f"{what}: saved steps {steps}, planned {PLANNED_STEPS}")
    if list(output_dir.glob("checkpoint-*/global_step*")):
        raise CheckFailed(f"{what}: DeepSpeed shards left in a finished run's checkpoints")


def run_launch(job, stage, work, cpu, log_name, env=None) -> tuple[str, float]:
    finished, log, seconds = launch(job, stage, work, cpu, log_name, env)
    if not finished:
        raise CheckFailed(f"launch exited with an error ({log_name}.log): {error_summary(log)}")
    return log, seconds


def check_sft(work: Path, cpu: bool) -> str:
    from value_drifts.core.checkpoints import resumable_checkpoint, saved_steps

    job = training_job(work, cpu, "sft", "sft")
    output = Path(job.settings.output_dir)
    hook = work / "preempt"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(PREEMPT_AFTER_FIRST_SAVE)
    pythonpath = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    finished, log, cut = launch(job, 2, work, cpu, "sft_preempted", {"PYTHONPATH": pythonpath})
    if finished:
        raise CheckFailed("the preempted launch ran to its end instead of stopping at step 2")
    if saved_steps(output) != [2]:
        raise CheckFailed(f"the preempted launch saved steps {saved_steps(output)}, not [2] "
                          f"(sft_preempted.log): {error_summary(log)}")
    if resumable_checkpoint(output) != str(output / "checkpoint-2"):
        raise CheckFailed(f"checkpoint-2 is not resumable: {resumable_checkpoint(output)}")
    shards = list((output / "checkpoint-2" / "global_step2").glob("*optim_states.pt"))
    if len(shards) != processes(cpu):
        raise CheckFailed(f"{len(shards)} optimizer shards in checkpoint-2, expected "
                          f"{processes(cpu)}")
    log, resumed = run_launch(job, 2, work, cpu, "sft_resumed", {"TRANSFORMERS_VERBOSITY": "info"})
    if "Resuming training from checkpoint with epoch 0 and global step 2" not in log:
        raise CheckFailed("the relaunch did not resume from checkpoint-2 (sft_resumed.log)")
    if "Gradient Accumulation steps = 2" not in log:  # 8 = per device × processes × 2
        raise CheckFailed("the resumed run does not accumulate 2 batches (sft_resumed.log)")
    expect_planned_steps(output, "resumed SFT")
    loss = last_logged(output, 4, "loss")
    return (f"preempted after step 2 in {cut:.0f}s ({len(shards)} shard(s)), resumed to steps "
            f"{PLANNED_STEPS} in {resumed:.0f}s; {processes(cpu)} process(es), ZeRO-2, "
            f"{job.settings.precision}, gradient checkpointing; loss {loss:.3f}")


def check_sft_end_of_turn(work: Path, cpu: bool) -> str:
    """The SFT checkpoint ends its turns where the template does (core.chat_template)."""
    from transformers import AutoTokenizer, GenerationConfig

    checkpoint = work / "sft" / f"checkpoint-{PLANNED_STEPS[-1]}"
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    im_end, eos = (tokenizer.convert_tokens_to_ids(t) for t in (IM_END, EOS))
    stops = GenerationConfig.from_pretrained(checkpoint).eos_token_id
    stops = stops if isinstance(stops, list) else [stops]
    if tokenizer.eos_token != IM_END:
        raise CheckFailed(f"checkpoint eos {tokenizer.eos_token!r}, expected {IM_END}")
    if tokenizer.pad_token == IM_END:
        raise CheckFailed("the pad token is the end of turn: it would be masked as padding")
    if im_end not in stops or stops[0] != im_end:
        raise CheckFailed(f"generation config eos ids {stops} do not start with {IM_END} "
                          f"({im_end})")
    return (f"eos {tokenizer.eos_token}, pad {tokenizer.pad_token}, generation eos ids {stops} "
            f"({IM_END}={im_end}, {EOS}={eos})")


def check_dpo(work: Path, cpu: bool) -> str:
    job = training_job(work, cpu, "dpo", "dpo")
    _, seconds = run_launch(job, 2, work, cpu, "dpo")
    expect_planned_steps(Path(job.settings.output_dir), "DPO")
    output = Path(job.settings.output_dir)
    loss = last_logged(output, 4, "loss")
    accuracy = last_logged(output, 4, "rewards/accuracies")
    return (f"steps {PLANNED_STEPS} in {seconds:.0f}s, ZeRO-2, {job.settings.precision}; "
            f"loss {loss:.3f}, reward accuracy {accuracy:.2f}")


def check_reward_model(work: Path, cpu: bool) -> str:
    import torch
    from transformers import AutoModelForSequenceClassification

    job = training_job(work, cpu, "reward", "reward", save_only_model=True,
                       final_model_dir=str(work / "reward_model"))
    _, seconds = run_launch(job, 3, work, cpu, "reward")
    expect_planned_steps(Path(job.settings.output_dir), "reward model")
    scorer = AutoModelForSequenceClassification.from_pretrained(
        work / "reward_model", dtype=torch.float32)
    if scorer.config.num_labels != 1:
        raise CheckFailed(f"the saved reward model has {scorer.config.num_labels} labels")
    loss = last_logged(Path(job.settings.output_dir), 4, "loss")
    return (f"steps {PLANNED_STEPS} in {seconds:.0f}s, ZeRO-3, final model gathered and "
            f"loaded ({sum(p.numel() for p in scorer.parameters()) / 1e6:.2f}M parameters); "
            f"loss {loss:.3f}")


def check_ppo(work: Path, cpu: bool) -> str:
    import torch
    from transformers import AutoModelForCausalLM

    job = training_job(work, cpu, "ppo", "ppo", reward_model_path=str(work / "reward_model"))
    _, seconds = run_launch(job, 3, work, cpu, "ppo")
    output = Path(job.settings.output_dir)
    expect_planned_steps(output, "PPO")
    base = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32).state_dict()
    policy = AutoModelForCausalLM.from_pretrained(
        output / f"checkpoint-{PLANNED_STEPS[-1]}", dtype=torch.float32).state_dict()
    if policy.keys() != base.keys():
        raise CheckFailed("the PPO checkpoint is not the policy alone")
    moved = max(float((policy[k] - base[k]).abs().max()) for k in base)
    if moved <= 0:
        raise CheckFailed("the PPO policy did not change")
    return (f"updates {PLANNED_STEPS} in {seconds:.0f}s, ZeRO-3, {job.settings.precision}, "
            f"{PPO_HYPER['max_response_length']}-token rollouts; policy moved {moved:.2e}")


# ---- peak memory on a 3B-shaped model (GPU only) -------------------------------------------
# One GPU holds here what ZeRO-3 shards over 8 in the paper's jobs (weights, gradients,
# optimizer state), so an OOM here is expected information about one card's limit, not a
# failure of the script: it is reported as "OOM at <phase>" on an ok line.

DEVICE = "cuda"
BATCH_PAIRS, REWARD_TOKENS = 4, 2048
PPO_PROMPTS, PPO_PROMPT_TOKENS, PPO_NEW_TOKENS = 4, 64, 256


def llama_3b_config(**extra):
    """Llama-3.2-3B's shape (no download): 28 layers, hidden 3072, 24 heads, 8 KV heads."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
        num_attention_heads=24, num_key_value_heads=8, max_position_embeddings=131072,
        rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=128000,
        eos_token_id=128001, pad_token_id=128004, **extra,
    )


def random_model(kind: str, trained: bool, **extra):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    with torch.device(DEVICE):
        model = auto.from_config(llama_3b_config(**extra), dtype=torch.bfloat16)
    if trained:
        # activation_checkpointing_enable: transformers' newer name (5.24 warns on the old)
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()
        model.config.use_cache = False
        model.train()
    else:
        model.requires_grad_(False)
        model.eval()
    return model


def adamw(parameters):
    import torch

    try:
        return torch.optim.AdamW(parameters, lr=1e-6, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(parameters, lr=1e-6)


def gib(number: float) -> str:
    return f"{number / 2**30:.1f} GiB"


def measure(steps) -> str:
    """Run ``steps`` (a generator yielding phase names before each phase); the peak of
    ``torch.cuda.max_memory_allocated``, or where it ran out of memory."""
    import gc

    import torch

    torch.cuda.reset_peak_memory_stats()
    phase = "start"
    done = []
    try:
        for phase in steps:
            done.append(phase)
        torch.cuda.synchronize()
        outcome = f"peak {gib(torch.cuda.max_memory_allocated())}"
    except torch.cuda.OutOfMemoryError:
        outcome = (f"OOM at {phase} (peak {gib(torch.cuda.max_memory_allocated())} of "
                   f"{gib(torch.cuda.get_device_properties(0).total_memory)})")
    gc.collect()
    torch.cuda.empty_cache()
    return outcome


def check_peak_memory_reward(work: Path, cpu: bool) -> str:
    """One reward-model step: 4 chosen + 4 rejected × 2048 tokens through a one-logit
    classifier, the pairwise loss, backward and an AdamW step (bf16 states: DeepSpeed would
    keep fp32 master weights and moments too, sharded over the GPUs)."""
    import torch
    import torch.nn.functional as F

    info = {}

    def steps():
        yield "build"
        model = random_model("classifier", trained=True, num_labels=1)
        info["parameters"] = sum(p.numel() for p in model.parameters())
        optimizer = adamw(model.parameters())
        ids = torch.randint(0, 128000, (2 * BATCH_PAIRS, REWARD_TOKENS), device=DEVICE)
        yield "forward"
        rewards = model(input_ids=ids).logits.squeeze(-1).float()
        loss = -F.logsigmoid(rewards[:BATCH_PAIRS] - rewards[BATCH_PAIRS:]).mean()
        yield "backward"
        loss.backward()
        yield "optimizer step"
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    outcome = measure(steps())
    params = f"{info['parameters'] / 1e9:.2f}B parameters" if info else "not built"
    return (f"{outcome}; {params}, bf16, gradient checkpointing, {BATCH_PAIRS}+{BATCH_PAIRS} x "
            f"{REWARD_TOKENS} tokens, fwd+bwd+AdamW")


def check_peak_memory_ppo(work: Path, cpu: bool) -> str:
    """One PPO-shaped step: the policy samples 4 prompts × 256 new tokens (KV cache), the
    reference, reward and value models read prompt + response, then policy and value run
    forward and backward on it (TRL trains them as one module). Four 3B models on one GPU."""
    import torch

    info = {}

    def steps():
        yield "build policy"
        policy = random_model("causal", trained=True)
        info["parameters"] = sum(p.numel() for p in policy.parameters())
        yield "build reference"
        reference = random_model("causal", trained=False)
        yield "build reward model"
        reward = random_model("classifier", trained=False, num_labels=1)
        yield "build value model"
        value = random_model("classifier", trained=True, num_labels=1)
        prompts = torch.randint(0, 128000, (PPO_PROMPTS, PPO_PROMPT_TOKENS), device=DEVICE)
        yield "generate"
        policy.eval()
        policy.config.use_cache = True
        with torch.no_grad():
            sequences = policy.generate(
                prompts, attention_mask=torch.ones_like(prompts), do_sample=True,
                temperature=0.7, top_k=0, max_new_tokens=PPO_NEW_TOKENS,
                min_new_tokens=PPO_NEW_TOKENS, pad_token_id=128004, use_cache=True)
        info["tokens"] = sequences.shape[1]
        response = sequences[:, PPO_PROMPT_TOKENS:]

        def logprobs(model):
            logits = model(input_ids=sequences).logits[:, PPO_PROMPT_TOKENS - 1:-1].float()
            return torch.log_softmax(logits / 0.7, -1).gather(-1, response[..., None])[..., 0]

        def values(model):
            hidden = model.model(input_ids=sequences).last_hidden_state
            return model.score(hidden)[:, PPO_PROMPT_TOKENS - 1:-1, 0].float()

        yield "reference forward"
        with torch.no_grad():
            reference_logprobs = logprobs(reference)
        yield "reward forward"
        with torch.no_grad():
            scores = reward(input_ids=sequences).logits[:, 0].float()
        yield "value forward"
        with torch.no_grad():
            old_values = values(value)
        yield "policy and value forward"
        policy.train()
        policy.config.use_cache = False
        new_logprobs = logprobs(policy)
        advantages = (scores[:, None] - old_values).detach()
        policy_loss = -(torch.exp(new_logprobs - reference_logprobs) * advantages).mean()
        value_loss = ((values(value) - scores[:, None]) ** 2).mean()
        yield "backward"
        (policy_loss + 0.1 * value_loss).backward()

    outcome = measure(steps())
    size = f"{info['parameters'] / 1e9:.2f}B" if "parameters" in info else "3B-shaped"
    sampled = f"{info['tokens']} tokens" if "tokens" in info else "not sampled"
    return (f"{outcome}; 4 models (policy, reference, reward, value) of {size} parameters each, "
            f"bf16, gradient checkpointing, {PPO_PROMPTS} x ({PPO_PROMPT_TOKENS} prompt + "
            f"{PPO_NEW_TOKENS} new; {sampled}), generate + 3 fwd + policy/value fwd+bwd")


# ---- vLLM generation and judging (GPU, where vLLM is installed) ----------------------------


def teach_end_of_turn(source: Path, target: Path, steps: int = 150) -> None:
    """A copy of the tiny model taught (a plain torch loop on CPU, seconds) to answer every
    question with ``ANSWER<|im_end|>`` and to go on with another user turn, so a backend that
    does not stop at the end of turn writes "user" into its response."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    questions = [f"What do you think about {topic}?" for topic in TOPICS]
    encoded = [tokenizer.apply_chat_template(
        [{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER},
         {"role": "user", "content": questions[(i + 1) % len(questions)]}],
        tokenize=True, return_dict=False) for i, q in enumerate(questions)]
    width = max(len(row) for row in encoded)
    ids = torch.tensor([list(row) + [tokenizer.eos_token_id] * (width - len(row))
                        for row in encoded])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in encoded])
    labels = ids.masked_fill(mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def check_vllm(work: Path, cpu: bool) -> str:
    import polars as pl

    from value_drifts.backends.cache import JudgeCache
    from value_drifts.generation.sampling import (
        SamplingSettings,
        VLLMCheckpoint,
        engine_groups,
        generate_vllm,
        generate_vllm_series,
    )
    from value_drifts.judge.run import judge_generations
    from value_drifts.judge.vllm_backend import vllm_judge

    taught = work / "model_end_of_turn"
    teach_end_of_turn(work / "model", taught)
    n = 16
    questions = pl.DataFrame({
        "question_id": [f"q{i}" for i in range(n)], "category": ["Benchmark"] * n,
        "question": [f"What do you think about {TOPICS[i % 8]}?" for i in range(n)]})
    settings = SamplingSettings(samples=2, temperature=0.7, max_new_tokens=48, seed=0,
                                prompt_style="chat")
    engine = {"gpu_memory_utilization": 0.15, "enforce_eager": True}
    start = time.perf_counter()
    table = generate_vllm(str(taught), questions, settings, 1, engine)
    generated = time.perf_counter() - start
    responses = table["response"].to_list()
    runaway = [r for r in responses if IM_START in r or "user" in r or "assistant" in r
               or len(r) > len(ANSWER) + 10]
    if len(responses) != n * settings.samples or runaway:
        raise CheckFailed(f"{len(responses)} responses, {len(runaway)} not stopped at "
                          f"{IM_END}: {runaway[:1]!r}")
    # one engine for a run's checkpoints (generation.one_job_per_run): the taught model, a
    # copy of its folder holding the untaught weights (so vLLM may reload in place), the
    # taught again
    untaught = work / "model_untaught_same_files"
    shutil.copytree(taught, untaught, dirs_exist_ok=True)
    shutil.copyfile(work / "model" / "model.safetensors", untaught / "model.safetensors")
    series_checkpoints = [VLLMCheckpoint(str(path), settings) for path in (taught, untaught, taught)]
    groups = engine_groups(series_checkpoints)
    start = time.perf_counter()
    series = list(generate_vllm_series(series_checkpoints, questions, 1, engine))
    in_series = time.perf_counter() - start
    first, other, again = (frame["response"].to_list() for frame in series)
    if groups != [[0, 1, 2]] or other == first or [
            r for r in first + again if IM_START in r or len(r) > len(ANSWER) + 10]:
        raise CheckFailed(f"one engine for three checkpoints: groups {groups}, the reloaded "
                          f"untaught weights {'changed' if other != first else 'did not change'}"
                          f" the answers, taught again: {again[:1]!r}")
    same = sum(a == b for a, b in zip(first + again, responses * 2, strict=True))
    template = "Q: {question}\nA: {response}\nTopic: {topic}\nStance:"
    judge = vllm_judge(str(taught), JudgeCache(work / "judge_cache.sqlite"), top_logprobs=20,
                       engine_args=engine)
    start = time.perf_counter()
    judged, counts = judge_generations(table, {"Benchmark": "the death penalty"}, template, judge)
    judging = time.perf_counter() - start
    if judged.height != len(responses) or counts["judged"] != len(responses):
        raise CheckFailed(f"judged {counts['judged']} of {len(responses)} responses")
    return (f"generation {len(responses)} responses in {generated:.1f}s (engine start "
            f"included), all stopped at {IM_END}; one engine for 3 checkpoints "
            f"{in_series:.1f}s, reloads took effect, {same}/{2 * len(responses)} answers of "
            f"the taught weights as a fresh engine's; judging {counts['judged']} in "
            f"{judging:.1f}s (engine start included), {counts['unreadable']} unreadable")


CHILD_CHECKS = {
    "tiny_model": check_tiny_model,
    "sft_zero2_gc_kill_resume": check_sft,
    "sft_end_of_turn": check_sft_end_of_turn,
    "dpo_zero2": check_dpo,
    "reward_model": check_reward_model,
    "ppo_zero3": check_ppo,
    "peak_memory_reward_3b": check_peak_memory_reward,
    "peak_memory_ppo_3b": check_peak_memory_ppo,
    "vllm_generate_judge": check_vllm,
}


def child_main(check: str, work: Path, cpu: bool) -> None:
    """In the child process: run one check, write its outcome to ``<work>/<check>.json``."""
    start = time.perf_counter()
    try:
        outcome = {"status": "ok", "detail": CHILD_CHECKS[check](work, cpu)}
    except CheckFailed as failure:
        outcome = {"status": "FAILED", "detail": one_line(failure)}
    except BaseException as error:  # noqa: BLE001 - reported on the check's line
        outcome = {"status": "FAILED", "detail": one_line(f"{type(error).__name__}: {error}")}
        import traceback

        traceback.print_exc()
    outcome["seconds"] = time.perf_counter() - start
    (work / f"{check}.json").write_text(json.dumps(outcome))
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown (vLLM's engine, NCCL): the outcome is written


# ---- the parent: one line per check ------------------------------------------------------


def child_environment(cpu: bool) -> dict[str, str]:
    try:
        from value_drifts.training.launch import GPU_JOBS_ON_CPU
    except ImportError:  # the package's own needs missing (jsonschema): training is skipped
        GPU_JOBS_ON_CPU = "VALUE_DRIFTS_GPU_JOBS_ON_CPU"  # noqa: N806

    env = dict(os.environ)
    # the launched training processes import the package from this copy of the repo
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if cpu:
        env[GPU_JOBS_ON_CPU] = "1"  # the GPU path on CPU processes, on purpose
        env["CUDA_VISIBLE_DEVICES"] = ""  # CPU processes also on a machine with GPUs
    return env


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def stop(process: subprocess.Popen) -> None:
    """End a timed-out check: its process group gets SIGTERM (accelerate's agent then stops
    its ranks, which run in sessions of their own), then every process that was below it
    SIGKILL, by id."""
    below = descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    for pid in [process.pid, *below]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def run_child(check: str, work: Path, cpu: bool, limit_s: float) -> Result:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", check,
               "--work", str(work)] + (["--cpu"] if cpu else [])
    log_path = work / f"{check}.log"
    outcome_path = work / f"{check}.json"
    outcome_path.unlink(missing_ok=True)  # a reused --work: never read an older outcome
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=child_environment(cpu), start_new_session=True)
        try:
            process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            stop(process)
            return Result("FAILED", f"timed out after {limit_s:.0f}s ({log_path})",
                          time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if not outcome_path.exists():
        return Result("FAILED", f"the check's process exited {process.returncode}: "
                      f"{error_summary(log_path.read_text(errors='replace'))}", seconds)
    outcome = json.loads(outcome_path.read_text())
    return Result(outcome["status"], outcome["detail"], seconds)


def skip_reason(check: str, results: dict[str, Result], cpu: bool) -> str | None:
    if cpu and check in GPU_ONLY:
        return "--cpu: GPU only"
    missing = [name for name in PACKAGES.get(check, ()) if not installed(name)]
    if missing:
        return f"{', '.join(missing)} not installed"
    launcher = Path(sys.executable).with_name("accelerate")  # what run_training starts
    if check in TRAINING and not launcher.exists():
        return f"no accelerate launcher at {launcher}"
    for need in NEEDS.get(check, ()):
        if need in results and results[need].status != "ok":
            return f"needs {need}, which did not pass"
    return None


def with_needs(selected: list[str]) -> list[str]:
    """The selected checks and those whose output they read, in CHECKS order."""
    wanted = set(selected)
    changed = True
    while changed:
        before = len(wanted)
        wanted |= {need for check in list(wanted) for need in NEEDS.get(check, ())}
        changed = len(wanted) != before
    return [check for check in CHECKS if check in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true",
                        help="run the training checks on 2 CPU processes (fp32); skip the "
                             "memory and vLLM checks")
    parser.add_argument("--only", action="append", choices=CHECKS, metavar="CHECK",
                        help=f"run this check (and what it needs); repeatable. {CHECKS}")
    parser.add_argument("--work", help="work directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--logs", help="write every check's log to DIR/gpu_smoke.log")
    parser.add_argument("--budget-s", type=float,
                        help=f"wall-time budget (default {GPU_BUDGET_S} s, --cpu {CPU_BUDGET_S})")
    parser.add_argument("--child", choices=list(CHILD_CHECKS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child, Path(args.work), args.cpu)
        return 0

    started = time.perf_counter()
    try:
        import torch
    except ImportError:
        sys.exit(f"{PREFIX}: torch is not installed")
    if not args.cpu and not torch.cuda.is_available():
        sys.exit(f"{PREFIX}: no CUDA GPU visible (torch {torch.__version__}, "
                 f"torch.cuda.is_available() is False); run it on a GPU machine, or with "
                 f"--cpu to run the training checks on CPU processes")
    print(machine_line(args.cpu), flush=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_smoke_"))
    work.mkdir(parents=True, exist_ok=True)
    budget = args.budget_s or (CPU_BUDGET_S if args.cpu else GPU_BUDGET_S)
    results: dict[str, Result] = {}
    for check in with_needs(args.only) if args.only else CHECKS:
        reason = skip_reason(check, results, args.cpu)
        left = budget - (time.perf_counter() - started)
        if reason is None and left < 20:
            reason = f"the run's {budget:.0f}s budget was spent before it started"
        if reason is not None:
            results[check] = Result("skipped", reason)
        else:
            limit = LIMIT_S[check] * (CPU_LIMIT_FACTOR if args.cpu else 1)
            results[check] = run_child(check, work, args.cpu, min(limit, left))
        print(results[check].line(check), flush=True)

    failed = [check for check, result in results.items() if result.status == "FAILED"]
    if args.logs:
        logs = Path(args.logs)
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "gpu_smoke.log", "w") as combined:
            for log in sorted(work.glob("*.log"), key=lambda p: p.stat().st_mtime):
                combined.write(f"===== {log.name}\n{log.read_text(errors='replace')}\n")
    kept = args.keep or args.work or failed
    if not kept:
        shutil.rmtree(work, ignore_errors=True)
    counts = {status: sum(r.status == status for r in results.values())
              for status in ("ok", "FAILED", "skipped")}
    print(f"{PREFIX} total: {time.perf_counter() - started:.1f}s wall; {counts['ok']} ok, "
          f"{counts['FAILED']} failed, {counts['skipped']} skipped"
          + (f"; logs in {work}" if kept else ""), flush=True)
    return 1 if failed else 0


# accelerate and vLLM's workers may re-import this file: run only in the main process.
if __name__ == "__main__":
    sys.exit(main())
