"""The study model (value_drifts.core.study): one place for what each job is and how it runs."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from tests.support.workflow import REPO
from value_drifts.core.study import ESTIMATED_QUESTIONS_PER_CATEGORY, StudyError, load_study


def test_paper_backends_ask_for_the_gpus_they_pass_on(paper_config):
    study = load_study(paper_config)
    generation, downstream, judge = (study.backends[r] for r in ("generation", "downstream",
                                                               "judge"))
    assert (generation.name, generation.env, generation.local) == ("vllm", "vllm", False)
    assert (downstream.name, downstream.env) == ("vllm", "vllm")
    for model in paper_config["models"]:
        size = study.model_size(model)
        assert size.gpus in (4, 8)  # training GPUs
        for backend in (generation, downstream):
            # bf16 weights of 3-8B fit half an 80 GB GPU: one GPU, not the training's 4-8
            assert backend.gpus(size) == backend.tensor_parallel_size(size) == 1
    assert (judge.name, judge.env, judge.local, judge.gpus()) == ("openai", "api", True, 0)
    assert {"teacher", "vprism_llm"} <= set(study.backends)
    assert study.backends["teacher"].local and study.backends["vprism_llm"].local


def test_a_large_model_spreads_over_the_gpus_it_asks_for(paper_config):
    config = copy.deepcopy(paper_config)
    config["models"]["llama3-8b"]["params_b"] = 70.0  # 140 GB of bf16 weights
    study = load_study(config)
    size = study.model_size("llama3-8b")
    for role in ("generation", "downstream"):
        assert study.backends[role].gpus(size) == study.backends[role].tensor_parallel_size(
            size) == 4


def test_a_local_judge_runs_where_its_backend_can(small_config):
    config = copy.deepcopy(small_config)
    judge = load_study(config).backends["judge"]
    assert (judge.name, judge.env, judge.local, judge.gpus()) == (
        "transformers", "transformers", False, 0)
    config["judge"] = {**config["judge"], "backend": "vllm", "tensor_parallel_size": 2}
    judge = load_study(config).backends["judge"]
    assert (judge.env, judge.local, judge.gpus(), judge.tensor_parallel_size()) == (
        "vllm", False, 2, 2)
    config["judge"] = {**config["judge"], "backend": "openai_batch"}
    config["cluster"] = {**config.get("cluster", {}), "api_jobs_local": False}
    judge = load_study(config).backends["judge"]
    assert (judge.env, judge.local, judge.gpus()) == ("api", False, 0)
    assert "judge" not in load_study(config).local_rules


def test_small_default_checkpoints_answer_the_questions_the_file_holds(small_config):
    study = load_study(small_config)
    # 20 on each of 3 planted topics and 3 on each of 2 controls (resources/vprism_small.csv)
    assert study.questions_per_checkpoint() == 66
    config = copy.deepcopy(small_config)
    config["questions"]["per_category"] = 2
    assert load_study(config).questions_per_checkpoint() == 2 * 5
    config["questions"] = {"path": "results/data/not-built-yet.parquet"}
    topics = len(load_study(config).topics)
    assert load_study(config).questions_per_checkpoint() == (
        ESTIMATED_QUESTIONS_PER_CATEGORY * topics)


@pytest.mark.parametrize("content", [b"question_id,question\nq1,Why?\n", b"PAR1\x00\x01"],
                         ids=["no-category-column", "half-written-parquet"])
def test_an_unreadable_questions_file_does_not_stop_the_parse(small_config, tmp_path, content):
    """The estimate falls back; select_questions reports the file with its reason."""
    path = tmp_path / ("questions.csv" if content.startswith(b"question") else "q.parquet")
    path.write_bytes(content)
    config = copy.deepcopy(small_config)
    config["questions"] = {"path": str(path)}
    study = load_study(config)
    assert study.questions_per_checkpoint() == ESTIMATED_QUESTIONS_PER_CATEGORY * len(
        study.topics)


def test_phases_know_their_paths(small_config):
    plan = load_study(small_config).plan
    sft = plan.phase("smollm2-135m", "sft-taskish")
    assert sft.training_marker == "results/models/smollm2-135m/sft-taskish/training.json"
    assert sft.checkpoint_dir(6) == "results/models/smollm2-135m/sft-taskish/checkpoint-6"
    assert sft.step_dir(6) == "results/smollm2-135m/sft-taskish/step-6"
    dpo = plan.phase("smollm2-135m", "sft-taskish.dpo-planted_oppose")
    assert dpo.parent == ("sft-taskish", -1)
    assert plan.start_of(dpo) == ("sft-taskish", sft.last_step)
    assert dpo.run_dir == "results/smollm2-135m/sft-taskish.dpo-planted_oppose"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c, tmp: c["generation"].update(temperature="hot"), r"generation\.temperature"),
        (lambda c, tmp: c["judge"].update(base_model="gpt-9"), r"judge\.base_model.*'gpt-9'"),
        (lambda c, tmp: c.update(topics=str(_clashing_topics(c, tmp))), "share the file name"),
        (lambda c, tmp: c["sft"].update(global_batch_size=7), "global_batch_size: 7"),
        (lambda c, tmp: c.update(cluster={"gpu_mem": 40}), r"cluster: .*'gpu_mem' was unexpected"),
        (lambda c, tmp: c.update(traces={"mine": {"checkpoints": "/no/such/folder",
                                             "prompt_style": "chat"}}), "/no/such/folder"),
    ],
    ids=["schema", "reference", "name-clash", "global-batch", "cluster-key", "trace"],
)
def test_a_config_that_cannot_be_a_study_says_why(small_config, tmp_path, edit, message):
    config = copy.deepcopy(small_config)
    edit(config, tmp_path)
    with pytest.raises(StudyError, match=message):
        load_study(config)


def _clashing_topics(config, directory):
    """A topic map whose categories 'Abortion' and 'abortion!' share a file name."""
    topics = yaml.safe_load((REPO / config["topics"]).read_text())
    clash = directory / "topics.yaml"
    clash.write_text(yaml.safe_dump({**topics, "abortion!": topics["Abortion"]}))
    return clash


# Path spellings the layout module owns: a rule or script writing one of these itself
# would drift from the rest when the layout changes.
PATH_LITERAL = re.compile(r"""["'](?:results/|\{RESULTS\}/)|f["']\{(?:FIGURES|TABLES)\}/""")


def test_no_rule_or_script_spells_a_results_path():
    files = [REPO / "Snakefile", *(REPO / "rules").glob("*.smk"),
             *(REPO / "workflow_scripts").glob("*.py"),
             *(p for p in (REPO / "src" / "value_drifts").rglob("*.py")
               if p.name != "layout.py")]
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PATH_LITERAL.search(line) and not line.lstrip().startswith("#")
    ]
    assert not found, "paths spelled outside value_drifts.core.layout:\n" + "\n".join(found)


def test_the_workflow_asks_the_study_for_how_jobs_run():
    """The rules take backends, local rules and sizes from the study, not from config."""
    rules = "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    for retired in ("res.local_rules", "res.api_rules", "res.judge_gpus(config",
                    "build_plan(", "read_traces(", "validate_config(",
                    'conda_env(config["judge"]', 'conda_env(config["generation"]',
                    '.get("per_category", 50)'):
        assert retired not in rules, retired
    assert "load_study(config, count_sizes=counted_sizes)" in rules


def test_the_schema_lets_exactly_the_local_builders_leave_size_out():
    """One list of local builders: the schema's size rule names the same ones the study
    reads files for."""
    import yaml as _yaml

    from value_drifts.core.config import SCHEMA_PATH
    from value_drifts.core.study import LOCAL_BUILDERS

    schema = _yaml.safe_load(SCHEMA_PATH.read_text())
    rule = schema["$defs"]["size_or_local_files"]["if"]["properties"]["hub_id"]["enum"]
    assert tuple(rule) == LOCAL_BUILDERS


def test_a_study_without_a_counter_names_the_sets_left_to_count(tmp_path):
    import copy

    import yaml as _yaml

    from tests.support.workflow import REPO
    from value_drifts.core.study import StudyError, load_study

    config = _yaml.safe_load((REPO / "config/config.yaml").read_text())
    data = tmp_path / "mine.jsonl"
    data.write_text((REPO / "tests/fixtures/own_data/planted_death_penalty.jsonl").read_text())
    config["sft_datasets"]["mine"] = {"source": "hub", "hub_id": "json", "data_files": str(data),
                                      "format": "messages", "save_steps": 60}
    import contextlib
    import os

    with contextlib.chdir(REPO):
        try:
            load_study(copy.deepcopy(config))
        except StudyError as error:
            assert "sft_datasets.mine: size left out and not counted" in str(error)
        else:
            raise AssertionError("a set without size loaded without a count")
        study = load_study(copy.deepcopy(config), count_sizes=lambda c: {("sft_datasets", "mine"): 7})
    assert study.config["sft_datasets"]["mine"]["size"] == 7
    assert os.path.exists(data)
