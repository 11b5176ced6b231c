"""Sample responses to the evaluation questions from one checkpoint.

Both backends (transformers on CPU, vLLM on GPU) write the same table: one row per
(question, sample) with the response and the sampling settings used.
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from value_drifts.core.chat_template import stop_token_ids
from value_drifts.core.checkpoints import (
    has_tokenizer,
    incomplete_reason,
    is_adapter_folder,
    tokenizer_problem,
)
from value_drifts.core.config import schema_default
from value_drifts.core.integrity import tensor_layout


@dataclass(frozen=True)
class SamplingSettings:
    samples: int
    temperature: float
    max_new_tokens: int
    seed: int
    prompt_style: str  # "base" or "chat"
    base_prompt_suffix: str = schema_default("generation", "base_prompt_suffix")


def build_prompt(question: str, settings: SamplingSettings, tokenizer) -> str:
    """Base models see the question plus a suffix; chat models their chat template."""
    if settings.prompt_style == "base":
        return question + settings.base_prompt_suffix
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


def sample_seed(settings: SamplingSettings, question_number: int, sample: int) -> int:
    """The seed of one (question, sample): ``seed + question_number * samples + sample``,
    the stream vLLM gives sample k of request i (see ``generate_vllm``). Every answer has
    its own random stream, so answers do not depend on batch size or batch order."""
    return settings.seed + question_number * settings.samples + sample


class _PerRowSampler:
    """A transformers logits processor that draws each row's next token from that row's
    own ``torch.Generator`` (softmax at ``temperature``; argmax at 0) and leaves only that
    token possible, so greedy decoding then takes it. transformers' own sampling draws
    every row from one global stream (``torch.multinomial`` in ``GenerationMixin._sample``),
    which makes an answer depend on its batch."""

    def __init__(self, generators, temperature: float):
        self.generators = generators
        self.temperature = temperature

    def __call__(self, input_ids, scores):
        import torch

        if self.temperature > 0:
            probs = torch.softmax(scores.float() / self.temperature, dim=-1)
            tokens = torch.cat([
                torch.multinomial(probs[row], 1, generator=generator)
                for row, generator in enumerate(self.generators)
            ])
        else:
            tokens = scores.argmax(dim=-1)
        chosen = torch.full_like(scores, float("-inf"))
        chosen.scatter_(1, tokens.unsqueeze(1), 0.0)
        return chosen


def adapter_base(model_path: str) -> str | None:
    """The base model of a PEFT adapter folder (its ``adapter_config.json``'s
    ``base_model_name_or_path``), or None when ``model_path`` is a full model."""
    if not is_adapter_folder(Path(model_path)):
        return None
    return json.loads((Path(model_path) / "adapter_config.json").read_text())[
        "base_model_name_or_path"]


def load_causal_lm(model_path: str, revision: str | None = None):
    """A causal LM in float32 for CPU generation: a full model (a folder, or a hub id at
    ``revision``), or a PEFT adapter folder loaded onto its base model and merged
    (PEFT's ``PeftModel.from_pretrained`` then ``merge_and_unload``)."""
    import torch
    from transformers import AutoModelForCausalLM

    base = adapter_base(model_path)
    if base is None:
        return AutoModelForCausalLM.from_pretrained(
            model_path, revision=revision, dtype=torch.float32)
    from peft import PeftModel  # only adapter checkpoints need it

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return PeftModel.from_pretrained(model, model_path).merge_and_unload()


def load_tokenizer(source: str, revision: str | None = None, **kwargs):
    """The tokenizer of ``source`` (a folder or hub id); an adapter folder without one
    gives its base model's. Raises ValueError naming the file when a folder's tokenizer
    files are cut short (``core.checkpoints.tokenizer_problem``)."""
    from transformers import AutoTokenizer

    if Path(source).is_dir() and not has_tokenizer(source):
        source = adapter_base(source) or source
    if Path(source).is_dir() and (problem := tokenizer_problem(Path(source))):
        raise ValueError(f"tokenizer of {source}: {problem}")
    return AutoTokenizer.from_pretrained(source, revision=revision, **kwargs)


def generate_transformers(
    model_path: str,
    questions: pl.DataFrame,
    settings: SamplingSettings,
    batch_size: int = 8,
    threads: int = 1,
    tokenizer_path: str | None = None,
    revision: str | None = None,
) -> pl.DataFrame:
    """Sample ``settings.samples`` responses per question with transformers.

    Returns one row per (question, sample), in question order. Each answer is drawn from
    its own random stream (``sample_seed``): the same settings give the same answers at
    any ``batch_size`` (up to float rounding of padded batches, which on CPU did not
    change a token in tests/unit/generation/test_generation_seeding.py). The tokenizer comes from
    ``tokenizer_path`` when given (a trace's checkpoint without one), else the model's
    folder; a PEFT adapter folder is loaded onto its base (``load_causal_lm``)."""
    import torch
    from transformers import LogitsProcessorList

    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(tokenizer_path or model_path,
                               revision=None if tokenizer_path else revision,
                               padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_causal_lm(model_path, revision).eval()
    # stop where the chat template ends a turn, not only at the generation config's eos
    # (a base model's, or a trace's checkpoint that kept it), as the vLLM backend does
    stops = stop_token_ids(tokenizer, model.generation_config)
    jobs = [
        (number, row, sample)
        for number, row in enumerate(questions.iter_rows(named=True))
        for sample in range(settings.samples)
    ]
    rows = []
    with tqdm(total=len(jobs), desc="generating", unit="response") as progress:
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start : start + batch_size]
            generators = [
                torch.Generator().manual_seed(sample_seed(settings, number, sample))
                for number, _, sample in batch
            ]
            prompts = [build_prompt(row["question"], settings, tokenizer) for _, row, _ in batch]
            encoded = tokenizer(
                prompts,
                return_tensors="pt",
                padding=True,
                # A chat template writes its own BOS; a base prompt gets the tokenizer's.
                add_special_tokens=settings.prompt_style == "base",
            )
            with torch.inference_mode():
                output = model.generate(
                    **encoded,
                    do_sample=False,  # the per-row sampler has drawn the token already
                    logits_processor=LogitsProcessorList(
                        [_PerRowSampler(generators, settings.temperature)]
                    ),
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    max_new_tokens=settings.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=stops,
                )
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for (_, row, sample), text in zip(batch, texts, strict=True):
                rows.append(
                    {
                        "question_id": row["question_id"],
                        "category": row["category"],
                        "question": row["question"],
                        "sample": sample,
                        "response": text.strip(),
                    }
                )
            progress.update(len(batch))
    return with_settings(pl.DataFrame(rows), settings, backend="transformers")


def prompt_token_ids(question: str, settings: SamplingSettings, tokenizer) -> list[int]:
    """The prompt as token ids, tokenised as the transformers backend does: a chat
    template writes its own BOS, a base prompt gets the tokenizer's special tokens."""
    prompt = build_prompt(question, settings, tokenizer)
    return tokenizer(prompt, add_special_tokens=settings.prompt_style == "base")["input_ids"]


def _generation_config(model_path: str, revision: str | None = None):
    """The checkpoint's generation config (None without one)."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path, revision=revision)
    except (OSError, ValueError):
        return None


def vllm_max_model_len(longest_prompt: int, settings: SamplingSettings) -> int:
    """The context a generation job's vLLM engine needs: its longest prompt (in tokens)
    plus ``max_new_tokens``. Passed as vLLM's ``max_model_len`` (a configured
    ``generation.vllm_engine_args.max_model_len`` wins), so the engine sizes its KV cache
    and scheduling for what it samples, not for the model's whole context (131,072 tokens
    for Llama 3.1). Every prompt and answer fit, so no answer changes: it is decided in the
    job, never recorded with the settings."""
    return longest_prompt + settings.max_new_tokens


@dataclass(frozen=True)
class VLLMCheckpoint:
    """One checkpoint a vLLM engine samples from: its folder (or hub id), sampling
    settings, tokenizer source (a trace's checkpoint without one) and hub revision."""

    model_path: str
    settings: SamplingSettings
    tokenizer_path: str | None = None
    revision: str | None = None


# The files of a checkpoint folder that decide how vLLM starts on it (architecture, dtype,
# vocabulary, the eos it stops at): checkpoints equal in all of them can share an engine.
ENGINE_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "tokenizer.model",
    "vocab.json", "merges.txt",
)


def engine_key(checkpoint: VLLMCheckpoint) -> str | None:
    """What an engine started on ``checkpoint`` shares with the next: the sha256 of its
    folder's ``ENGINE_FILES`` (and of its tokenizer folder's). None where the checkpoint
    shares an engine with none: a hub id or revision (vLLM reloads from a folder), a PEFT
    adapter."""
    folders = [Path(checkpoint.model_path)]
    if checkpoint.tokenizer_path is not None:
        folders.append(Path(checkpoint.tokenizer_path))
    if (checkpoint.revision is not None or not all(folder.is_dir() for folder in folders)
            or adapter_base(checkpoint.model_path) is not None):
        return None
    digest = hashlib.sha256()
    for folder in folders:
        for name in ENGINE_FILES:
            path = folder / name
            digest.update(f"{len(folders)}:{name}:".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"-")
    return digest.hexdigest()


def engine_groups(checkpoints: Sequence[VLLMCheckpoint]) -> list[list[int]]:
    """Indices of ``checkpoints`` in runs of consecutive ones that one vLLM engine
    samples: equal ``engine_key`` (never None). Order is kept; a checkpoint whose key
    differs from the one before starts a new engine."""
    groups: list[list[int]] = []
    previous: str | None = None
    for index, checkpoint in enumerate(checkpoints):
        key = engine_key(checkpoint)
        if groups and key is not None and key == previous:
            groups[-1].append(index)
        else:
            groups.append([index])
        previous = key
    return groups


def generate_vllm(
    model_path: str,
    questions: pl.DataFrame,
    settings: SamplingSettings,
    tensor_parallel_size: int = 1,
    engine_args: Mapping[str, Any] | None = None,
    tokenizer_path: str | None = None,
    revision: str | None = None,
) -> pl.DataFrame:
    """Sample ``settings.samples`` responses per question from one checkpoint with vLLM's
    offline engine (``generate_vllm_series`` of that one checkpoint).

    Call it under ``if __name__ == "__main__":``: vLLM's workers may re-import the caller.
    """
    checkpoint = VLLMCheckpoint(model_path, settings, tokenizer_path, revision)
    return list(generate_vllm_series([checkpoint], questions, tensor_parallel_size,
                                     engine_args))[0]


def generate_vllm_series(
    checkpoints: Sequence[VLLMCheckpoint],
    questions: pl.DataFrame,
    tensor_parallel_size: int = 1,
    engine_args: Mapping[str, Any] | None = None,
) -> Iterator[pl.DataFrame]:
    """Sample ``settings.samples`` responses per question from each checkpoint in turn
    with vLLM's offline engine, yielding one table per checkpoint, in order.

    One engine samples each run of checkpoints with equal ``engine_key`` (a training
    run's checkpoints): it starts on the first (weights load, compilation, CUDA graph
    capture, KV-cache profiling) and loads each later one's weights in place (vLLM's
    ``reload_weights`` worker call, the path vLLM keeps for RL weight updates), then drops
    its prefix cache, which holds the previous weights' keys and values. A reload that
    fails starts a fresh engine on that checkpoint instead. The answers are the same as a
    fresh engine's per checkpoint (tests/unit/generation/test_vllm_cpu.py): every request
    is seeded on its own.

    One request per question with ``SamplingParams(n=samples)``, seeded per question so a
    question's samples do not depend on what else is in the batch. vLLM gives sample k of a
    request seed + k (vllm/v1/engine/parallel_sampling.py), so question number i gets
    ``seed + i * samples``: every (question, sample) has its own random stream. (With
    ``seed + i``, sample k+1 of question i reused sample k of question i+1's stream; the
    real engine showed it, tests/unit/generation/test_vllm_cpu.py.)

    Call it under ``if __name__ == "__main__":``: vLLM's workers may re-import the caller.
    """
    for checkpoint in checkpoints:
        if adapter_base(checkpoint.model_path) is not None:
            raise ValueError(
                f"{checkpoint.model_path} is a PEFT adapter: the vLLM backend loads full "
                "models; merge it (PEFT's merge_and_unload) or use generation.backend: "
                "transformers")
    for group in engine_groups(checkpoints):
        # every prompt first: the longest sizes the engine (vllm_max_model_len); the
        # checkpoints of a group share their tokenizer files, so equal settings share prompts
        prompted: list[tuple] = []
        for index in group:
            same = prompted and checkpoints[index].settings == checkpoints[index - 1].settings
            prompted.append(prompted[-1] if same else _vllm_prompts(checkpoints[index], questions))
        max_model_len = max(
            vllm_max_model_len(longest, checkpoints[index].settings)
            for index, (_, _, _, longest) in zip(group, prompted, strict=True)
        )
        llm, loaded = None, None
        try:
            for index, prompts in zip(group, prompted, strict=True):
                checkpoint = checkpoints[index]
                # the tensors now loaded, read before the caller may delete the weights
                layout = tensor_layout(Path(checkpoint.model_path))
                if llm is not None and not _reload_weights(llm, loaded, checkpoint.model_path,
                                                           layout):
                    _stop_engine(llm)
                    llm = None
                    gc.collect()  # the engine's memory, before another starts
                if llm is None:
                    llm = _start_engine(checkpoint, max_model_len, tensor_parallel_size,
                                        engine_args)
                loaded = layout
                yield _sample_vllm(llm, checkpoint, *prompts[:3])
        finally:
            _stop_engine(llm)


def _vllm_prompts(checkpoint: VLLMCheckpoint, questions: pl.DataFrame):
    """(tokenizer, question rows, vLLM prompts as token ids, longest prompt in tokens),
    with the tokenizer vLLM would load (the same source and revision)."""
    tokenizer = load_tokenizer(
        checkpoint.tokenizer_path or checkpoint.model_path,
        revision=None if checkpoint.tokenizer_path else checkpoint.revision)
    rows = list(questions.iter_rows(named=True))
    prompts = [
        {"prompt_token_ids": prompt_token_ids(row["question"], checkpoint.settings, tokenizer)}
        for row in rows
    ]
    longest = max((len(prompt["prompt_token_ids"]) for prompt in prompts), default=0)
    return tokenizer, rows, prompts, longest


def _start_engine(checkpoint: VLLMCheckpoint, max_model_len: int, tensor_parallel_size: int,
                  engine_args: Mapping[str, Any] | None):
    from vllm import LLM  # lazily: vLLM is only in the generate env on GPUs

    optional = {"tokenizer": checkpoint.tokenizer_path, "revision": checkpoint.revision}
    return LLM(
        model=checkpoint.model_path,
        tensor_parallel_size=tensor_parallel_size,
        seed=checkpoint.settings.seed,
        **{key: value for key, value in optional.items() if value is not None},
        **{"dtype": "auto", "max_model_len": max_model_len, **(engine_args or {})},
    )


def reload_problem(loaded: Mapping[str, Any] | None, model_path: str,
                   layout: Mapping[str, Any] | None) -> str | None:
    """Why an engine holding weights of tensor layout ``loaded`` (``tensor_layout``: names,
    dtypes, shapes) must not reload ``model_path``'s (of ``layout``) in place, or None.
    vLLM's reload only warns about weights it did not find (a fresh engine refuses them),
    so a checkpoint whose weights are incomplete, or whose tensors differ from the loaded
    ones, gets a fresh engine instead of a silent mix of two checkpoints. ``loaded`` is
    read when those weights were loaded: they may be deleted since."""
    if reason := incomplete_reason(Path(model_path)):
        return reason
    if layout is None or loaded is None:
        return "its weights are not all readable safetensors files"
    if layout != loaded:
        return "its tensors differ in name, dtype or shape from those loaded"
    return None


def _reload_weights(llm, loaded: Mapping[str, Any] | None, model_path: str,
                    layout: Mapping[str, Any] | None) -> bool:
    """Load ``model_path``'s weights into the engine holding weights of layout ``loaded``
    (every worker, vLLM's ``reload_weights``) and drop the prefix cache; False (with the
    reason printed) where that cannot be done safely (``reload_problem``) or vLLM could
    not."""
    problem = reload_problem(loaded, model_path, layout)
    try:
        if problem is None:
            llm.collective_rpc("reload_weights", kwargs={"weights_path": model_path})
            # the cached prompts' keys and values are the old weights': every checkpoint
            # asks the same questions, so a cache that stays would answer from them
            if not llm.reset_prefix_cache():
                problem = "vLLM did not drop its prefix cache"
    except Exception as error:  # noqa: BLE001 - any failure: a fresh engine samples instead
        problem = f"{type(error).__name__}: {error}"
    if problem is not None:
        print(f"vLLM does not reload the weights of {model_path} in place ({problem}); "
              "starting a fresh engine on it")
        return False
    print(f"vLLM reloaded the weights of {model_path} in place")
    return True


def _stop_engine(llm) -> None:
    """Shut a vLLM engine's processes down (the caller drops its reference), so its GPU
    memory is free before another engine starts."""
    if llm is None:
        return
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


def _sample_vllm(llm, checkpoint: VLLMCheckpoint, tokenizer, rows, prompts) -> pl.DataFrame:
    """Sample ``checkpoint``'s answers with the engine holding its weights."""
    from vllm import SamplingParams

    settings = checkpoint.settings
    # stop where the chat template ends a turn, not only at the tokenizer's eos
    stops = stop_token_ids(tokenizer,
                           _generation_config(checkpoint.model_path, checkpoint.revision))
    params = [
        SamplingParams(
            n=settings.samples,
            temperature=settings.temperature,
            top_p=1.0,
            max_tokens=settings.max_new_tokens,
            seed=sample_seed(settings, number, 0),
            skip_special_tokens=True,
            stop_token_ids=stops,
        )
        for number in range(len(rows))
    ]
    outputs = llm.generate(prompts, params)
    if len(outputs) != len(rows):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(rows)} prompts")
    records = []
    for row, output in zip(rows, outputs, strict=True):
        completions = sorted(output.outputs, key=lambda completion: completion.index)
        if len(completions) != settings.samples:
            raise RuntimeError(
                f"vLLM returned {len(completions)} samples for question {row['question_id']},"
                f" expected {settings.samples}"
            )
        records += [
            {
                "question_id": row["question_id"],
                "category": row["category"],
                "question": row["question"],
                "sample": sample,
                "response": completion.text.strip(),
            }
            for sample, completion in enumerate(completions)
        ]
    return with_settings(pl.DataFrame(records), settings, backend="vllm")


def with_settings(frame: pl.DataFrame, settings: SamplingSettings, backend: str) -> pl.DataFrame:
    """Record the sampling settings in every row, so a table says how it was made."""
    recorded = {k: v for k, v in asdict(settings).items() if k != "base_prompt_suffix"}
    return frame.with_columns(
        pl.lit(backend).alias("backend"),
        *[pl.lit(v).alias(k) for k, v in recorded.items()],
    )
