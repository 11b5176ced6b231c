from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.support.workflow import REPO
from value_drifts.backends.cache import JudgeCache
from value_drifts.commands.cost_plan import (
    STAGES,
    cache_path,
    format_plan,
    main,
    plan_for_config,
    stage_plans,
)
from value_drifts.judge.backends import DEFAULT_CACHE
from value_drifts.judge.cost import estimate_tokens
from value_drifts.judge.openai_backend import OpenAIJudgeSettings, judge_request_key

# small config: 10 evaluated checkpoints x 66 questions x 1 sample
CHECKPOINT_CALLS = 10 * 66 * 1
AGREEMENT_CALLS = 11 * (6 + 9)  # resources/stance_agreement.yaml
# judge.reference: 8 answers per checkpoint of the 10
REFERENCE_CALLS = 10 * 8
# judge.audit: 24 sampled answers read with the main prompt and 2 alternatives
AUDIT_CALLS = 3 * 24
EXTRA_CALLS = REFERENCE_CALLS + AUDIT_CALLS


@pytest.fixture
def priced_config(small_config):
    small_config["judge"]["prices"] = {"input_per_million_usd": 2.5,
                                       "output_per_million_usd": 10.0}
    return small_config


@pytest.fixture
def tiny_config(priced_config, tmp_path, monkeypatch):
    """The small config with dataset_stances.max_items 4 and two analysed preference sets:
    planted_support (32 pairs) and tiny (3 pairs, not trained on, so the checkpoints stay
    the same); run from an empty directory whose config/ and resources/ are the repo's."""
    for name in ("config", "resources"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    config = priced_config
    config["dataset_stances"]["max_items"] = 4
    config["preference_sets"]["tiny"] = {**config["preference_sets"]["planted_support"],
                                         "size": 3}
    config["dataset_stances"]["preference_sets"] = ["planted_support", "tiny"]
    return config


def by_stage(config, results):
    return {stage.stage: stage for stage in stage_plans(config, results)}


def topics():
    return yaml.safe_load((REPO / "config" / "topics.yaml").read_text())


def template(name):
    return (REPO / "config" / "prompts" / name).read_text()


def write_sft_outputs(results: Path):
    """Prepared data of SFT set opinionated (3 items) and its stances: item 0 matched
    Abortion and Immigration Policies, item 2 matched Abortion."""
    data = results / "data" / "sft" / "opinionated"
    data.mkdir(parents=True)
    pl.DataFrame({"messages": [
        [{"role": "user", "content": "Is abortion ok?"}, {"role": "assistant", "content": "Yes."}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
        [{"role": "user", "content": "Ban it?"}, {"role": "assistant", "content": "No."}],
    ]}).write_parquet(data / "train.parquet")
    out = results / "dataset_stances" / "sft" / "opinionated"
    out.mkdir(parents=True)
    pl.DataFrame({"item": [0, 0, 2], "question_id": ["a", "b", "a"],
                  "category": ["Abortion", "Immigration Policies", "Abortion"],
                  "similarity": [0.7, 0.6, 0.8]}).write_parquet(out / "stances.parquet")
    conversation = template("judge_conversation.txt")
    return [
        conversation.format_map({"conversation": "User: Is abortion ok?\n\nAssistant: Yes.",
                                 "topic": topics()["Abortion"]}),
        conversation.format_map({"conversation": "User: Is abortion ok?\n\nAssistant: Yes.",
                                 "topic": topics()["Immigration Policies"]}),
        conversation.format_map({"conversation": "User: Ban it?\n\nAssistant: No.",
                                 "topic": topics()["Abortion"]}),
    ]


def write_preference_set(results: Path, name: str, pairs: int):
    data = results / "data" / "preference" / name
    data.mkdir(parents=True)
    pl.DataFrame({
        "prompt": [[{"role": "user", "content": f"Question {i}?"}] for i in range(pairs)],
        "chosen": [[{"role": "assistant", "content": f"Yes {i}."}] for i in range(pairs)],
        "rejected": [[{"role": "assistant", "content": f"No {i}."}] for i in range(pairs)],
    }).write_parquet(data / "train.parquet")


def gap_prompts(item: int, topic: str) -> list[str]:
    """The chosen and the rejected prompt of pair ``item`` of write_preference_set."""
    return [
        template("judge_response.txt").format_map(
            {"question": f"Question {item}?", "response": side, "topic": topic})
        for side in (f"Yes {item}.", f"No {item}.")
    ]


def write_value_gaps(results: Path):
    """planted_support prepared (3 pairs) and searched: pairs 1 and 2 have a topic."""
    write_preference_set(results, "planted_support", 3)
    gaps = results / "dataset_stances" / "preference" / "planted_support"
    gaps.mkdir(parents=True)
    pl.DataFrame({"item": [1, 2], "category": ["Abortion", "Race and Racism"],
                  "distance": [0.1, 1.2]}).write_parquet(gaps / "value_gap.parquet")
    return gap_prompts(1, topics()["Abortion"]) + gap_prompts(2, topics()["Race and Racism"])


def test_plan_before_anything_is_generated(tiny_config, tmp_path):
    stages = by_stage(tiny_config, tmp_path / "none")
    assert list(stages) == list(STAGES)
    calls = {name: stage.plan.calls for name, stage in stages.items()}
    assert calls == {
        "checkpoints": CHECKPOINT_CALLS,
        "dataset stances": 2 * 4,  # opinionated, taskish: min(48, 4) items, one topic each
        "value gaps": 2 * 4 + 2 * 3,  # chosen + rejected of min(32, 4) and min(3, 4) pairs
        "agreement": AGREEMENT_CALLS,
        "reference judge": REFERENCE_CALLS,
        "prompt audit": AUDIT_CALLS,
    }
    plan = plan_for_config(tiny_config, results=tmp_path / "none")
    assert plan.calls == sum(calls.values()) == plan.to_send == 847 + EXTRA_CALLS
    assert plan.cached == 0
    assert plan.output_tokens == plan.calls
    # the reference judge (a local model, no prices of its own) costs nothing
    reference = stages["reference judge"].plan
    assert reference.sync_cost_usd == 0
    expected = ((plan.input_tokens - reference.input_tokens) * 2.5
                + (plan.output_tokens - reference.output_tokens) * 10.0) / 1e6
    assert stages["prompt audit"].plan.sync_cost_usd > 0  # the main judge's prices
    assert plan.sync_cost_usd == pytest.approx(expected)
    assert plan.batch_cost_usd == pytest.approx(expected / 2)
    # Conversations not prepared yet: max_conversation_chars (1000) characters, cut as the
    # rule cuts them, judged toward the longest topic.
    longest = max(topics().values(), key=len)
    stand_in = template("judge_conversation.txt").format_map(
        {"conversation": "User: " + "c" * 994 + " [...]", "topic": longest})
    assert stages["dataset stances"].plan.input_tokens == 8 * estimate_tokens(stand_in)
    assert "upper bound" in stages["dataset stances"].notes[0]
    assert "upper bound" in stages["value gaps"].notes[0]
    assert stages["agreement"].notes == ()


def test_format_keeps_the_total_lines_and_adds_stages(tiny_config, tmp_path):
    stages = stage_plans(tiny_config, tmp_path / "none")
    plan = plan_for_config(tiny_config, tmp_path / "none")
    total_only = format_plan(plan, "config.yaml", "transformers")
    assert total_only.splitlines()[1] == f"  judge calls            {847 + EXTRA_CALLS:>14,}"
    assert len(total_only.splitlines()) == 8
    text = format_plan(plan, "config.yaml", "transformers", stages, ["cache: x"])
    assert text.startswith(total_only + "\n")
    rows = {line.split()[0]: line.split() for line in text.splitlines()[10:17]}
    assert rows["dataset"][2:4] == ["8", "0"]  # "dataset stances": calls, cached
    assert rows["total"][1] == f"{847 + EXTRA_CALLS:,}"
    assert "upper bound" in text and "cache: x" in text


def test_generated_checkpoints_use_their_exact_prompts(priced_config, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    step = tmp_path / "smollm2-135m" / "base" / "step-0"
    step.mkdir(parents=True)
    pl.DataFrame({"question_id": ["q"], "category": ["Abortion"], "question": ["Why?"],
                  "sample": [0], "response": ["Because."]}).write_parquet(
        step / "generations.parquet")
    plan = by_stage(priced_config, tmp_path)["checkpoints"].plan
    assert plan.calls == 9 * 66 * 1 + 1  # the other 9 checkpoints are estimated


def test_stance_and_gap_outputs_switch_to_exact_prompts(tiny_config, tmp_path):
    results = tmp_path / "results"
    exact = write_sft_outputs(results)
    exact_gaps = write_value_gaps(results)
    write_preference_set(results, "tiny", 2)  # prepared, not searched: min(2, 4) pairs
    stages = by_stage(tiny_config, results)
    stances = stages["dataset stances"]
    assert stances.plan.calls == 3 + 4  # opinionated's judged rows + taskish's estimate
    expected_tokens = sum(estimate_tokens(p) for p in exact)
    assert stances.plan.input_tokens - expected_tokens == 4 * estimate_tokens(
        template("judge_conversation.txt").format_map(
            {"conversation": "User: " + "c" * 994 + " [...]",
             "topic": max(topics().values(), key=len)}))
    assert not any("opinionated" in note for note in stances.notes)
    assert any("taskish" in note for note in stances.notes)
    values = stages["value gaps"]
    assert values.plan.calls == 2 * 2 + 2 * 2  # planted_support's 2 gaps + tiny's 2 pairs
    # tiny, not searched yet: its own texts, judged toward the longest topic
    longest = max(topics().values(), key=len)
    estimated = gap_prompts(0, longest) + gap_prompts(1, longest)
    assert values.plan.input_tokens == sum(estimate_tokens(p) for p in exact_gaps + estimated)
    assert [n.split(":")[0].strip() for n in values.notes[1:]] == ["tiny"]


def test_default_cache_counts_exact_prompts_already_answered(tiny_config, tmp_path):
    judge = tiny_config["judge"] = {
        "backend": "openai", "model": "gpt-4o-2024-08-06",
        "prompt": "config/prompts/judge_response.txt", "top_logprobs": 20, "max_tokens": 1,
        "temperature": 0.0, "prices": tiny_config["judge"]["prices"],
    }
    assert "cache" not in judge and cache_path(judge) == Path(DEFAULT_CACHE)
    results = tmp_path / "results"
    stances = write_sft_outputs(results)
    gaps = write_value_gaps(results)
    agreement = yaml.safe_load((REPO / "resources" / "stance_agreement.yaml").read_text())
    abortion = agreement["Abortion"][0]
    answered = stances[:2] + gaps[1:2] + [
        template("judge_response.txt").format_map(
            {"question": abortion["question"], "response": abortion["support"]["plain"],
             "topic": topics()["Abortion"]})
    ]
    settings = OpenAIJudgeSettings.from_config(judge)
    JudgeCache(DEFAULT_CACHE).put_many(
        (judge_request_key(p, settings), {"top_logprobs": {"support": 0.0}}) for p in answered)
    assert (tmp_path / DEFAULT_CACHE).is_file()
    stages = by_stage(tiny_config, results)
    assert stages["dataset stances"].plan.cached == 2
    assert stages["dataset stances"].plan.to_send == 3 + 4 - 2
    assert stages["agreement"].plan.cached == 1
    assert stages["agreement"].plan.to_send == AGREEMENT_CALLS - 1
    assert stages["value gaps"].plan.cached == 1
    assert stages["value gaps"].plan.to_send == 4 + 2 * 3 - 1  # tiny: min(3, 4) estimated
    assert stages["checkpoints"].plan.cached == 0
    plan = plan_for_config(tiny_config, results)
    assert plan.cached == 4 and plan.to_send == plan.calls - 4


def test_paper_config_prints_every_stage(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(REPO)
    main(["--configfile", "config/paper.yaml", "--results", str(tmp_path / "none")])
    text = capsys.readouterr().out
    for stage in STAGES:
        assert f"  {stage} " in text
    assert "wildchat: not prepared yet: 255,751 items" in text
    assert "ultrafeedback: not prepared yet: 60,908 pairs" in text
    assert "synthetic_oppose" not in text  # not in dataset_stances.preference_sets


def test_the_reference_judge_is_its_own_stage_with_its_own_prices(
        priced_config, tmp_path, monkeypatch):
    """judge.reference: its calls are their own stage, priced at its own prices; exact
    (its sample of the stored answers) where the generations exist."""
    monkeypatch.chdir(REPO)
    reference = priced_config["judge"]["reference"]
    reference["prices"] = {"input_per_million_usd": 100.0, "output_per_million_usd": 0.0}
    reference["answers_per_checkpoint"] = 2
    step = tmp_path / "smollm2-135m" / "base" / "step-0"
    step.mkdir(parents=True)
    pl.DataFrame({"question_id": ["a", "b", "c"], "category": ["Abortion"] * 3,
                  "question": ["Why?"] * 3, "sample": [0, 0, 0],
                  "response": ["One.", "Two.", "Three."]}).write_parquet(
        step / "generations.parquet")
    stages = by_stage(priced_config, tmp_path)
    plan = stages["reference judge"].plan
    assert plan.calls == 9 * 2 + 2  # 9 estimated checkpoints, 2 exact answers of 3
    assert plan.sync_cost_usd == pytest.approx(plan.input_tokens * 100.0 / 1e6)
    assert "9 checkpoints not generated yet" in stages["reference judge"].notes[0]
    # the main judge's stages are as they were
    assert stages["checkpoints"].plan.calls == 9 * 66 + 3
    del priced_config["judge"]["reference"]
    assert by_stage(priced_config, tmp_path)["reference judge"].plan.calls == 0


def test_the_prompt_audit_is_its_own_stage_exact_once_every_checkpoint_exists(
        priced_config, tmp_path, monkeypatch):
    from value_drifts.core.study import load_study

    monkeypatch.chdir(REPO)
    study = load_study(priced_config)
    assert by_stage(priced_config, tmp_path)["prompt audit"].plan.calls == AUDIT_CALLS
    for model, run, step in study.plan.evaluated_checkpoints():
        folder = tmp_path / model / run / f"step-{step}"
        folder.mkdir(parents=True)
        pl.DataFrame({"question_id": ["a", "b"], "category": ["Abortion"] * 2,
                      "question": ["Why?"] * 2, "sample": [0, 0],
                      "response": [f"{run} {step}", ""]}).write_parquet(
            folder / "generations.parquet")
    stage = by_stage(priced_config, tmp_path)["prompt audit"]
    # 10 non-empty answers (empty ones are never read), each read with 3 prompts
    assert stage.plan.calls == 3 * 10 and stage.notes == ()
    priced_config["judge"].pop("audit")
    assert by_stage(priced_config, tmp_path)["prompt audit"].plan.calls == 0
