"""Preference-set loaders on small files in the hub datasets' exact schemas."""

import json

import pytest
import yaml

from tests.support.workflow import REPO
from value_drifts.data.datasets import downsample
from value_drifts.data.preference_pairs import (
    hh_messages,
    load_hub_preference_set,
    template_value_gap_pairs,
)


def _write_jsonl(directory, rows):
    directory.mkdir()
    with open(directory / "train.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return str(directory)


def _uf_row(prompt, chosen, rejected):
    return {
        "source": "evol_instruct",
        "prompt": prompt,
        "chosen": [{"content": prompt, "role": "user"}, {"content": chosen, "role": "assistant"}],
        "chosen-rating": 5.0,
        "chosen-model": "gpt-4",
        "rejected": [{"content": prompt, "role": "user"},
                     {"content": rejected, "role": "assistant"}],
        "rejected-rating": 2.0,
        "rejected-model": "llama-2-7b-chat",
    }


def test_ultrafeedback_rows_convert_and_malformed_ones_are_counted(tmp_path):
    rows = [_uf_row(f"Question {i}?", f"Good answer {i}.", f"Bad answer {i}.") for i in range(6)]
    rows.append(_uf_row("Empty?", "", "Bad."))  # empty chosen response
    rows.append(_uf_row("Same?", "Same.", "Same."))  # no preference signal
    bad_role = _uf_row("Role?", "A.", "B.")
    bad_role["chosen"][-1]["role"] = "user"
    rows.append(bad_role)
    spec = {"hub_id": _write_jsonl(tmp_path / "uf", rows), "format": "ultrafeedback", "size": 4}
    pairs, counts = load_hub_preference_set(spec, seed=0)
    assert counts["loaded"] == 9 and counts["valid"] == 6 and counts["train"] == 4
    assert counts["rejected"] == {
        "empty chosen response": 1, "chosen equals rejected": 1, "chosen is not an assistant turn": 1,
    }
    first = pairs[0]
    assert first["prompt"][-1]["role"] == "user"
    assert first["chosen"][0]["content"].startswith("Good answer")
    assert first["rejected"][0]["content"].startswith("Bad answer")


def test_hh_rlhf_transcripts_split_into_turns(tmp_path):
    rows = [
        {"chosen": "\n\nHuman: Hi there?\n\nAssistant: Hello!\n\nHuman: Help me.\n\nAssistant: Sure.",
         "rejected": "\n\nHuman: Hi there?\n\nAssistant: Hello!\n\nHuman: Help me.\n\nAssistant: No."},
        {"chosen": "\n\nHuman: A?\n\nAssistant: B.", "rejected": "\n\nHuman: C?\n\nAssistant: D."},
        {"chosen": "no speaker tags", "rejected": "at all"},
        {"rejected": "\n\nHuman: missing chosen\n\nAssistant: x"},
    ]
    spec = {"hub_id": _write_jsonl(tmp_path / "hh", rows), "format": "hh_rlhf", "size": 10}
    pairs, counts = load_hub_preference_set(spec, seed=0)
    assert counts["train"] == 1
    assert sum(counts["rejected"].values()) == 3
    assert [t["role"] for t in pairs[0]["prompt"]] == ["user", "assistant", "user"]
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": "Sure."}]


def test_hh_messages_roles():
    assert hh_messages("\n\nHuman: x\n\nAssistant: y") == [
        {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    with pytest.raises(ValueError):
        hh_messages("preamble\n\nHuman: x")


def test_downsample_is_seeded_and_keeps_order():
    rows = [{"i": i} for i in range(100)]
    a, b = downsample(rows, 10, seed=3), downsample(rows, 10, seed=3)
    assert a == b and len(a) == 10
    assert [r["i"] for r in a] == sorted(r["i"] for r in a)
    assert downsample(rows[:5], 10, seed=3) == rows[:5]


@pytest.mark.parametrize("chosen", ["support", "oppose"])
def test_template_pairs_put_the_chosen_stance_first(chosen):
    templates = yaml.safe_load((REPO / "config/synthetic/templates.yaml").read_text())
    topics = yaml.safe_load((REPO / "config/topics.yaml").read_text())
    pairs = template_value_gap_pairs(templates, topics, ["Immigration Policies"], chosen, 12, 0)
    word = {"support": "support", "oppose": "oppose"}
    other = "oppose" if chosen == "support" else "support"
    for pair in pairs:
        assert word[chosen] in pair["chosen"][0]["content"].lower() or (
            chosen == "oppose" and "against" in pair["chosen"][0]["content"].lower())
        assert other in pair["rejected"][0]["content"].lower() or (
            other == "oppose" and "against" in pair["rejected"][0]["content"].lower())
        assert "immigration" in pair["prompt"][0]["content"].lower()
