"""Your own data in TRL's formats (sft_datasets ``messages``/``prompt_completion``,
preference_sets ``preference``) on small JSONL files in tests/fixtures/own_data/, loaded
through ``datasets.load_dataset("json", data_files=...)`` as the workflow loads them."""

import copy

import polars as pl
import pytest

from tests.support.workflow import REPO
from value_drifts.commands.value_gap import text_pairs
from value_drifts.core.config import validate_config
from value_drifts.data.datasets import load_hub_sft_dataset
from value_drifts.data.preference_pairs import load_hub_preference_set
from value_drifts.data.user_files import read_table

OWN_DATA = REPO / "tests" / "fixtures" / "own_data"


def user(content):
    return {"role": "user", "content": content}


def assistant(content):
    return {"role": "assistant", "content": content}


def system(content):
    return {"role": "system", "content": content}


def load_sft(name, **spec):
    # validation_share 0 keeps every valid row in train, in file order.
    return load_hub_sft_dataset({"hub_id": "json", "data_files": str(OWN_DATA / name),
                                 "validation_share": 0, "size": 100, **spec}, seed=0)


def load_pairs(name, **spec):
    return load_hub_preference_set({"hub_id": "json", "data_files": str(OWN_DATA / name),
                                    "format": "preference", "size": 100, **spec}, seed=0)


# --- SFT: messages ---------------------------------------------------------------------


def test_messages_rows_are_read_and_each_malformed_kind_counted_by_reason():
    train, validation, counts = load_sft("sft_messages.jsonl", format="messages")
    assert train == [
        {"messages": [user("What is the capital of France?"), assistant("Paris.")]},
        {"messages": [system("Be brief."), user("Name a colour."), assistant("Blue.")]},
        # Text parts are joined into the content's text.
        {"messages": [user("Describe\nthis poem."), assistant("It rhymes.")]},
    ]
    assert validation == []
    assert counts == {
        "loaded": 10, "valid": 3, "train": 3, "validation": 0,
        "rejected": {
            "empty turn": 1,
            "no final assistant turn": 1,
            "malformed row: non-text content (image)": 1,
            "wrong role": 1,
            "malformed row: a string, not a message list": 1,
            "malformed row: a dict with keys ['content', 'role'], not a string or a message list":
                1,
            "missing field": 1,
        },
    }


def test_messages_column_is_configurable_and_sharegpt_turns_are_read():
    train, _, counts = load_sft("sft_dialog.jsonl", format="messages", messages_column="dialog")
    assert train == [{"messages": [user("Hi there"), assistant("Hello!")]},
                     {"messages": [user("Ping"), assistant("Pong")]}]
    assert counts["rejected"] == {}


def test_a_missing_configured_column_is_an_error_naming_the_columns():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['messages'\].*\['dialog', 'id'\]"):
        load_sft("sft_dialog.jsonl", format="messages")


def test_messages_rows_split_and_downsample_as_the_hub_loaders_do():
    train, validation, counts = load_sft("sft_messages.jsonl", format="messages",
                                         validation_share=0.1, size=1)
    assert (len(train), len(validation)) == (1, 1)
    assert counts["train_before_downsample"] == 2 and counts["valid"] == 3


# --- SFT: prompt_completion ------------------------------------------------------------


def test_prompt_completion_strings_become_a_user_and_an_assistant_turn():
    train, _, counts = load_sft("sft_prompt_completion_strings.jsonl", format="prompt_completion")
    assert train == [{"messages": [user("Name a primary colour."), assistant("Red.")]}]
    assert counts["rejected"] == {"empty turn": 1, "missing field": 1}


def test_prompt_completion_message_lists_are_joined():
    train, _, counts = load_sft("sft_prompt_completion_messages.jsonl", format="prompt_completion")
    assert train == [
        {"messages": [system("Be brief."), user("Capital of Italy?"), assistant("Rome.")]}
    ]
    assert counts["rejected"] == {
        "no final assistant turn": 1, "malformed row: non-text content (image)": 1,
    }


def test_prompt_completion_columns_are_configurable():
    train, _, counts = load_sft("sft_question_answer.jsonl", format="prompt_completion",
                                prompt_column="question", completion_column="answer")
    assert train == [{"messages": [user("What is 2+2?"), assistant("4.")]}]
    assert counts["rejected"] == {}


def test_prepared_sft_rows_write_as_the_prepare_rule_writes_them(tmp_path):
    train, _, _ = load_sft("sft_messages.jsonl", format="messages")
    pl.DataFrame(train).write_parquet(tmp_path / "train.parquet")
    assert pl.read_parquet(tmp_path / "train.parquet").to_dicts() == train


# --- preference ------------------------------------------------------------------------


def pair(prompt, chosen, rejected):
    return {"prompt": prompt, "chosen": [assistant(chosen)], "rejected": [assistant(rejected)]}


def test_explicit_standard_pairs_and_their_rejects_by_reason():
    pairs, counts = load_pairs("pref_explicit_standard.jsonl")
    assert pairs == [pair([user("Is tea good?")], "Yes, in moderation.", "No.")]
    assert counts == {
        "loaded": 5, "valid": 1, "train": 1, "implicit_prompt": False,
        "rejected": {"chosen equals rejected": 1, "empty chosen response": 1,
                     "empty rejected response": 1, "malformed row: missing rejected": 1},
    }


def test_explicit_conversational_pairs_and_their_rejects_by_reason():
    pairs, counts = load_pairs("pref_explicit_conversational.jsonl")
    assert pairs == [
        pair([user("Hi")], "Hello!", "Go away."),
        pair([system("Be kind."), user("Hi"), assistant("Hello."), user("Help me.")],
             "Sure.", "No."),
        pair([user("Two\nparts")], "Yes.", "No."),
    ]
    assert counts["rejected"] == {"prompt does not end with a user turn": 1,
                                  "malformed row: non-text content (image)": 1}


def test_implicit_conversational_prompts_are_the_shared_turns():
    pairs, counts = load_pairs("pref_implicit_conversational.jsonl")
    assert pairs == [
        pair([user("Hi")], "Hello!", "Go away."),
        pair([user("A"), assistant("B"), user("C")], "D", "E"),
    ]
    assert counts["implicit_prompt"] is True
    assert counts["rejected"] == {
        "prompt does not end with a user turn": 1,  # nothing shared
        "chosen equals rejected": 1,
        "malformed row: chosen and rejected are not both strings or both message lists": 1,
    }


def test_implicit_standard_prompts_are_the_shared_text_as_trl_extracts_it():
    pairs, counts = load_pairs("pref_implicit_standard.jsonl")
    # TRL's extract_prompt: the common prefix less its final space, which the responses keep.
    assert pairs == [pair([user("What is 2+2?")], " Four.", " 5.")]
    assert counts["rejected"] == {"empty prompt turn": 1}


def test_preference_columns_are_configurable():
    pairs, counts = load_pairs("pref_renamed.jsonl", prompt_column="question",
                               chosen_column="good", rejected_column="bad")
    assert pairs == [pair([user("Is tea good?")], "Yes.", "No.")]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['better'\]"):
        load_pairs("pref_renamed.jsonl", chosen_column="better", rejected_column="bad")


def test_the_value_gap_command_reads_the_same_files_the_same_way():
    for name in ("pref_explicit_conversational.jsonl", "pref_implicit_conversational.jsonl",
                 "pref_implicit_standard.jsonl"):
        pairs, _ = load_pairs(name)
        frame, _ = text_pairs(read_table(str(OWN_DATA / name)),
                              {"prompt": None, "chosen": "chosen", "rejected": "rejected"}, None)
        judged = {(r["chosen"], r["rejected"]) for r in frame.to_dicts()}
        # value-gap keeps more (it judges an image prompt by its text); never other texts.
        assert {(p["chosen"][-1]["content"], p["rejected"][-1]["content"]) for p in pairs} <= judged


# --- config ----------------------------------------------------------------------------


def test_own_data_config_blocks_validate(small_config):
    config = copy.deepcopy(small_config)
    config["sft_datasets"]["mine"] = {
        "source": "hub", "hub_id": "json", "data_files": "data/my_sft.jsonl",
        "format": "messages", "size": 5000, "save_steps": 100,
    }
    config["sft_datasets"]["mine_pc"] = {
        "source": "hub", "hub_id": "json", "data_files": "data/my_sft.jsonl",
        "format": "prompt_completion", "prompt_column": "question",
        "completion_column": "answer", "size": 5000, "save_steps": 100,
    }
    config.setdefault("preference_sets", {})["my_prefs"] = {
        "source": "hub", "hub_id": "json", "data_files": "data/my_prefs.jsonl",
        "format": "preference", "size": 2000, "prompt_column": "question",
        "chosen_column": "good", "rejected_column": "bad",
    }
    validate_config(config)


def test_value_gap_retrieval_reads_a_local_preference_set_in_trl_format():
    """The teacher pipeline's prompt source (value_gap.hub_prompts) reads the same local
    TRL-format files as the workflow's loaders: a builder with data_files, the spec's format."""
    from value_drifts.data.value_gap_set import hub_prompts

    spec = {"source": "hub", "hub_id": "json", "format": "preference",
            "data_files": str(OWN_DATA / "pref_explicit_conversational.jsonl")}
    prompts, counts = hub_prompts(spec, multi_turn="first_turn")
    assert prompts[:2] == ["Hi", "Hi"]  # the second pair's opening user turn
    assert counts["rows"] == sum(1 for _ in open(spec["data_files"]))
