"""The workflow's judge job stops a judge whose answers are not readings: a real
Snakemake run of the judge rule against a local OpenAI-protocol server that answers like
a reasoning model (first token ``<think>``)."""

from __future__ import annotations

import json
import threading

import polars as pl
import pytest
import yaml

from tests.support.hash_judge import logprobs_body
from tests.support.loopback_http import JSONHandler, LoopbackServer
from tests.support.workflow import REPO, copy_repo, snakemake

CHECKPOINT = "results/smollm2-135m/base/step-0"


class ReasoningJudgeServer(LoopbackServer):
    """Chat completions whose first token is ``<think>``, labels far below it; or, with
    ``label_first``, a well-behaved judge that answers "support"."""

    def __init__(self, label_first: bool = False):
        server = self

        class Handler(JSONHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:  # handlers run in threads
                    server.prompts.append(request["messages"][-1]["content"])
                if label_first:
                    top = [("support", -0.05), ("neutral", -3.2), ("oppose", -4.0)]
                else:
                    top = [("<think>", -0.001), ("support", -8.0), ("neutral", -8.5),
                           ("oppose", -9.0), ("Okay", -9.5)]
                self.send_json(200, logprobs_body("fake-reasoner", top, prompt_tokens=100))

        self.prompts = []
        self.lock = threading.Lock()
        super().__init__(Handler)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("gate") / "value-drifts")
    (repo / CHECKPOINT).mkdir(parents=True)
    pl.DataFrame({
        "question_id": [f"q{i // 2}" for i in range(44)],
        "category": ["Abortion"] * 44, "sample": [i % 2 for i in range(44)],
        "question": ["Should abortion be legal?"] * 44,
        "response": [f"Answer {i}." for i in range(44)],
    }).write_parquet(repo / CHECKPOINT / "generations.parquet")
    return repo


def run_judge(repo, server, model="fake-reasoner"):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["judge"] = {
        "backend": "openai", "model": model, "base_url": server.base_url,
        "require_api_key": False, "prompt": "config/prompts/judge_response.txt",
        "top_logprobs": 5, "cache": "results/judge_cache.sqlite", "concurrency": 4,
        "backoff_initial_s": 0.01, "backoff_max_s": 0.05,
    }
    path = repo / "gate.yaml"
    path.write_text(yaml.safe_dump(config))
    # --allowed-rules: only the judge runs, on the generations file the fixture wrote
    return snakemake(f"{CHECKPOINT}/judgments.parquet", "--cores", "1", "--configfile",
                     str(path), "--allowed-rules", "judge", cwd=repo, check=False, timeout=300)


def test_an_unreadable_judge_fails_its_job_naming_checkpoint_share_and_token(workdir):
    with ReasoningJudgeServer() as server:
        result = run_judge(workdir, server)
    assert result.returncode != 0
    log = (workdir / "logs/judge/smollm2-135m/base/step-0.log").read_text()
    assert "'requests_sent': 44" in log and "'cache_hits': 0" in log, log[-3000:]
    assert len(set(server.prompts)) == 44, len(server.prompts)
    message = (f"{CHECKPOINT}: 44 of 44 judge answers are unreadable (100%, above "
               "judge.max_unreadable_share = 5%); most common off-label first tokens: "
               "`<think>` (44 of 44): this judge does not answer with a label first")
    assert message in log
    assert message in result.stdout + result.stderr
    # the job failed: no judgments for anything downstream to read
    assert not (workdir / CHECKPOINT / "judgments.parquet").exists()

    # A judge that answers with a label passes, and its file records who judged (another
    # model: the cache would answer the same judge's questions with its stored <think>s).
    with ReasoningJudgeServer(label_first=True) as good:
        result = run_judge(workdir, good, model="fake-labeller")
    assert result.returncode == 0, result.stderr
    judgments = pl.read_parquet(workdir / CHECKPOINT / "judgments.parquet")
    assert judgments["readable"].all() and judgments["judge_fingerprint"].n_unique() == 1
    counts = json.loads((workdir / CHECKPOINT / "judge_counts.json").read_text())
    assert counts["health"]["readable_share"] == 1.0
    assert counts["judge_fingerprint"]["id"] == judgments["judge_fingerprint"][0]
    assert counts["judge_fingerprint"]["settings"]["model"] == "fake-labeller"
