"""The ``value-gap`` command: clear errors for bad input, and a real run on the shipped sample
with a stand-in judge (the local OpenAI-protocol test server) through make_backend."""

import json
import math
import os
import subprocess
import sys
import tomllib

import numpy as np
import polars as pl
import pytest
import yaml

from tests.support.judge_test_server import FakeOpenAIServer
from tests.support.workflow import REPO
from value_drifts.commands.value_gap import input_notes, main, read_table, text_pairs

SAMPLE = REPO / "resources" / "value_gap_sample.jsonl"
MIXED_KINDS = REPO / "tests" / "fixtures" / "value_gap_inputs" / "mixed_kinds.jsonl"
COLUMNS = {"prompt": None, "chosen": "chosen", "rejected": "rejected"}
BOM = "\ufeff"


def _cli(*args, cwd=REPO):
    """The command as a user runs it, in a subprocess (exit code, stdout, stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "value_drifts.commands.value_gap", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ('{"prompt": "a", "answer": "b"}\n', [], "missing column(s) ['chosen', 'rejected']"),
        ("", [], "is empty"),
        ("{not json\n", [], "pairs.jsonl: line 1, column 2: not valid JSON (Expecting property"),
        ('{"prompt": "q", "chosen": "", "rejected": "x"}\n', [], "no usable pairs"),
        ('{"q": "a", "c": "b", "r": "c"}\n', ["--prompt-column", "q"],
         "missing column(s) ['chosen'"),
        ('{"prompt": "q", "chosen": "a", "rejected": "b"}\n', ["--prompt-column", "question"],
         "missing column(s) ['question']"),
    ],
)
def test_bad_input_fails_with_one_clear_line(tmp_path, capsys, content, args, message):
    data = tmp_path / "pairs.jsonl"
    data.write_text(content)
    assert main([str(data), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("value-gap: error:")


def test_missing_unknown_and_empty_files(tmp_path, capsys):
    assert main([str(tmp_path / "nope.jsonl")]) == 2
    assert capsys.readouterr().err == f"value-gap: error: {tmp_path / 'nope.jsonl'}: no such file\n"
    (tmp_path / "x.txt").write_text("hello")
    assert main([str(tmp_path / "x.txt")]) == 2
    assert "unknown file type" in capsys.readouterr().err
    pl.DataFrame({"prompt": [], "chosen": [], "rejected": []},
                 schema={c: pl.Utf8 for c in ("prompt", "chosen", "rejected")}).write_parquet(
        tmp_path / "empty.parquet")
    assert main([str(tmp_path / "empty.parquet")]) == 2
    assert "has no rows" in capsys.readouterr().err


def test_missing_judge_model_is_a_clear_error(tmp_path):
    judge = tmp_path / "judge.yaml"
    judge.write_text(yaml.safe_dump({"backend": "transformers", "model": "adapted",
                                     "prompt": "config/prompts/judge_response.txt"}))
    code, _, err = _cli(SAMPLE, "--judge-config", judge, "--judge-model", tmp_path / "none")
    assert code == 2 and "does not exist" in err and "Traceback" not in err




def test_console_script_points_at_main():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["value-gap"] == "value_drifts.commands.value_gap:main"


def test_sample_run_prints_a_summary_per_topic_and_writes_the_histogram(tmp_path):
    with FakeOpenAIServer() as server:
        judge = tmp_path / "judge.yaml"
        judge.write_text(yaml.safe_dump({
            "backend": "openai", "model": "fake-judge", "base_url": server.base_url,
            "require_api_key": False, "prompt": str(REPO / "config/prompts/judge_response.txt"),
            "cache": str(tmp_path / "cache.sqlite"), "top_logprobs": 20,
        }))
        code, out, err = _cli(
            SAMPLE, "--judge-config", judge, "--output", tmp_path / "gap.png",
            "--pairs-output", tmp_path / "pairs.parquet", "--threshold", "0.3", cwd=REPO,
        )
    assert code == 0, err
    pairs = pl.read_parquet(tmp_path / "pairs.parquet")
    # The 4 task-like prompts match no question; the 12 value-laden ones do.
    assert "16 rows, 16 pairs, 12 with a topic (4 without a question" in out
    assert pairs.height == 12 and pairs["similarity"].min() >= 0.5
    chosen = pairs.select("chosen_p_support", "chosen_p_neutral", "chosen_p_oppose").to_numpy()
    rejected = pairs.select(
        "rejected_p_support", "rejected_p_neutral", "rejected_p_oppose").to_numpy()
    np.testing.assert_allclose(pairs["distance"], np.linalg.norm(chosen - rejected, axis=1))
    assert (pairs["distance"] <= math.sqrt(2)).all()
    overall = next(line for line in out.splitlines() if line.startswith("All topics"))
    assert overall.split()[2] == "12"
    assert overall.split()[3] == f"{pairs['distance'].mean():.3f}"
    assert overall.split()[4] == f"{(pairs['distance'] > 0.3).mean():.1%}"
    immigration = next(line for line in out.splitlines() if line.startswith("Immigration"))
    assert immigration.split()[2] == str(
        pairs.filter(pl.col("category") == "Immigration Policies").height)
    assert (tmp_path / "gap.png").stat().st_size > 5000


def test_sample_file_is_valid():
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    assert len(rows) == 16 and all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)


# --- input files as they come -------------------------------------------------------------


def _write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def _jsonl(path, rows, prefix=""):
    return _write(path, prefix + "".join(json.dumps(row) + "\n" for row in rows))


def _read(path, prompt=None, category=None):
    """What the judge would see: the pairs' texts, and the counts of how the rows were read."""
    names = [prompt or "prompt", "chosen", "rejected", *([category] if category else [])]
    table = read_table(str(path), names=names)
    pairs, counts = text_pairs(table, {**COLUMNS, "prompt": prompt}, category)
    return pairs.drop("prompt_embed").rows(), counts


def _error(capsys, *args):
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("value-gap: error: ") and err.count("\n") == 1, err
    return err.removeprefix("value-gap: error: ").rstrip("\n")


ROW = {"prompt": "Should taxes rise?", "chosen": "Yes.", "rejected": "No."}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pairs.jsonl", BOM + json.dumps(ROW) + "\n"),
        ("pairs.ndjson", BOM + json.dumps(ROW)),
        ("pairs.json", BOM + json.dumps([ROW])),
        ("pairs.csv", BOM + "prompt,chosen,rejected\nShould taxes rise?,Yes.,No.\n"),
        # Files concatenated after the first: a byte-order mark starts a later line.
        ("cat.jsonl", BOM + json.dumps(ROW) + "\n" + BOM + json.dumps(ROW) + "\n"),
    ],
)
def test_a_byte_order_mark_is_read_past(tmp_path, name, text):
    pairs, counts = _read(_write(tmp_path / name, text))
    assert set(pairs) == {("Should taxes rise?", "Yes.", "No.")}
    assert counts["skipped"] == {}


def test_utf16_and_bad_bytes_are_errors_naming_the_line(tmp_path, capsys):
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes(json.dumps(ROW).encode("utf-16"))
    assert _error(capsys, utf16) == (
        f"{utf16} is UTF-16 text (byte-order mark ff fe); save it as UTF-8")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"prompt,chosen,rejected\nq,a,b\nq,caf\xe9,b\n")
    assert _error(capsys, latin) == f"{latin}: line 3: not UTF-8 text (byte 0xe9)"
    latin.write_bytes(BOM.encode() + b"prompt,chosen,rejected\nq,\xff,b\n")
    assert _error(capsys, latin) == f"{latin}: line 2: not UTF-8 text (byte 0xff)"


def test_a_column_first_present_after_row_100_is_read(tmp_path):
    rows = [{**ROW, "prompt": f"Question {i}?"} for i in range(150)]
    for row in rows[120:]:
        row["category"] = "Economic and Social Policy"
    for name in ("late.jsonl", "late.json"):
        path = tmp_path / name
        if name.endswith(".json"):
            _write(path, json.dumps(rows))
        else:
            _jsonl(path, rows)
        table = read_table(str(path), names=["prompt", "chosen", "rejected", "category"])
        assert table.columns == ["prompt", "chosen", "rejected", "category"]
        pairs, _ = text_pairs(table, COLUMNS, "category")
        assert pairs["category"].to_list() == [None] * 120 + ["Economic and Social Policy"] * 30


def test_a_field_whose_type_changes_mid_file_is_read_row_by_row(tmp_path):
    # Strings for 120 rows, then message lists, then a list that is no message list: polars
    # would have read the lists as the strings '[{"role": ...}]' and '["yes"]'.
    rows = [{**ROW, "prompt": f"Q{i}?"} for i in range(130)]
    for row in rows[120:]:
        row["chosen"] = [{"role": "assistant", "content": f"Listed {row['prompt']}"}]
    rows[125]["chosen"] = ["yes"]
    rows[127]["rejected"] = {"content": "No."}
    pairs, counts = _read(_jsonl(tmp_path / "mixed.jsonl", rows))
    assert len(pairs) == 128
    assert pairs[119] == ("Q119?", "Yes.", "No.")
    assert pairs[120] == ("Q120?", "Listed Q120?", "No.")
    assert counts["skipped"] == {
        "chosen: a list of str, not a string or a message list": 1,
        "rejected: a dict with keys ['content'], not a string or a message list": 1,
    }
    assert counts["first"]["chosen: a list of str, not a string or a message list"] == "line 126"
    assert input_notes(counts) == [
        ("skipped 2 of 130 rows: chosen: a list of str, not a string or a message list: 1 "
         "(first: line 126); rejected: a dict with keys ['content'], not a string or a message "
         "list: 1 (first: line 128)")
    ]


def test_content_parts_are_judged_as_their_text_and_other_parts_are_counted(tmp_path):
    def parts(*items):
        return [{"type": "text", "text": t} if isinstance(t, str) else t for t in items]

    image = {"type": "image", "image": "chart.png"}
    rows = [
        {"prompt": [{"role": "user", "content": parts("Part one.", "Part two.")}],
         "chosen": [{"role": "assistant", "content": parts("Yes,", image, "look.")}],
         "rejected": [{"role": "assistant", "content": parts("No.")}]},
        {"prompt": [{"role": "user", "content": parts(image, "What is shown?")}],
         "chosen": [{"role": "assistant", "content": parts(image)}],
         "rejected": "Nothing."},
        {"prompt": [{"role": "user", "content": parts("Hear this", {"type": "input_audio"})}],
         "chosen": "Heard.", "rejected": "Not heard."},
    ]
    pairs, counts = _read(_jsonl(tmp_path / "parts.jsonl", rows))
    assert pairs == [("Part one.\nPart two.", "Yes,\nlook.", "No."),
                     ("Hear this", "Heard.", "Not heard.")]
    assert counts["skipped"] == {"empty chosen (only image content)": 1}
    assert counts["non_text"] == {"image in chosen": 1, "input_audio in prompt": 1}
    assert input_notes(counts)[1] == (
        "judged on their text only, non-text content left out: image in chosen: 1 "
        "(first: line 1); input_audio in prompt: 1 (first: line 3)")


def test_a_field_may_be_a_message_list_in_one_row_and_a_string_in_the_next(tmp_path):
    rows = [
        {"prompt": [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Is art useful?"}],
         "chosen": [{"role": "assistant", "content": "Yes."}], "rejected": "No."},
        {"prompt": "Is art useful?", "chosen": "Yes!",
         "rejected": [{"role": "assistant", "content": "No!"}]},
        # An explicit prompt, and responses that repeat it as their first turn.
        {"prompt": "Is art useful?",
         "chosen": [{"role": "user", "content": "Is art useful?"},
                    {"role": "assistant", "content": "Often."}],
         "rejected": [{"role": "user", "content": "Is art useful?"},
                      {"role": "assistant", "content": "Rarely."}]},
        # ShareGPT's from/value messages, as trl.maybe_convert_to_chatml reads them.
        {"prompt": [{"from": "human", "value": "Is art useful?"}],
         "chosen": [{"from": "gpt", "value": "Very."}], "rejected": "Not at all."},
    ]
    pairs, counts = _read(_jsonl(tmp_path / "alternating.jsonl", rows))
    assert pairs == [("Is art useful?", "Yes.", "No."), ("Is art useful?", "Yes!", "No!"),
                     ("Is art useful?", "Often.", "Rarely."),
                     ("Is art useful?", "Very.", "Not at all.")]
    assert counts["skipped"] == {}


def test_the_same_rows_read_alike_from_parquet(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": [{"type": "text", "text": "Q?"}]}],
             "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "A"},
                                                          {"type": "image", "text": None}]}],
             "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "B"}]}],
             "images": [b"\x89PNG"]}]
    pl.DataFrame(rows).write_parquet(tmp_path / "pairs.parquet")
    pairs, counts = _read(tmp_path / "pairs.parquet")
    assert pairs == [("Q?", "A", "B")] and counts["non_text"] == {"image in chosen": 1}
    assert counts["first"]["image in chosen"] == "row 1"


def test_strings_holding_serialised_message_lists_are_not_judged_as_json(tmp_path, capsys):
    # A CSV written by pandas from message-list columns holds their Python repr.
    path = _write(tmp_path / "pandas.csv",
                  "prompt,chosen,rejected\n"
                  "Q?,\"[{'role': 'assistant', 'content': 'A.'}]\",\"[{'role': 'assistant', "
                  "'content': 'B.'}]\"\n")
    assert _error(capsys, path) == (
        "no usable pairs: all 1 row skipped: chosen: a string holding a serialised message list, "
        "not a list: 1 (first: line 2); the data has columns ['prompt', 'chosen', 'rejected'] "
        "(TRL's preference type)")


def test_csv_fields_keep_quoted_newlines_and_commas(tmp_path):
    path = _write(tmp_path / "pairs.csv",
                  'prompt,chosen,rejected\r\n"Two\r\nlines?","Yes, two.\nReally.",No\r\n'
                  "\r\n"  # a blank line is no row
                  '"Say ""hi""",hi,"""hi"""\r\n')
    table = read_table(str(path), names=["prompt", "chosen", "rejected"])
    assert table.places == ["line 2", "line 6"]
    assert read_table(str(path), limit=1).places == ["line 2"]
    pairs, _ = text_pairs(table, COLUMNS, None)
    assert pairs.drop("prompt_embed").rows() == [
        ("Two\r\nlines?", "Yes, two.\nReally.", "No"), ('Say "hi"', "hi", '"hi"')]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("cut.jsonl", json.dumps(ROW) + "\n" + json.dumps(ROW) + "\n" + json.dumps(ROW)[:25],
         ("line 3, column 12: not valid JSON (Unterminated string starting) "
          "(the last line: is the file cut short?)")),
        ("mid.jsonl", json.dumps(ROW) + "\n{oops\n" + json.dumps(ROW) + "\n",
         ("line 2, column 2: not valid JSON (Expecting property name enclosed in double "
          "quotes)")),
        ("array.jsonl", json.dumps(ROW) + "\n" + json.dumps(["a", "b"]) + "\n",
         "line 2 is a list of str, not a JSON object"),
        ("cut.json", json.dumps([ROW, ROW], indent=1)[:-8],
         ("line 10, column 15: not valid JSON (Unterminated string starting) (is the file "
          "cut short?)")),
        ("ends.json", json.dumps([ROW, ROW])[:-1],
         ("line 1, column 142: not valid JSON (Expecting ',' delimiter) (is the file cut "
          "short?)")),
        ("scalars.json", json.dumps([ROW, 3]), "record 2 is an int, not an object"),
        ("ragged.csv", "prompt,chosen,rejected\nq,a,b\nq,a,b,c\n",
         "line 3 has 4 fields, the header has 3"),
        ("short.csv", "prompt,chosen,rejected\nq,a,b\nq,a\n",
         "line 3 has 2 fields, the header has 3"),
        ("quote.csv", 'prompt,chosen,rejected\nq,a,b\n"q,a,b\n',
         "line 3: not valid CSV (unexpected end of data)"),
        ("repeated.csv", "prompt,chosen,chosen\nq,a,b\n",
         "line 1: repeated column name(s) ['chosen']"),
    ],
)
def test_an_unreadable_file_names_the_line_and_what_is_wrong(tmp_path, capsys, name, text,
                                                             message):
    path = _write(tmp_path / name, text)
    assert _error(capsys, path) == f"{path}: {message}"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"prompt": "q", "completion": "a", "label": True}],
         ("missing column(s) ['chosen', 'rejected']; the data has columns ['prompt', "
          "'completion', 'label'] (TRL's unpaired preference type)")),
        ([{"messages": [{"role": "user", "content": "q"}]}],
         ("missing column(s) ['chosen', 'rejected']; the data has columns ['messages'] "
          "(TRL's language modeling type)")),
        ([{"question": "q", "good": "a", "bad": "b"}],
         ("missing column(s) ['chosen', 'rejected']; the data has columns ['question', 'good', "
          "'bad']")),
    ],
)
def test_another_trl_type_is_named_with_the_columns_seen(tmp_path, capsys, rows, message):
    assert _error(capsys, _jsonl(tmp_path / "other.jsonl", rows)) == (
        message + " (choose others with --prompt-column/--chosen-column/--rejected-column)")


def test_rows_in_no_format_are_an_error_naming_it_not_empty_fields(tmp_path, capsys):
    rows = [{"prompt": "q", "chosen": {"text": "a"}, "rejected": {"text": "b"}}] * 3
    rows.append({"prompt": "q", "chosen": "a", "rejected": None})
    assert _error(capsys, _jsonl(tmp_path / "dicts.jsonl", rows)) == (
        "no usable pairs: all 4 rows skipped: chosen: a dict with keys ['text'], not a string "
        "or a message list: 3 (first: line 1); missing rejected: 1 (first: line 4); the data "
        "has columns ['prompt', 'chosen', 'rejected'] (TRL's preference type)")


def test_an_implicit_prompt_is_the_shared_start_of_chosen_and_rejected(tmp_path):
    user = {"role": "user", "content": "What color is the sky?"}
    rows = [
        {"chosen": [user, {"role": "assistant", "content": "It is blue."}],
         "rejected": [user, {"role": "assistant", "content": "It is green."}]},
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},
        {"chosen": "Yes.", "rejected": "No."},
        {"chosen": "Yes.", "rejected": [{"role": "assistant", "content": "No."}]},
    ]
    pairs, counts = _read(_jsonl(tmp_path / "implicit.jsonl", rows))
    assert pairs == [("What color is the sky?", "It is blue.", "It is green."),
                     ("The sky is", " blue.", " green.")]
    assert counts["implicit_prompt"] and counts["skipped"] == {
        "implicit prompt: chosen and rejected share no start": 1,
        "implicit prompt: chosen and rejected are not both strings or both message lists": 1}
    assert input_notes(counts)[0] == ("prompt: implicit, the shared start of chosen and "
                                      "rejected (TRL's preference type with implicit prompt)")


class _HubRecorder:
    """Stands in for datasets.load_dataset: records what it was asked for."""

    def __init__(self):
        self.calls = []

    def __call__(self, path, name=None, data_files=None, split=None, **kwargs):
        from datasets import Dataset

        self.calls.append((path, name, data_files, split))
        return Dataset.from_dict({
            "prompt": ["Hub question?"] * 3,
            "chosen": [[{"role": "assistant", "content": "Hub yes."}]] * 3,
            "rejected": ["Hub no."] * 3,
            "images": [b"not decoded"] * 3,
        })


def test_a_hub_id_with_dots_goes_to_the_hub_and_a_missing_file_does_not(
        tmp_path, monkeypatch, capsys):
    import datasets

    hub = _HubRecorder()
    monkeypatch.setattr(datasets, "load_dataset", hub)
    monkeypatch.chdir(tmp_path)
    table = read_table("org/name-2.5-data", "test", ["prompt", "chosen", "rejected"], limit=2)
    assert hub.calls == [("org/name-2.5-data", None, None, "test")]
    assert table.columns == ["prompt", "chosen", "rejected", "images"]
    assert table.rows == [{"prompt": "Hub question?",
                           "chosen": [{"role": "assistant", "content": "Hub yes."}],
                           "rejected": "Hub no."}] * 2
    assert read_table("trl-lib/ultrafeedback_binarized").name == "trl-lib/ultrafeedback_binarized"
    hub.calls.clear()
    for missing in ("data/pairs.jsonl", "org/name.csv", "./org/name", "/abs/org/name",
                    "a/b/c", "name-2.5-data"):
        assert _error(capsys, missing) == f"{missing}: no such file"
    assert hub.calls == []
    (tmp_path / "org").mkdir()
    _jsonl(tmp_path / "org" / "name-2.5-data", [ROW])  # a local file wins over the hub
    assert _error(capsys, "org/name-2.5-data").startswith("org/name-2.5-data: unknown file type")
    assert hub.calls == []


def test_a_hub_failure_is_one_line(monkeypatch, capsys):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'org/x-1.0' on the Hub (LocalEntryNotFoundError)\n"
                              "more detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert _error(capsys, "org/x-1.0") == (
        "org/x-1.0: no such file, nor a hub dataset (split 'train'): ConnectionError: "
        "Couldn't reach 'org/x-1.0' on the Hub (LocalEntryNotFoundError)")


def test_mixed_kinds_run_end_to_end_and_the_judge_sees_their_text(tmp_path):
    assert MIXED_KINDS.read_bytes().startswith(BOM.encode())
    with FakeOpenAIServer() as server:
        judge = tmp_path / "judge.yaml"
        judge.write_text(yaml.safe_dump({
            "backend": "openai", "model": "fake-judge", "base_url": server.base_url,
            "require_api_key": False, "prompt": str(REPO / "config/prompts/judge_response.txt"),
            "cache": str(tmp_path / "cache.sqlite"), "top_logprobs": 20,
        }))
        code, out, err = _cli(MIXED_KINDS, "--judge-config", judge, "--category-column",
                              "category", "--output", tmp_path / "gap.png",
                              "--pairs-output", tmp_path / "pairs.parquet")
        judged = sorted(server.hits)
    assert code == 0, err
    assert out.splitlines()[:3] == [
        "mixed_kinds: 5 rows, 3 pairs, 3 with a topic (0 without a question at cosine >= 0.5)",
        ("skipped 2 of 5 rows: chosen: a dict with keys ['text'], not a string or a message "
         "list: 1 (first: line 4); empty chosen (only image content): 1 (first: line 5)"),
        ("judged on their text only, non-text content left out: image in chosen: 1 "
         "(first: line 2)"),
    ]
    responses = sorted(text.split("Response: ")[1].split("\nTopic: ")[0] for text in judged)
    assert responses == sorted([
        "Yes. Immigrants bring skills and fill labour shortages.",
        "No. Immigration should be cut sharply.",
        "Yes.\nRemote work saves commuting time.", "No. Offices are better for everyone.",
        "Yes, it is irreversible.", "No, it is just.",
    ])
    assert any("Question: Is remote work good for workers?\n" in text for text in judged)
    assert pl.read_parquet(tmp_path / "pairs.parquet")["category"].to_list() == [
        "Immigration Policies", "Work and Attitudes", "Ethics of Death and Penalty"]


def test_a_category_that_is_no_string_is_counted_and_an_empty_one_is_searched(tmp_path):
    rows = [{**ROW, "category": "Abortion"}, {**ROW, "category": {"name": "Abortion"}},
            {**ROW, "category": ""}]
    table = read_table(str(_jsonl(tmp_path / "categories.jsonl", rows)))
    pairs, counts = text_pairs(table, COLUMNS, "category")
    assert pairs["category"].to_list() == ["Abortion", None]
    assert counts["skipped"] == {"category: a dict with keys ['name'], not a string": 1}
