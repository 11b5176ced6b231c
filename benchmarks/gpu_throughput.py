"""GPU throughput of the two heavy stages, on a machine with CUDA GPUs.

1. Generation: our vLLM backend (``value_drifts.generation.sampling.generate_vllm``: one request
   per question, ``SamplingParams(n=samples)``) against bare vLLM given the same prompts
   as plain strings in one ``LLM.generate`` call; prints generated tokens/s and
   responses/s of both, so the backend's overhead shows, and the bare engine's start-up
   (weights load, compile, CUDA graph capture) beside its generation time: the share of a
   one-checkpoint job that start-up takes, and what ~1,800 such jobs on the paper grid
   pay for it (``--enforce-eager`` measures the start without graph capture), and the
   in-place reload of a checkpoint's weights that ``generation.one_job_per_run`` pays
   instead.
2. Training: a short SFT of the same model under ``accelerate launch`` + DeepSpeed
   (``config/accelerate/zero2.yaml`` or ``zero3.yaml``) on all visible GPUs, through the
   workflow's own launcher (``value_drifts.training.launch``); prints samples/s and
   tokens/s (padded to ``--max-length``, an upper bound) from the trainer's runtime.

Usage (in the generate and train environments, envs/*.yaml; models are local dirs):

    python benchmarks/gpu_throughput.py generate --model /path/to/Qwen3-4B-Base \\
        --questions 550 --samples 5 --max-new-tokens 256 --tensor-parallel-size 1
    python benchmarks/gpu_throughput.py train --model /path/to/Llama-3.2-3B \\
        --steps 10 --global-batch 128 --per-device-batch 4 --max-length 2048 --zero 2

Without CUDA it stops with a clear message instead of crawling on CPU.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def require_cuda() -> int:
    """The number of visible CUDA GPUs; exits with a message when there are none."""
    try:
        import torch
    except ImportError:
        sys.exit("gpu_throughput: torch is not installed; use the generate/train environment")
    if not torch.cuda.is_available():
        sys.exit(
            "gpu_throughput: no CUDA GPU visible (torch.cuda.is_available() is False); "
            "run this on a GPU node, e.g. inside an `srun --gpus=1` allocation"
        )
    return torch.cuda.device_count()


def _questions(n: int):
    import polars as pl

    topics = ["abortion rights", "immigration", "the death penalty", "climate change action"]
    return pl.DataFrame(
        {
            "question_id": [f"q{i}" for i in range(n)],
            "category": ["Benchmark"] * n,
            "question": [f"What do you think about {topics[i % len(topics)]}? ({i})" for i in range(n)],
        }
    )


# Generation jobs of `snakemake -n --configfile config/paper.yaml` (one per checkpoint;
# docs/benchmarks.md, the paper's dry run): each starts its own engine.
PAPER_GENERATION_JOBS = 1_800


def benchmark_generation(args) -> None:
    from vllm import LLM, SamplingParams

    from value_drifts.generation.sampling import SamplingSettings, build_prompt, generate_vllm

    settings = SamplingSettings(
        samples=args.samples, temperature=0.7, max_new_tokens=args.max_new_tokens, seed=0,
        prompt_style=args.prompt_style,
    )
    questions = _questions(args.questions)
    engine = {"gpu_memory_utilization": 0.85}

    start = time.perf_counter()
    table = generate_vllm(args.model, questions, settings, args.tensor_parallel_size, engine)
    ours = time.perf_counter() - start  # includes engine start-up, as in a workflow job

    if args.enforce_eager:
        engine["enforce_eager"] = True  # no CUDA graph capture: faster start, slower decode
    start = time.perf_counter()
    llm = LLM(model=args.model, tensor_parallel_size=args.tensor_parallel_size, seed=0, **engine)
    startup = time.perf_counter() - start  # weights load, compile, graph capture, KV cache
    tokenizer = llm.get_tokenizer()
    prompts = [build_prompt(q, settings, tokenizer) for q in questions["question"]]
    params = SamplingParams(n=args.samples, temperature=0.7, max_tokens=args.max_new_tokens, seed=0)
    start = time.perf_counter()
    outputs = llm.generate(prompts, params)
    bare = time.perf_counter() - start  # generation only
    bare_tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    our_tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in table["response"])
    print(f"ours (incl. engine start): {table.height} responses, {our_tokens} tokens in {ours:.1f} s"
          f" = {our_tokens / ours:.0f} tokens/s, {table.height / ours:.1f} responses/s")
    n_bare = sum(len(o.outputs) for o in outputs)
    print(f"bare vLLM (generate only): {n_bare} responses, {bare_tokens} tokens in {bare:.1f} s"
          f" = {bare_tokens / bare:.0f} tokens/s, {n_bare / bare:.1f} responses/s")
    share = startup / (startup + bare)
    print(f"engine start-up {startup:.1f} s (enforce_eager={args.enforce_eager}) beside "
          f"{bare:.1f} s of generation: {share:.0%} of a one-checkpoint job; "
          f"{PAPER_GENERATION_JOBS} such jobs on the paper grid pay "
          f"{PAPER_GENERATION_JOBS * startup / 3600:.1f} GPU-hours of start-up")
    # what generation.one_job_per_run pays per later checkpoint instead of a start-up
    start = time.perf_counter()
    llm.collective_rpc("reload_weights", kwargs={"weights_path": args.model})
    llm.reset_prefix_cache()
    reload = time.perf_counter() - start
    print(f"in-place reload of the weights {reload:.1f} s: one job per run pays this per "
          f"later checkpoint instead of {startup:.1f} s of start-up")


def benchmark_training(args, gpus: int) -> None:
    import polars as pl

    from value_drifts.core import cluster_requests as res
    from value_drifts.training.common import TrainerSettings
    from value_drifts.training.launch import TrainingJob, run_training

    work = Path(tempfile.mkdtemp(prefix="vd_bench_"))
    n = args.steps * args.global_batch
    rows = [{"messages": [{"role": "user", "content": f"Tell me about topic {i}."},
                          {"role": "assistant", "content": "Here is a balanced answer. " * 40}]}
            for i in range(n)]
    pl.DataFrame(rows).write_parquet(work / "train.parquet")
    settings = TrainerSettings(
        model_path=args.model, output_dir=str(work / "run"), learning_rate=2e-5,
        global_batch_size=args.global_batch, per_device_batch_size=args.per_device_batch,
        epochs=1, save_steps=10**9, max_length=args.max_length, warmup_ratio=0.0,
        gradient_checkpointing=True,
    )
    job = TrainingJob(task="sft", settings=settings, data=str(work / "train.parquet"))
    config = str(REPO / res.ACCELERATE_CONFIGS[args.zero])
    start = time.perf_counter()
    run_training(job, gpus, config)
    elapsed = time.perf_counter() - start  # includes launch, model load and the final save
    print(f"SFT on {gpus} GPU(s), ZeRO-{args.zero}: {n} samples in {elapsed:.1f} s"
          f" = {n / elapsed:.2f} samples/s, <= {n * args.max_length / elapsed:.0f} tokens/s")
    shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--model", required=True)
    gen.add_argument("--questions", type=int, default=550)
    gen.add_argument("--samples", type=int, default=5)
    gen.add_argument("--max-new-tokens", type=int, default=256)
    gen.add_argument("--tensor-parallel-size", type=int, default=1)
    gen.add_argument("--prompt-style", choices=["base", "chat"], default="base")
    gen.add_argument("--enforce-eager", action="store_true",
                     help="start the bare engine without CUDA graphs (compare start-up)")
    train = sub.add_parser("train")
    train.add_argument("--model", required=True)
    train.add_argument("--steps", type=int, default=10)
    train.add_argument("--global-batch", type=int, default=128)
    train.add_argument("--per-device-batch", type=int, default=4)
    train.add_argument("--max-length", type=int, default=2048)
    train.add_argument("--zero", type=int, choices=[2, 3], default=2)
    args = parser.parse_args(argv)
    gpus = require_cuda()
    if args.stage == "generate":
        benchmark_generation(args)
    else:
        benchmark_training(args, gpus)


# vLLM's workers and accelerate may re-import this file: run only in the main process.
if __name__ == "__main__":
    main()
