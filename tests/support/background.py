"""Long fixture builds that start when collection has chosen the tests, in a process of their
own, so they run beside the tests that do not need them.

CI runs on 2 cores and most tests keep one of them busy at most; the small default run
(~16 min of 2-core work) and the vLLM venv (~2.5 min, mostly downloads and unpacking) fill
the rest. The fixture that needs a build waits for it (``BackgroundBuild.wait``) and fails
with the tail of its log if the build failed. A build still running when the session ends
(``-x``, Ctrl-C, or its tests deselected later) is stopped with its whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class BackgroundBuild:
    """One command started now, waited for later: ``build.wait()`` after ``BackgroundBuild(...)``."""

    def __init__(self, name: str, command: list[str], cwd: Path, log_path: Path,
                 env: dict[str, str] | None = None, timeout_s: float = 50 * 60):
        self.name = name
        self.cwd = Path(cwd)
        self.log_path = log_path
        self.timeout_s = timeout_s
        self.started = time.monotonic()
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def wait(self) -> float:
        """Block until the build ends; its seconds. AssertionError with the log's tail if it
        failed or ran past its timeout (counted from its start, not from this call)."""
        remaining = self.timeout_s - (time.monotonic() - self.started)
        try:
            code = self.process.wait(timeout=max(remaining, 0.1))
        except subprocess.TimeoutExpired:
            message = f"{self.name} ran past {self.timeout_s / 60:.1f} min:\n{self.tail()}"
            self.stop()
            raise AssertionError(message) from None
        if code != 0:
            raise AssertionError(f"{self.name} failed with exit code {code}:\n{self.tail()}")
        return time.monotonic() - self.started

    def tail(self, chars: int = 8000) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM to the build's process group (Snakemake then cleans up), SIGKILL after 30 s."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        if not self._log.closed:
            self._log.close()
