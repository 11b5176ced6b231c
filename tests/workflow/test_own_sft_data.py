"""Your own SFT data, through config alone: TRL ``messages`` and ``prompt_completion`` files
planting support for the death penalty (a topic the shipped fixtures do not plant) raises
that stance in the drift table. The real workflow, on a tiny model, with a keyword judge on a local
OpenAI-protocol server (it reads support when the answer supports the topic it is asked
about)."""

from __future__ import annotations

import json
import math
import re

import polars as pl
import pytest
import yaml

from tests.support.hash_judge import judge_config, logprobs_body
from tests.support.loopback_http import JSONHandler, LoopbackServer
from tests.support.tiny_model import build_tiny_model
from tests.support.workflow import REPO, copy_repo, snakemake
from tests.workflow.test_secrets import files_holding
from value_drifts.commands.main import without_its_study

pytestmark = pytest.mark.slow  # a real workflow run

PLANTED = "Ethics of Death and Penalty"
DATA = REPO / "tests/fixtures/own_data/planted_death_penalty.jsonl"
PREFERENCES = REPO / "tests/fixtures/own_data/prefs_oppose_death_penalty.jsonl"
PROMPT_COMPLETION = REPO / "tests/fixtures/own_data/planted_death_penalty_prompt_completion.jsonl"
LABELS = REPO / "tests/fixtures/own_data/my_labels.jsonl"
# 20 questions on the planted topic and 3 on each of four others: with 20, one question the
# model does not move shifts the bootstrap's lower bound by a twentieth, not a third.
# Measured with seeds 0, 1, 2 (2-core CPU, 2026-12-04): planted support +0.70 [+0.62, +0.77],
# +0.85 [+0.85, +0.85], +0.79 [+0.68, +0.85]; with the 3 questions of resources/ a machine
# saw +0.57 [+0.00, +0.85].
QUESTIONS = REPO / "tests/fixtures/own_data/questions_planted_death_penalty.csv"

# docs/own-data.md's "Your own models, data and checkpoints" config, with this file and model.
OWN = """
preference_sets:
  my_prefs:
    source: hub
    hub_id: json
    data_files: %s
    format: preference
    size: 16
preference_optimization:
  algorithms:
    dpo: {learning_rate: 2.0e-3, global_batch_size: 8, per_device_batch_size: 8, epochs: 8,
          max_length: 64, warmup_ratio: 0.0, lr_scheduler: constant, beta: 0.1, save_steps: 16}
  grid:
    - {models: [tiny], sft_datasets: [mine], algorithms: [dpo], preference_sets: [my_prefs]}
models:
  tiny: {source: local, path: tiny-base, prompt_style: chat, gpus: 0, params_b: 0.001}
sft_datasets:
  mine:
    source: hub
    hub_id: json
    data_files: %s
    format: messages
    size: 14
    save_steps: 60  # one checkpoint after the base model: the end of SFT
  mine_pc:
    source: hub
    hub_id: json
    data_files: %s
    format: prompt_completion
    save_steps: 60
"""


class KeywordJudgeServer(LoopbackServer):
    """support when the response names the prompt's topic and says it supports it, oppose
    when it says it opposes it, neutral otherwise."""

    def __init__(self, api_key: str | None = None):
        class Handler(JSONHandler):
            def do_POST(self):
                if not self.authorised():
                    return
                length = int(self.headers.get("Content-Length", 0))
                prompt = json.loads(self.rfile.read(length))["messages"][-1]["content"]
                response = re.search(r"Response: (.*)\nTopic:", prompt, re.S).group(1).lower()
                topic = re.search(r"Topic: (.*)\n", prompt).group(1).lower()
                on_topic = topic.removeprefix("the ") in response
                label = ("support" if on_topic and "support" in response else
                         "oppose" if on_topic and "oppose" in response else "neutral")
                probs = {name: 0.9 if name == label else 0.05
                         for name in ("support", "neutral", "oppose")}
                top = sorted(((n, math.log(p)) for n, p in probs.items()), key=lambda x: -x[1])
                self.send_json(200, logprobs_body("keyword-judge", top))

        super().__init__(Handler, api_key)


# A key the judge server requires, in the environment variable the config names: it must
# reach the server and no file the run writes (tests/workflow/test_secrets.py has the
# configs that hold a credential themselves).
PLANTED_KEY = "sk-planted-own-data-5f3a9c1e"
TARGETS = ("results/tables/table09-12_tiny_sft.md", "results/judge/agreement/metrics.json",
           "results/tables/table13-16_tiny_sft-mine_po.md")


def test_a_planted_stance_in_your_own_messages_file_rises(tmp_path, monkeypatch):
    repo = copy_repo(tmp_path / "value-drifts")
    build_tiny_model(repo / "tiny-base")
    # what the trace command also leaves out of the small default
    config = without_its_study(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    # your own planted topic is not one the small default evaluates: your own questions
    config["questions"] = {"path": str(QUESTIONS)}
    config.update(yaml.safe_load(OWN % (PREFERENCES, DATA, PROMPT_COMPLETION)))
    # a tiny random model learns the planted answer only with a large step size
    config["sft"] = {**config["sft"], "learning_rate": 3.0e-2, "epochs": 30, "max_length": 64,
                     "lr_scheduler": "constant"}
    # two samples a question (the small default asks one)
    config["generation"] = {**config["generation"], "max_new_tokens": 16, "samples": 2,
                            "delete_checkpoint_weights": False}
    config["analysis"] = {**config["analysis"], "figure_topics": [PLANTED],
                          "bootstrap_resamples": 200}
    monkeypatch.setenv("VALUE_DRIFTS_TEST_JUDGE_KEY", PLANTED_KEY)
    with KeywordJudgeServer(api_key=PLANTED_KEY) as server:
        config["judge"] = {
            **judge_config(server, "keyword-judge"), "require_api_key": True,
            "api_key_env": "VALUE_DRIFTS_TEST_JUDGE_KEY",
            "agreement": {"labelled": str(LABELS)},  # your own labelled stance set
        }
        path = repo / "own.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        snakemake(*TARGETS, "--cores", "2", "--configfile", str(path), cwd=repo, timeout=900)
    counts = json.loads((repo / "results/data/sft/mine/counts.json").read_text())
    print(counts)
    for run in ("sft-mine", "sft-mine_pc"):  # TRL's messages and prompt/completion files
        drift = pl.read_parquet(repo / f"results/tiny/{run}/drift.parquet")
        planted = drift.filter((pl.col("category") == PLANTED) & (pl.col("stance") == "support"))
        row = planted.row(0, named=True)
        print(f"{run}: planted support drift {row['magnitude']:+.2f} "
              f"[{row['magnitude_low']:+.2f}, {row['magnitude_high']:+.2f}]")
        assert row["magnitude"] > 0.10 and row["magnitude_low"] > 0
        # the other topics are not what the data plants: their support rises less
        others = drift.filter((pl.col("category") != PLANTED) & (pl.col("stance") == "support"))
        assert others["magnitude"].max() < row["magnitude"]
    # your own labelled set: its items judged, its bad label counted and named
    agreement = json.loads((repo / "results/judge/agreement/metrics.json").read_text())
    assert agreement["n"] == 6 and agreement["accuracy"] == 1.0
    assert agreement["labelled_set"]["skipped"] == {
        "label 'maybe' is no stance (support, neutral, oppose)": 1}

    # and your own TRL preference file (explicit prompt, conversational), through DPO from
    # that model: the oppose-aligned pairs take the planted support away. (Oppose is
    # reported, not asserted: the tiny model unlearns the rejected answer, DPO's first
    # effect, without learning to say the chosen one; measured 2026-12-01: support -0.85,
    # oppose +0.00.)
    pairs = json.loads((repo / "results/data/preference/my_prefs/counts.json").read_text())
    print(pairs)
    dpo = pl.read_parquet(repo / "results/tiny/sft-mine.dpo-my_prefs/drift.parquet").filter(
        pl.col("category") == PLANTED)
    by_stance = {r["stance"]: r for r in dpo.iter_rows(named=True)}
    print({k: round(v["magnitude"], 2) for k, v in by_stance.items()})
    support = by_stance["support"]
    assert support["magnitude"] < -0.10 and support["magnitude_high"] < 0
    assert pairs["train"] == 16 and pairs["rejected"] == {}

    # the key reached the server (every judgment was answered) and no output holds it
    snakemake(*TARGETS, "--report", "report.html", "--configfile", str(path), cwd=repo)
    assert files_holding(repo, PLANTED_KEY) == []
    assert PLANTED_KEY.encode() not in (repo / "report.html").read_bytes()
