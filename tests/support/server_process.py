"""One server process on a free loopback port, for tests: start, wait until ready, stop by PID.

Standard library only, so modules that run inside other virtual environments (the vLLM
one) can import it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """``with Subclass(...) as server: server.base_url``; a subclass says its ``command()``.

    Ready means ``GET /v1/models`` answers 200. Stopping sends SIGTERM to this one PID,
    then SIGKILL if it lingers past ``stop_timeout_s``.
    """

    name = "server"
    poll_interval_s = 0.2
    stop_timeout_s = 10.0

    def __init__(self, startup_timeout_s: float, log_path: Path | None = None):
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.ready_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def environment(self) -> Mapping[str, str] | None:
        return None  # inherit the test process's

    def working_directory(self) -> Path | None:
        return None

    def start(self) -> Self:
        started = time.monotonic()
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [str(part) for part in self.command()], stdout=log, stderr=subprocess.STDOUT,
            env=self.environment(), cwd=self.working_directory(),
        )
        if log is not subprocess.DEVNULL:
            log.close()
        self._wait_ready()
        self.ready_seconds = round(time.monotonic() - started, 1)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text()[-4000:] if self.log_path else ""
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} at start "
                    f"(log: {self.log_path})\n{tail}"
                )
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(self.poll_interval_s)
        self.stop()
        raise TimeoutError(f"{self.name} not ready in {self.startup_timeout_s} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
