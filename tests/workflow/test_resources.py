"""Cluster resources per job, local rules, pinned conda environments, and deleting
checkpoint weights once generated without Snakemake rerunning anything."""

from __future__ import annotations

import math
import os
import re
import time

import polars as pl
import pytest
import yaml

from tests.support.workflow import REPO, copy_repo, dry_run_jobs, snakemake
from value_drifts.core import cluster_requests as res
from value_drifts.core.checkpoints import (
    DELETED_MARKER,
    WeightsDeletedError,
    delete_checkpoint_weights,
    keeps_weights,
    require_weights,
)
from value_drifts.core.study import load_study

CLUSTER = res.ClusterSettings()
LLAMA3_3B = res.ModelSize(gpus=4, params_b=3.2)
LLAMA3_8B = res.ModelSize(gpus=8, params_b=8.0)
SMOL = res.ModelSize(gpus=0, params_b=0.135)


# ---- pure resource functions -------------------------------------------------------------


def test_training_asks_for_the_models_gpus_and_scales_with_size():
    small = res.training_resources(LLAMA3_3B, "sft", 10**9, 1, CLUSTER)
    large = res.training_resources(LLAMA3_8B, "sft", 10**9, 1, CLUSTER)
    assert (small["gpu"], small["cpus_per_task"], small["nodes"]) == (4, 32, 1)
    assert (large["gpu"], large["cpus_per_task"]) == (8, 64)
    assert small["mem_mb"] == 32_000 + 4_000 * 3.2 * 4
    assert large["mem_mb"] > small["mem_mb"]
    # 6 × 3.2e9 × 1e9 FLOPs at 4 × 200 TFLOP/s = 400 min, × 1.5 + 15 min of set-up
    assert small["runtime"] == 615


def test_cpu_models_get_cpu_only_resources():
    job = res.training_resources(SMOL, "sft", 6 * 8 * 128, 1, CLUSTER)
    assert job["gpu"] == 0 and job["cpus_per_task"] == CLUSTER.cpu_threads == 2
    assert 16_000 <= job["mem_mb"] <= 17_000  # measured peak 4.4 GB (SFT) to 8.4 GB (PPO)
    assert res.generation_resources(SMOL, "vllm", 10**6, 1, CLUSTER)["gpu"] == 0
    assert res.generation_resources(LLAMA3_3B, "transformers", 10**6, 1, CLUSTER)["gpu"] == 0


def test_retries_grow_memory_and_runtime_up_to_the_limit():
    first, second = (res.training_resources(LLAMA3_3B, "dpo", 10**8, a, CLUSTER) for a in (1, 2))
    assert second["mem_mb"] == 2 * first["mem_mb"]
    assert 2 * first["runtime"] - 1 <= second["runtime"] <= 2 * first["runtime"]
    huge = res.training_resources(LLAMA3_3B, "ppo", 10**12, 3, CLUSTER)
    assert huge["runtime"] == CLUSTER.max_runtime_min  # then resumes from its checkpoint
    assert res.generation_resources(LLAMA3_8B, "vllm", 10**6, 2, CLUSTER)["mem_mb"] == 2 * (
        res.vllm_mem_mb(1, 4 * 8)
    )


def test_preference_optimisation_costs_more_than_sft():
    sft, dpo, ppo = (res.training_runtime_min(LLAMA3_3B, t, 10**9, 1, CLUSTER) for t in ("sft", "dpo", "ppo"))
    assert sft < dpo < ppo
    assert res.training_mem_mb(LLAMA3_3B, "ppo", 1, CLUSTER) > res.training_mem_mb(
        LLAMA3_3B, "sft", 1, CLUSTER)


def test_ppo_runtime_counts_its_rollouts():
    """PPO's runtime is generation-bound: each update decodes max_response_length tokens
    token by token, each step reading the policy's weights at the GPU's memory bandwidth,
    then scores prompt + response with three models forward."""
    cluster = res.ClusterSettings(gpu_memory_bandwidth_gbps=2560, max_runtime_min=10**6)
    rollouts = res.Rollouts(updates=100, batch=32, response_length=1000, prompt_length=1000)
    # decode: 8 prompts per GPU, one chunk; 6.4 GB of bf16 weights at 25% of 2,560 GB/s =
    # 0.01 s a step, × 1,000 steps × 100 updates = 1,000 s; forward: 3 models × 2 × 3.2e9
    # FLOPs × 100 × 32 × 2,000 tokens at 4 × 200 TFLOP/s = 153.6 s
    assert res.rollout_seconds(LLAMA3_3B, rollouts, cluster) == pytest.approx(1000 + 153.6)
    wide = res.Rollouts(updates=100, batch=512, response_length=1000, prompt_length=1000)
    assert res.rollout_seconds(LLAMA3_3B, wide, cluster) == pytest.approx(
        2 * 1000 + 16 * 153.6)  # 128 prompts per GPU: two chunks of 64

    tokens = 100 * 32 * 2048
    dpo = res.training_runtime_min(LLAMA3_3B, "dpo", tokens, 1, cluster)
    ppo_training_only = res.training_runtime_min(LLAMA3_3B, "ppo", tokens, 1, cluster)
    ppo = res.training_runtime_min(LLAMA3_3B, "ppo", tokens, 1, cluster, rollouts)
    assert dpo < ppo_training_only < ppo
    assert ppo - ppo_training_only == pytest.approx(1.5 * (1000 + 153.6) / 60, abs=1)
    longer = res.Rollouts(updates=100, batch=32, response_length=2000, prompt_length=1000)
    assert res.training_runtime_min(LLAMA3_3B, "ppo", tokens, 1, cluster, longer) > ppo
    # the paper's PPO hyperparameters: TRL's response length when max_response_length is unset
    hyper = {"global_batch_size": 32, "max_length": 2048, "max_response_length": 1024,
             "precision": "bf16"}
    assert res.Rollouts.for_ppo(hyper, 887) == res.Rollouts(887, 32, 1024, 2048)
    del hyper["max_response_length"]
    assert res.Rollouts.for_ppo(hyper, 887).response_length == res.TRL_RESPONSE_LENGTH == 53


@pytest.mark.gpu_path
@pytest.mark.parametrize("node_memory_gb", [1000, 512, 96])
def test_no_retry_asks_for_more_memory_than_a_node_has(node_memory_gb):
    """Memory grows with Snakemake's attempt, never past ``cluster.node_memory_gb``: a
    request above every node would never start (the profile retries twice; 5 here)."""
    cluster = res.ClusterSettings(node_memory_gb=node_memory_gb)
    node_mb = node_memory_gb * 1000
    big = res.ModelSize(gpus=8, params_b=70.0)
    for attempt in range(1, 6):
        requests = [res.training_resources(m, t, 10**9, attempt, cluster)["mem_mb"]
                    for m in (SMOL, LLAMA3_3B, LLAMA3_8B, big) for t in res.TRAINING_COST]
        requests += [res.generation_resources(m, b, 10**6, attempt, cluster)["mem_mb"]
                     for m in (SMOL, LLAMA3_8B, big) for b in ("vllm", "transformers")]
        requests += [res.downstream_resources(big, b, attempt, cluster)["mem_mb"] for b in ("vllm", "hf")]
        requests += [res.judge_resources(g, 8000, 60, attempt, cluster)["mem_mb"] for g in (0, 1, 8)]
        requests.append(res.prepare_model_resources(big, attempt, cluster)["mem_mb"])
        assert max(requests) <= node_mb, attempt
    assert res.training_resources(LLAMA3_8B, "ppo", 10**9, 1, cluster)["mem_mb"] == min(
        node_mb, 32_000 + 4_000 * 8 * 4 * 8)  # four model copies on each of 8 ranks
    assert res.judge_resources(0, 4000, 60, 2, cluster)["mem_mb"] == 8000  # grows below it


@pytest.mark.gpu_path
def test_vllm_jobs_ask_for_cpus_per_gpu_and_memory_for_its_processes():
    """vLLM's main process, engine core and one worker per GPU need CPUs and tens of GB
    besides the weights: generation, downstream and a vLLM judge ask for them; a CPU job
    (the small default's transformers backends) keeps one CPU and its own memory."""
    generate = res.generation_resources(LLAMA3_3B, "vllm", 10**6, 1, CLUSTER)
    assert (generate["gpu"], generate["cpus_per_task"]) == (1, 8)
    assert generate["mem_mb"] == res.VLLM_HOST_MB + res.VLLM_WORKER_MB + 4_000 * 3.2 >= 40_000
    assert res.downstream_resources(LLAMA3_8B, "vllm", 1, CLUSTER)["mem_mb"] == res.vllm_mem_mb(1, 32)
    judge = res.judge_resources(2, 4000, 60, 1, CLUSTER)  # judge.tensor_parallel_size: 2
    assert (judge["gpu"], judge["cpus_per_task"]) == (2, 16)
    assert judge["mem_mb"] == res.vllm_mem_mb(2, 80) >= 100_000  # weights ≤ half of 2 × 80 GB
    cpu_judge = res.judge_resources(0, 4000, 60, 1, CLUSTER)
    assert cpu_judge == {"gpu": 0, "cpus_per_task": 1, "mem_mb": 4000, "runtime": 60}
    assert res.generation_resources(SMOL, "transformers", 10**4, 1, CLUSTER)["cpus_per_task"] == 1


@pytest.mark.parametrize(
    ("params_b", "gpu_memory_gb", "expected"),
    [(3.2, 80, 1), (8.2, 80, 1), (8.2, 16, 4), (70, 80, 4), (70, 40, 8), (400, 80, 8)],
)
def test_generation_tensor_parallel_size_by_size(params_b, gpu_memory_gb, expected):
    cluster = res.ClusterSettings(gpu_memory_gb=gpu_memory_gb)
    model = res.ModelSize(gpus=8, params_b=params_b)
    assert res.generation_gpus(model, "vllm", cluster) == expected


def test_cluster_section_rejects_unknown_keys():
    assert res.ClusterSettings.from_config({}) == CLUSTER
    assert res.ClusterSettings.from_config({"cluster": {"gpu_memory_gb": 40}}).gpu_memory_gb == 40
    with pytest.raises(ValueError, match="gpu_mem"):
        res.ClusterSettings.from_config({"cluster": {"gpu_mem": 40}})


def local_rules(config):
    return load_study(config).local_rules


def test_api_calling_rules_are_local_and_local_models_are_jobs(small_config, paper_config):
    paper = set(local_rules(paper_config))  # GPT-4o judge, GPT-4o V-PRISM, served teacher
    assert {"judge", "judge_agreement", "dataset_stances", "value_gap_pairs", "vprism_rephrase",
            "vprism_name_clusters", "vprism_filter", "generate_value_gap",
            "values", "figure_sft_trajectories"} <= paper
    assert not {"train_sft", "generate", "generate_run", "train_preference_optimisation",
                "vprism_embed", "downstream_eval"} & paper
    small = set(local_rules(small_config))  # local transformers judge and V-PRISM LLM
    assert not {"judge", "dataset_stances", "vprism_rephrase"} & small
    assert "values" in small
    batch = {**small_config, "judge": {**small_config["judge"], "backend": "openai_batch"}}
    assert {"judge", "value_gap_pairs"} <= set(local_rules(batch))
    on_nodes = {**paper_config, "cluster": {**paper_config.get("cluster", {}),
                                            "api_jobs_local": False}}
    assert not {"judge", "vprism_filter", "generate_value_gap"} & set(local_rules(on_nodes))


def test_jobs_ask_for_the_gpus_they_pass_on():
    small, large = LLAMA3_3B, LLAMA3_8B
    assert res.downstream_gpus(large, "vllm", CLUSTER) == res.generation_gpus(
        large, "vllm", CLUSTER) == 1  # 16 GB of weights fit half an 80 GB GPU
    assert res.downstream_gpus(large, "hf", CLUSTER) == 1  # not the 8 training GPUs
    assert res.downstream_gpus(SMOL, "hf", CLUSTER) == 0
    big = res.ModelSize(gpus=8, params_b=70.0)
    assert res.downstream_gpus(big, "vllm", CLUSTER) == 4
    assert res.downstream_resources(big, "vllm", 1, CLUSTER)["gpu"] == 4
    assert res.downstream_resources(small, "hf", 2, CLUSTER)["runtime"] == 16 * 60
    assert res.judge_gpus({"backend": "vllm", "tensor_parallel_size": 4}) == 4
    assert res.judge_gpus({"backend": "vllm"}) == 1
    assert res.judge_gpus({"backend": "openai"}) == res.judge_gpus({"backend": "transformers"}) == 0


# ---- the paper's plan through the SLURM profile ------------------------------------------

JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")


def _dry_run_jobs(output: str) -> list[dict]:
    """Each job block of a dry run: rule, wildcards and resources as printed."""
    jobs, current = [], None
    for line in output.splitlines():
        if match := JOB_HEADER.match(line.strip()):
            current = {"rule": match.group(1), "wildcards": {}, "resources": {}}
            jobs.append(current)
        elif current is not None and ":" in line:
            key, _, value = line.strip().partition(": ")
            if key in ("wildcards", "resources"):
                current[key] = dict(item.split("=", 1) for item in value.split(", "))
    return jobs


PAPER_TARGETS = [
    "results/models/llama3-8b/sft-alpaca/training.json",
    "results/llama3-3b/sft-wildchat.ppo-ultrafeedback/step-100/generations.parquet",
    "results/qwen3-4b/sft-alpaca.dpo-hh_rlhf/drift.parquet",
]


def _paper_dry_run(*configfiles: str) -> list[dict]:
    import subprocess
    import sys

    env = {**os.environ, "SLURM_PARTITION": "gpu", "SLURM_ACCOUNT": "proj"}
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--nolock", "--profile", "slurm",
         *PAPER_TARGETS, "--configfile", "config/paper.yaml", *configfiles],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return _dry_run_jobs(result.stdout + result.stderr)


@pytest.fixture(scope="module")
def paper_jobs():
    return _paper_dry_run()


@pytest.fixture(scope="module")
def vllm_judge_jobs(tmp_path_factory):
    """The paper grid with a vLLM judge on two GPUs (a user's choice; the paper's is an API)."""
    path = tmp_path_factory.mktemp("vllm_judge") / "judge.yaml"
    path.write_text(yaml.safe_dump({"judge": {"backend": "vllm", "model": "Qwen/Qwen3-8B",
                                              "tensor_parallel_size": 2}}))
    return _paper_dry_run(str(path))


def _job(jobs, rule, **wildcards):
    matches = [
        j for j in jobs
        if j["rule"] == rule and all(j["wildcards"].get(k) == v for k, v in wildcards.items())
    ]
    assert matches, f"no {rule} job with {wildcards}"
    return matches[0]["resources"]


def test_paper_training_jobs_request_the_models_gpus(paper_jobs):
    sft_8b = _job(paper_jobs, "train_sft", model="llama3-8b", sft_dataset="alpaca")
    assert (sft_8b["gpu"], sft_8b["cpus_per_task"], sft_8b["nodes"]) == ("8", "64", "1")
    assert sft_8b["slurm_partition"] == "gpu" and sft_8b["slurm_account"] == "proj"
    sft_3b = _job(paper_jobs, "train_sft", model="llama3-3b", sft_dataset="wildchat")
    assert (sft_3b["gpu"], sft_3b["cpus_per_task"]) == ("4", "32")
    assert int(sft_8b["mem_mb"]) > int(sft_3b["mem_mb"]) > 8000  # above the profile default
    assert 60 < int(sft_3b["runtime"]) <= 2880
    ppo = _job(paper_jobs, "train_preference_optimisation", model="llama3-3b",
               po_run="ppo-ultrafeedback")
    assert ppo["gpu"] == "4"
    reward = _job(paper_jobs, "train_reward_model", model="llama3-3b")
    assert reward["gpu"] == "4"


def test_paper_training_jobs_declare_their_checkpoint_disk(paper_jobs):
    """Each training job's checkpoint_disk_mb is its run's peak (core.checkpoint_disk):
    checkpoints × bf16 weights + 2 × resume state (12 bytes/parameter of DeepSpeed's Adam
    state, + the weights under ZeRO-2), so --resources checkpoint_disk_mb=N caps them."""
    disk_mb = {
        # Llama-3-3B (6.4 GB, ZeRO-2: 44.8 GB of resume state), WildChat: 12 checkpoints
        ("train_sft", "llama3-3b", "wildchat"): 12 * 6_400 + 2 * 44_800,
        # Llama-3-8B (16 GB, ZeRO-2 on 8 GPUs: 112 GB), Alpaca: 11 checkpoints
        ("train_sft", "llama3-8b", "alpaca"): 11 * 16_000 + 2 * 112_000,
        # one checkpoint, then the final folder
        ("train_reward_model", "llama3-3b", "wildchat"): 6_400 + 44_800,
    }
    for (rule, model, dataset), expected in disk_mb.items():
        assert int(_job(paper_jobs, rule, model=model, sft_dataset=dataset)[
            "checkpoint_disk_mb"]) == expected, rule
    # DPO on HH-RLHF (60,908 pairs, batch 32, 3 epochs: 5,712 steps): 58 checkpoints of
    # Qwen3-4B (8 GB, 56 GB of resume state); PPO (ZeRO-3): the Adam state of policy and
    # value model (2 × 38.4 GB) and the value model (6.4 GB)
    dpo = _job(paper_jobs, "train_preference_optimisation", model="qwen3-4b",
               po_run="dpo-hh_rlhf")
    assert int(dpo["checkpoint_disk_mb"]) == 58 * 8_000 + 2 * 56_000
    ppo = _job(paper_jobs, "train_preference_optimisation", model="llama3-3b",
               po_run="ppo-ultrafeedback")
    assert int(ppo["checkpoint_disk_mb"]) == 58 * 6_400 + 2 * (2 * 38_400 + 6_400)
    assert "checkpoint_disk_mb" not in _job(paper_jobs, "generate_run", model="llama3-3b",
                                            run="sft-wildchat.ppo-ultrafeedback")


def test_paper_generation_uses_one_gpu_and_one_job_per_run(paper_jobs):
    generate = _job(paper_jobs, "generate_run", model="llama3-3b",
                    run="sft-wildchat.ppo-ultrafeedback")
    assert (generate["gpu"], generate["cpus_per_task"]) == ("1", "8")
    # one job samples the run's evaluated checkpoints; each step's file is copied locally
    runs = [job for job in paper_jobs if job["rule"] == "generate_run"]
    steps = [job for job in paper_jobs if job["rule"] == "generate_step"]
    assert not [job for job in paper_jobs if job["rule"] == "generate"]
    per_run = {(job["wildcards"]["model"], job["wildcards"]["run"]): 0 for job in runs}
    for job in steps:
        per_run[(job["wildcards"]["model"], job["wildcards"]["run"])] += 1
    assert sum(per_run.values()) == len(steps), per_run
    assert per_run[("qwen3-4b", "sft-alpaca.dpo-hh_rlhf")] == 58  # one job, not 58
    # CPU-side jobs keep the profile's defaults and no GPU.
    data = _job(paper_jobs, "prepare_sft_dataset", sft_dataset="alpaca")
    assert "gpu" not in data and data["mem_mb"] == "16000"
    base = _job(paper_jobs, "prepare_base_model", model="llama3-8b")
    assert "gpu" not in base and int(base["mem_mb"]) >= 48000


@pytest.mark.gpu_path
def test_paper_vllm_jobs_ask_for_cpus_and_memory_of_vllm(paper_jobs, vllm_judge_jobs):
    generate = _job(paper_jobs, "generate_run", model="llama3-3b",
                    run="sft-wildchat.ppo-ultrafeedback")
    assert (generate["gpu"], generate["cpus_per_task"]) == ("1", "8")
    assert int(generate["mem_mb"]) == res.vllm_mem_mb(1, 4 * 3.2) >= 40_000
    judge = _job(vllm_judge_jobs, "judge", model="qwen3-4b", run="sft-alpaca.dpo-hh_rlhf")
    assert (judge["gpu"], judge["cpus_per_task"]) == ("2", "16")
    assert int(judge["mem_mb"]) == res.vllm_mem_mb(2, 80) > 4000  # not 1 CPU and 4 GB


@pytest.mark.gpu_path
def test_paper_hub_downloads_run_on_the_submit_host(small_config, paper_config):
    """Compute nodes often have no internet: the rules that download base models and hub
    data sets run on the submit host for the paper grid (the Snakefile's local rules:
    test_paper_light_rules_are_local); the small default downloads nothing, and
    hub_jobs_local: false submits them."""
    downloads = {"prepare_base_model", "prepare_sft_dataset", "prepare_preference_set",
                 "vprism_load_prompts"}
    assert downloads <= set(local_rules(paper_config))
    assert not downloads & set(local_rules(small_config))
    on_nodes = {**paper_config, "cluster": {**paper_config.get("cluster", {}),
                                            "hub_jobs_local": False}}
    assert not downloads & set(local_rules(on_nodes))


def test_hub_snapshots_leave_out_the_original_consolidated_weights(monkeypatch, tmp_path):
    import huggingface_hub

    from value_drifts.data.base_model import download_hub_model

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: calls.append(kw))
    download_hub_model("meta-llama/Llama-3.2-3B", tmp_path / "m", "main")
    assert calls[0]["ignore_patterns"] == ["original/*"]
    assert (calls[0]["repo_id"], calls[0]["revision"]) == ("meta-llama/Llama-3.2-3B", "main")


def test_paper_light_rules_are_local():
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=[REPO / "config/paper.yaml"]),
            snakefile=REPO / "Snakefile",
            workdir=REPO,
        )
        workflow = workflow_api._workflow  # noqa: SLF001 - the loaded Snakefile
        local = set(workflow._localrules)  # noqa: SLF001
        defined = {rule.name for rule in workflow.rules}
    assert local <= defined, f"local rules that do not exist: {local - defined}"
    assert {"values", "drift", "judge", "judge_agreement", "sft_drift_table", "all"} <= local
    # the hub downloads: compute nodes often have no internet
    assert {"prepare_base_model", "prepare_sft_dataset", "prepare_preference_set",
            "vprism_load_prompts"} <= local
    assert not {"train_sft", "train_preference_optimisation", "generate", "generate_run",
                "vprism_embed"} & local


# Conda environments: tests/workflow/test_envs.py.


# ---- deleting checkpoint weights once generated ------------------------------------------


def test_only_intermediate_checkpoints_lose_their_weights(tmp_path):
    assert keeps_weights("base", 0, 0)
    assert keeps_weights("sft-wildchat", 5994, 5994)  # final SFT: PO starts from it
    assert not keeps_weights("sft-wildchat", 500, 5994)
    checkpoint = tmp_path / "checkpoint-2"
    for name in ("model.safetensors", "optimizer.pt", "rng_state.pth", "config.json",
                 "tokenizer.json", "trainer_state.json", "global_step2/zero_pp_rank_0.pt"):
        (checkpoint / name).parent.mkdir(parents=True, exist_ok=True)
        (checkpoint / name).write_text("0123456789")
    deleted = delete_checkpoint_weights(checkpoint)
    assert sorted(deleted) == ["global_step2", "model.safetensors", "optimizer.pt", "rng_state.pth"]
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "config.json", "tokenizer.json", "trainer_state.json", DELETED_MARKER,
    ]
    assert delete_checkpoint_weights(checkpoint) == []  # idempotent
    with pytest.raises(WeightsDeletedError, match="rerun its training"):
        require_weights(checkpoint)
    require_weights(tmp_path)  # a directory with its weights: no error


@pytest.fixture(scope="module")
def generated_repo(tmp_path_factory):
    """A repo copy whose SFT run 'taskish' is on disk (a tiny model as every checkpoint),
    after the real generate rule ran for step 3 and the final step 6 with deletion on."""
    from tests.support.tiny_model import build_tiny_model
    from value_drifts.core.questions import read_questions, sample_questions

    repo = copy_repo(tmp_path_factory.mktemp("delete") / "repo")
    for benchmark in (repo / "benchmarks").rglob("*.tsv"):  # a local run's, older than ours
        benchmark.unlink()
    config = yaml.safe_load((repo / "config/config.yaml").read_text())
    config["generation"].update(delete_checkpoint_weights=True, samples=1, max_new_tokens=4)
    (repo / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    model = "results/models/smollm2-135m"
    build_tiny_model(repo / model / "base")
    sft = repo / "results/data/sft/taskish"
    sft.mkdir(parents=True)
    pl.DataFrame({"messages": [[{"role": "user", "content": "x"}]]}).write_parquet(sft / "train.parquet")
    pl.DataFrame({"messages": [[{"role": "user", "content": "x"}]]}).write_parquet(sft / "validation.parquet")
    (sft / "counts.json").write_text("{}")
    topics = yaml.safe_load((repo / "config/topics.yaml").read_text())
    questions = read_questions(str(repo / config["questions"]["path"]), list(topics))
    questions = sample_questions(questions, config["questions"].get("per_category"), config["seed"],
                                 config["questions"].get("categories"))
    questions.write_parquet(repo / "results/data/questions.parquet")
    for step in (3, 6):
        build_tiny_model(repo / model / f"sft-taskish/checkpoint-{step}")
        (repo / model / f"sft-taskish/checkpoint-{step}/trainer_state.json").write_text("{}")
        (repo / model / f"sft-taskish/checkpoint-{step}/optimizer.pt").write_text("x")
    (repo / model / "sft-taskish/training.json").write_text('{"steps": [3, 6]}')
    # Outputs newer than their inputs, in DAG order, as a real run leaves them.
    now = time.time()
    order = [repo / model / "base", *sft.iterdir(), repo / "results/data/questions.parquet",
             repo / model / "sft-taskish/training.json"]
    for offset, path in enumerate(order):
        os.utime(path, (now + offset, now + offset))

    targets = [f"results/smollm2-135m/sft-taskish/step-{s}/generations.parquet" for s in (3, 6)]
    planned = dry_run_jobs(*targets, "--rerun-triggers", "mtime", cwd=repo)
    assert planned == {"generate": 2}, planned  # only generation runs for real
    snakemake("--cores", "1", *targets, "--rerun-triggers", "mtime", cwd=repo, timeout=600)
    return repo, targets


def test_generation_deletes_intermediate_weights_and_keeps_the_final(generated_repo):
    repo, _ = generated_repo
    run = repo / "results/models/smollm2-135m/sft-taskish"
    assert not (run / "checkpoint-3/model.safetensors").exists()
    assert not (run / "checkpoint-3/optimizer.pt").exists()
    assert (run / "checkpoint-3/config.json").exists()
    assert (run / f"checkpoint-3/{DELETED_MARKER}").exists()
    assert (run / "checkpoint-6/model.safetensors").exists()  # final: PO starts here
    table = pl.read_parquet(repo / "results/smollm2-135m/sft-taskish/step-3/generations.parquet")
    assert table.height == 66 and table["sample"].unique().to_list() == [0]


def test_nothing_reruns_after_deletion(generated_repo):
    repo, targets = generated_repo
    result = snakemake("-n", *targets, "results/models/smollm2-135m/sft-taskish/training.json",
                       "--rerun-triggers", "mtime", cwd=repo)
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.gpu_path
def test_one_job_per_run_asks_for_one_set_up_and_every_checkpoints_sampling():
    """generation.one_job_per_run: 15 minutes of set-up once, then per checkpoint its
    sampling (1.5 × tokens at the configured throughput) and a minute for its weights;
    the same GPUs, CPUs and memory as one checkpoint's job; never above the time limit."""
    tokens = 10**6
    sampling = 1.5 * tokens / CLUSTER.generation_tokens_per_s / 60  # one GPU for 3.2B
    one = res.generation_resources(LLAMA3_3B, "vllm", tokens, 1, CLUSTER)
    run = res.generation_resources(LLAMA3_3B, "vllm", tokens, 1, CLUSTER, checkpoints=12)
    assert one["runtime"] == math.ceil(15 + sampling)
    assert run["runtime"] == math.ceil(15 + 11 + 12 * sampling)
    assert {k: v for k, v in run.items() if k != "runtime"} == {
        k: v for k, v in one.items() if k != "runtime"}
    many = res.generation_resources(LLAMA3_3B, "vllm", tokens, 1, CLUSTER, checkpoints=10_000)
    assert many["runtime"] == CLUSTER.max_runtime_min  # a cut job resumes on its retry


@pytest.mark.gpu_path
def test_a_run_over_the_time_limit_without_resume_state_is_an_endless_restart():
    """A run that cannot resume (save_only_model: true, or the reward model) and whose
    estimated training time, without the request's margin, is over
    cluster.max_runtime_min would be cut and started over on every retry."""
    tokens = 10**9  # 6 × 3.2e9 × 1e9 FLOPs at 4 × 200 TFLOP/s × MFU: the estimate below
    needed = math.ceil(res.training_seconds(LLAMA3_3B, "sft", tokens, CLUSTER) / 60)
    short = res.ClusterSettings(max_runtime_min=needed - 1)
    problem = res.endless_restart_problem("llama3-3b sft-wildchat", LLAMA3_3B, "sft", tokens,
                                          short, resumes=False)
    assert problem and problem.startswith(f"llama3-3b sft-wildchat: about {needed} min")
    assert res.endless_restart_problem("r", LLAMA3_3B, "sft", tokens, short,
                                       resumes=True) is None  # it resumes
    enough = res.ClusterSettings(max_runtime_min=needed)
    assert res.endless_restart_problem("r", LLAMA3_3B, "sft", tokens, enough,
                                       resumes=False) is None  # fits, even if the
    assert res.training_runtime_min(LLAMA3_3B, "sft", tokens, 1, enough) == needed  # request
    # (50% margin and 15 minutes) is cut to the limit


@pytest.mark.gpu_path
def test_the_paper_grid_with_ppo_checkpoints_of_weights_alone_stops_at_start(tmp_path):
    """PPO is estimated at 2,168 (Llama-3-3B) and 2,709 (Qwen3-4B) minutes: with
    save_only_model: true on a 24-hour partition the dry run stops, naming each such run
    and the way out; at the paper's 48 hours it goes on."""
    import subprocess
    import sys

    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    ppo = paper["preference_optimization"]["algorithms"]["ppo"]
    weights_alone = {"preference_optimization": {"algorithms": {
        **paper["preference_optimization"]["algorithms"],
        "ppo": {**ppo, "save_only_model": True}}}}
    env = {**os.environ, "SLURM_PARTITION": "gpu", "SLURM_ACCOUNT": "proj"}

    def dry_run(override):
        path = tmp_path / "override.yaml"
        path.write_text(yaml.safe_dump(override))
        result = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--nolock", "--profile", "slurm",
             "--configfile", "config/paper.yaml", str(path)],
            cwd=REPO, capture_output=True, text=True, env=env, timeout=600,
        )
        return result.returncode, result.stdout + result.stderr

    code, output = dry_run({**weights_alone, "cluster": {**paper["cluster"],
                                                         "max_runtime_min": 1440}})
    assert code != 0 and "could never finish" in output, output[-3000:]
    assert "llama3-3b sft-wildchat.ppo-ultrafeedback: about 2168 min" in output
    assert "sft-wildchat.dpo-ultrafeedback" not in output  # DPO keeps its resume state
    assert "set save_only_model: false" in output.lower()
    code, output = dry_run(weights_alone)
    assert "could never finish" not in output


@pytest.mark.gpu_path
def test_a_vllm_judge_with_one_job_per_run_starts_once_per_run(tmp_path):
    """judge.one_job_per_run with a vLLM judge: one judge_run job per run, asking for the
    judge's GPUs and a checkpoint job's hour once per checkpoint (up to the time limit),
    and a local copy per checkpoint."""
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump({"judge": {"backend": "vllm", "model": "Qwen/Qwen3-8B",
                                              "tensor_parallel_size": 2,
                                              "one_job_per_run": True}}))
    jobs = _paper_dry_run(str(path))
    assert not [job for job in jobs if job["rule"] == "judge"]
    steps = [job for job in jobs if job["rule"] == "judge_step"]
    assert len([job for job in steps if job["wildcards"]["run"] == "sft-alpaca.dpo-hh_rlhf"]) == 58
    sft = _job(jobs, "judge_run", model="qwen3-4b", run="sft-alpaca")
    assert (sft["gpu"], sft["cpus_per_task"]) == ("2", "16")
    assert int(sft["runtime"]) == 60 * 11  # the 11 checkpoints of an Alpaca SFT run
    dpo = _job(jobs, "judge_run", model="qwen3-4b", run="sft-alpaca.dpo-hh_rlhf")
    assert int(dpo["runtime"]) == CLUSTER.max_runtime_min  # 58 hours, cut: resumes from the cache
