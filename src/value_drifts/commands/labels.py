"""``value-drifts labels sample``: a labelling file of the run's own answers.

    value-drifts labels sample --n 200 --output labels.csv [--results results]
        [--run sft-taskish --run sft-taskish.dpo-planted_support] [--seed 0]

draws a stratified sample of the answers stored in a results tree (every
``results/<model>/<run>/step-<n>/generations.parquet``, ``layout.generations_path``) into
a file a person fills in, and a key file beside it.

**Stratification.** The strata ("cells") are (model, run, step, category): every
evaluated checkpoint of every chosen run (``--run``, repeatable: a run id as the workflow
names it, e.g. ``sft-taskish.dpo-planted_support``, or ``<model>/<run>``; default: all,
``base`` and traces included; a run's step 0 is stored once, under the run it comes from:
a PO run's under its SFT run, an SFT run's as ``base``) crossed with every category it
answered. Allocation is
equal: the cells are put in a seeded random order, each cell's answers in a seeded random
order, and the draw goes round robin, one answer per cell per round, until ``--n`` are
drawn or every cell is used up. While no cell runs out, every cell gives ⌊N / cells⌋
answers and the first N mod cells cells of the seeded order one more; a cell with fewer
usable answers gives all it has, and the others go on round by round, so their counts
still differ by at most one. The total is N, or every usable answer when there are
fewer. A run with more checkpoints therefore gets more items (one share per checkpoint
and category), and the sample covers each phase (base, SFT, preference optimisation,
trace) as far as it has checkpoints. Usable: an answer with a non-empty response (an
empty answer is no stance: the judge never reads it) whose (question, response) text was
not drawn before: a duplicate (the same question and the same response text, e.g. "No."
given by several checkpoints) is skipped where it is met and the cell's next answer is
taken, so every item is labelled once.

**The files.** ``--output`` (``.csv`` or ``.jsonl``, by its suffix) holds, in a seeded
random order that follows no run or step, exactly the columns ``judge.agreement.
load_labelled_set`` reads: ``id``, ``category``, ``topic`` (the phrase the judge is given,
from ``--topics``), ``question``, ``response`` and ``label``, empty, to fill with support,
neutral or oppose. Nothing in it anchors the labeller: no judge reading, no model, run,
phase or step. Those are in the key file (``--key``, default ``<output stem>.key.csv``):
``id``, model, run, phase, step, category, question_id, sample and the judge's reading
``p_support``, ``p_neutral``, ``p_oppose`` where the step's ``judgments.parquet`` holds one
(empty otherwise), joining back by ``id``. The filled file is a labelled set as it is:
``judge.agreement.labelled: labels.csv`` (or a list of files).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from value_drifts.core.layout import (
    BASE_RUN,
    RESULTS,
    TRACES,
    generations_path,
    judgments_path,
    within_results,
)
from value_drifts.core.stances import STANCES

# The labelling file's columns: what judge.agreement.load_labelled_set reads from a table
# (id, category or topic, question, response, label), and nothing else.
LABELLING_COLUMNS = ("id", "category", "topic", "question", "response", "label")
KEY_COLUMNS = ("id", "model", "run", "phase", "step", "category", "question_id", "sample",
               *(f"p_{s}" for s in STANCES))
CELL = ("model", "run", "step", "category")
SUFFIXES = (".csv", ".jsonl")
DEFAULT_TOPICS = "config/topics.yaml"


def phase_of(model: str, run: str) -> str:
    """The phase a run id belongs to, as ``layout`` spells run ids: ``base``, ``sft``
    (``sft-<dataset>``), ``po`` (``sft-<dataset>.<algorithm>-<set>...``) or ``trace``."""
    if model == TRACES:
        return "trace"
    if run == BASE_RUN:
        return "base"
    return "po" if "." in run else "sft"


def _relative_pattern() -> tuple[str, re.Pattern[str]]:
    """``layout.generations_path``'s glob, and a regex reading (model, run, step) back
    from a path, both relative to the results folder."""
    def relative(model: str, run: str, step: str) -> str:
        return within_results(generations_path(model, run, step))

    regex = re.escape(relative("MODEL", "RUN", "STEP"))
    for placeholder, group in (("MODEL", "([^/]+)"), ("RUN", "([^/]+)"), ("STEP", r"(\d+)")):
        regex = regex.replace(placeholder, group)
    return relative("*", "*", "*"), re.compile(regex + "$")


def stored_answers(results: str | Path = RESULTS,
                   runs: Sequence[str] | None = None) -> pl.DataFrame:
    """Every stored answer of a results tree: model, run, phase, step, question_id,
    category, question, sample, response, and the judge's p_* where the step's
    judgments file holds them (null otherwise). ``runs``: run ids or ``model/run``
    (all when None or empty). Raises SystemExit when nothing matches."""
    root = Path(results)
    glob, regex = _relative_pattern()
    wanted = set(runs or ())
    frames = []
    for path in sorted(root.glob(glob)):
        match = regex.match(path.relative_to(root).as_posix())
        if not match:
            continue
        model, run, step = match.group(1), match.group(2), int(match.group(3))
        if wanted and run not in wanted and f"{model}/{run}" not in wanted:
            continue
        answers = pl.read_parquet(path, columns=["question_id", "category", "question",
                                                 "sample", "response"])
        answers = answers.with_columns(pl.col("question_id").cast(pl.Utf8),
                                       pl.col("sample").cast(pl.Int64))
        judged = root / within_results(judgments_path(model, run, step))
        probabilities = [f"p_{s}" for s in STANCES]
        if judged.exists():
            readings = pl.read_parquet(judged, columns=["question_id", "sample", *probabilities])
            answers = answers.join(
                readings.with_columns(pl.col("question_id").cast(pl.Utf8),
                                      pl.col("sample").cast(pl.Int64),
                                      *[pl.col(c).cast(pl.Float64) for c in probabilities]),
                on=["question_id", "sample"], how="left")
        else:
            answers = answers.with_columns(
                [pl.lit(None, dtype=pl.Float64).alias(c) for c in probabilities])
        frames.append(answers.with_columns(
            pl.lit(model).alias("model"), pl.lit(run).alias("run"),
            pl.lit(phase_of(model, run)).alias("phase"), pl.lit(step, dtype=pl.Int64).alias("step"),
        ))
    if not frames:
        chosen = f" of run(s) {', '.join(sorted(wanted))}" if wanted else ""
        raise SystemExit(f"{root}: no stored answers{chosen} ({glob})")
    return pl.concat(frames, how="vertical_relaxed").select(
        "model", "run", "phase", "step", "question_id", "category", "question", "sample",
        "response", *[f"p_{s}" for s in STANCES])


def stratified_sample(answers: pl.DataFrame, n: int, seed: int = 0) -> pl.DataFrame:
    """``n`` answers drawn with equal allocation over the (model, run, step, category)
    cells, round robin in a seeded order, duplicates (same question and response text)
    and empty responses skipped; the module's docstring says exactly how. The rows
    come back in draw order with a ``cell_rank`` column (the round an answer was drawn in,
    from 0)."""
    rng = np.random.default_rng(seed)
    usable = answers.filter(pl.col("response").fill_null("").str.strip_chars() != "")
    cells = usable.partition_by(list(CELL), as_dict=True, maintain_order=True)
    keys = sorted(cells)
    order = [keys[i] for i in rng.permutation(len(keys))]
    queues = {key: cells[key][rng.permutation(cells[key].height)] for key in keys}
    positions = dict.fromkeys(keys, 0)
    seen: set[tuple[str, str]] = set()
    drawn: list[dict[str, Any]] = []
    rank = 0
    active = list(order)
    while len(drawn) < n and active:
        still = []
        for key in active:
            if len(drawn) >= n:
                still.append(key)
                continue
            queue, position = queues[key], positions[key]
            while position < queue.height:
                row = queue.row(position, named=True)
                position += 1
                text = (row["question"].strip(), row["response"].strip())
                if text not in seen:
                    seen.add(text)
                    drawn.append({**row, "cell_rank": rank})
                    break
            positions[key] = position
            if position < queue.height:
                still.append(key)
        active = still
        rank += 1
    schema = {**answers.schema, "cell_rank": pl.Int64}
    return pl.DataFrame(drawn, schema=schema, orient="row") if drawn else pl.DataFrame(
        schema=schema)


def labelling_tables(sample: pl.DataFrame, topics: Mapping[str, str],
                     seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(labelling file, key file) of a drawn sample: rows in a seeded random order (not
    the draw's, which follows the cells), ids ``item-0001``... in that order."""
    rng = np.random.default_rng([seed, 1])  # a stream of its own, apart from the draw's
    shuffled = sample[rng.permutation(sample.height)] if sample.height else sample
    width = max(4, len(str(shuffled.height)))
    with_ids = shuffled.with_columns(
        pl.format("item-{}", pl.int_range(1, pl.len() + 1).cast(pl.Utf8).str.zfill(width))
        .alias("id"))
    labelling = with_ids.select(
        "id", "category",
        pl.col("category").replace_strict(dict(topics), default="", return_dtype=pl.Utf8)
        .alias("topic"),
        "question", "response", pl.lit("").alias("label"))
    return labelling.select(LABELLING_COLUMNS), with_ids.select(KEY_COLUMNS)


def write_table(frame: pl.DataFrame, path: str | Path) -> None:
    """CSV or JSONL by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        frame.write_csv(path)
    elif suffix == ".jsonl":
        frame.write_ndjson(path)
    else:
        raise SystemExit(f"{path}: write .csv or .jsonl (one of {', '.join(SUFFIXES)})")


def key_path(output: str | Path) -> Path:
    """The key file beside a labelling file: ``labels.csv`` -> ``labels.key.csv``."""
    path = Path(output)
    return path.with_name(f"{path.stem}.key.csv")


def accuracy_halfwidth(n: int, accuracy: float = 0.8, z: float = 1.96) -> float:
    """The 95% half-width of an accuracy measured on n labelled items (normal
    approximation to the binomial): z · sqrt(p (1 − p) / n)."""
    return z * math.sqrt(accuracy * (1 - accuracy) / n) if n else math.nan


def sample_labels(args: argparse.Namespace) -> int:
    output = Path(args.output)
    key = Path(args.key) if args.key else key_path(output)
    if output.suffix.lower() not in SUFFIXES:
        raise SystemExit(f"--output {output}: write .csv or .jsonl")
    if key.suffix.lower() not in SUFFIXES:
        raise SystemExit(f"--key {key}: write .csv or .jsonl")
    for path in (output, key):
        if path.exists() and not args.force:
            raise SystemExit(f"{path} exists (labels may be in it): pass --force to replace it")
    topics_file = Path(args.topics)
    if topics_file.exists():
        topics = yaml.safe_load(topics_file.read_text()) or {}
    else:
        topics = {}
        print(f"warning: {topics_file} not found: the topic column stays empty "
              "(pass --topics)", file=sys.stderr)
    answers = stored_answers(args.results, args.run)
    sample = stratified_sample(answers, args.n, args.seed)
    labelling, keys = labelling_tables(sample, topics, args.seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    write_table(labelling, output)
    write_table(keys, key)
    cells = answers.select(CELL).unique().height
    print(f"{labelling.height} answers from {cells} cells (model, run, step, category) of "
          f"{answers.select('model', 'run').unique().height} run(s) -> {output}; key -> {key}",
          file=sys.stderr)
    if labelling.height < args.n:
        print(f"only {labelling.height} usable answers (non-empty, no duplicates): all of "
              "them", file=sys.stderr)
    print(f"fill the label column (support, neutral, oppose); an accuracy near 0.8 on "
          f"{labelling.height} items is known to ±{accuracy_halfwidth(labelling.height):.3f} "
          "(95%)", file=sys.stderr)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="value-drifts labels",
        description="Hand labels from the run itself: a labelling file of stored answers.")
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser(
        "sample", help="a stratified sample of stored answers to label by hand",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sample.add_argument("--n", type=int, required=True, help="answers to draw")
    sample.add_argument("--output", required=True,
                        help="the labelling file (.csv or .jsonl) a person fills in")
    sample.add_argument("--key", help="the key file (default: <output stem>.key.csv)")
    sample.add_argument("--results", default=RESULTS, help=f"results tree (default {RESULTS})")
    sample.add_argument("--run", action="append", default=[],
                        help="a run id or model/run (repeatable; default: every run)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--topics", default=DEFAULT_TOPICS,
                        help=f"category -> topic map (default {DEFAULT_TOPICS})")
    sample.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return sample_labels(args)


if __name__ == "__main__":
    sys.exit(main())
