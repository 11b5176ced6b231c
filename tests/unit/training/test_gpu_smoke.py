"""benchmarks/gpu_smoke.py, the script a lent GPU machine runs, on this CPU machine: its
``--cpu`` mode runs the same training checks on two CPU processes (fp32), one line each."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.workflow import REPO

SCRIPT = REPO / "benchmarks" / "gpu_smoke.py"


def smoke(*args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_gpu_only_checks_are_skipped_on_cpu_one_line_each():
    result = smoke("--cpu", "--only", "peak_memory_reward_3b", "--only", "peak_memory_ppo_3b",
                   timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("gpu_smoke machine: torch ")
    assert lines[1:3] == ["gpu_smoke peak_memory_reward_3b: skipped (--cpu: GPU only)",
                          "gpu_smoke peak_memory_ppo_3b: skipped (--cpu: GPU only)"]
    assert re.fullmatch(r"gpu_smoke total: [\d.]+s wall; 0 ok, 0 failed, 2 skipped", lines[3])


def test_without_cuda_or_cpu_it_stops_with_a_message():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    result = smoke("--only", "tiny_model", timeout=120)
    assert result.returncode != 0
    assert "no CUDA GPU visible" in result.stderr and "--cpu" in result.stderr


@pytest.mark.slow
@pytest.mark.gpu_path
def test_sft_kill_resume_and_end_of_turn_pass_on_cpu_processes():
    """The kill/resume check and what it needs and feeds: about 60 s on 2 cores."""
    result = smoke("--cpu", "--only", "sft_end_of_turn", timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "gpu_smoke machine", "gpu_smoke tiny_model", "gpu_smoke sft_zero2_gc_kill_resume",
        "gpu_smoke sft_end_of_turn", "gpu_smoke total"], output
    assert lines[1].startswith("gpu_smoke tiny_model: ok "), output
    assert re.match(r"gpu_smoke sft_zero2_gc_kill_resume: ok [\d.]+s preempted after step 2 "
                    r".* resumed to steps \[2, 4\]", lines[2]), output
    assert lines[3].startswith("gpu_smoke sft_end_of_turn: ok "), output
    assert "eos <|im_end|>, pad <|endoftext|>" in lines[3]
    assert "3 ok, 0 failed, 0 skipped" in lines[4]
