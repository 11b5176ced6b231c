"""Prompt audit (``judge.audit``): how far the main judge's readings move when the same
answers are read with alternative prompts (other label order, other wording).

The main judge reads a fixed seeded sample of the study's stored answers
(``judge.audit_answers``) with its own prompt and with each alternative, through its
backend and cache; per alternative the audit reports the mean total-variation distance of
the probability vectors (half the L1 distance of (p_support, p_neutral, p_oppose), in
[0, 1]) and the share of answers whose argmax stance flips, over the answers both prompts
could read. The main prompt file is only read, never rewritten. docs/judges.md, "Prompt
audit".
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from value_drifts.core.config import schema_default
from value_drifts.core.stances import STANCES
from value_drifts.judge.run import JudgeBackend, judge_generations

PROBABILITY_COLUMNS = tuple(f"p_{stance}" for stance in STANCES)
# Where an answer comes from in the study-wide sample.
SOURCE_COLUMNS = ("model", "run", "step")


def argmax_stance(probabilities: np.ndarray) -> np.ndarray:
    """The index into ``STANCES`` of each row's largest probability; shape (n, 3) -> (n,)."""
    return np.asarray(probabilities, dtype=float).reshape(-1, len(STANCES)).argmax(axis=1)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total-variation distance of each pair of rows: 0.5 * sum |p - q|; (n, 3) -> (n,),
    in [0, 1]."""
    return 0.5 * np.abs(np.asarray(p, float) - np.asarray(q, float)).sum(axis=1)


def audit_sample(checkpoints: Mapping[tuple[str, str, int], pl.DataFrame], n: int,
                 seed: int) -> pl.DataFrame:
    """A fixed seeded sample of ``n`` answers over every checkpoint (all when there are
    fewer): the generations tables of ``{(model, run, step): generations}`` stacked with
    ``model``, ``run`` and ``step`` columns, ordered by a seeded hash of (model, run,
    step, question_id, sample) and cut to ``n``, so the same tree and seed give the same
    answers whatever order the checkpoints come in. Empty answers are left out (the judge
    never reads them)."""
    frames = [
        generations.select("question_id", "sample", "category", "question", "response")
        .with_columns(pl.lit(model).alias("model"), pl.lit(run).alias("run"),
                      pl.lit(int(step)).alias("step"))
        for (model, run, step), generations in checkpoints.items()
    ]
    if not frames:
        return pl.DataFrame()
    stacked = pl.concat(frames).filter(pl.col("response").str.strip_chars() != "")
    keys = [
        hashlib.sha256(f"{seed}:{m}:{r}:{s}:{q}:{k}".encode()).hexdigest()
        for m, r, s, q, k in stacked.select(*SOURCE_COLUMNS, "question_id", "sample").iter_rows()
    ]
    return (stacked.with_columns(pl.Series("_key", keys)).sort("_key").head(n)
            .drop("_key"))


def audit_summary(main: pl.DataFrame, alternative: pl.DataFrame) -> dict[str, Any]:
    """How far one alternative prompt moves the readings of the same answers (row for
    row): ``answers`` read by both, ``mean_tv`` (mean total-variation distance),
    ``flip_share`` (share whose argmax stance differs), ``flips``, and the answers each
    prompt left ``unreadable``."""
    p = main.select(PROBABILITY_COLUMNS).to_numpy().reshape(-1, 3)
    q = alternative.select(PROBABILITY_COLUMNS).to_numpy().reshape(-1, 3)
    both = ~(np.isnan(p).any(axis=1) | np.isnan(q).any(axis=1))
    flips = int((argmax_stance(p[both]) != argmax_stance(q[both])).sum())
    n = int(both.sum())
    return {
        "answers": n,
        "mean_tv": float(total_variation(p[both], q[both]).mean()) if n else math.nan,
        "flips": flips,
        "flip_share": flips / n if n else math.nan,
        "unreadable_main": int(np.isnan(p).any(axis=1).sum()),
        "unreadable_alternative": int(np.isnan(q).any(axis=1).sum()),
    }


def audit_prompts(
    sample: pl.DataFrame, topics: Mapping[str, str], main_template: str,
    alternatives: Mapping[str, str], backend: JudgeBackend, label_mass: float,
) -> pl.DataFrame:
    """One row per alternative (``prompt``: its name, e.g. its file) with
    ``audit_summary`` of the main judge's readings of ``sample`` with ``main_template``
    and with that alternative's template, both through ``backend``
    (``judge.run.judge_generations``)."""
    main, _ = judge_generations(sample, topics, main_template, backend, label_mass=label_mass)
    rows = []
    for name, template in alternatives.items():
        read, _ = judge_generations(sample, topics, template, backend, label_mass=label_mass)
        rows.append({"prompt": name, **audit_summary(main, read)})
    return pl.DataFrame(rows, schema={
        "prompt": pl.Utf8, "answers": pl.Int64, "mean_tv": pl.Float64, "flips": pl.Int64,
        "flip_share": pl.Float64, "unreadable_main": pl.Int64,
        "unreadable_alternative": pl.Int64,
    })


def audit_markdown(table: pl.DataFrame, main_prompt: str | Path, sampled: int) -> str:
    """The audit table as markdown (NaN as –)."""
    def cell(value, digits=3):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = [
        "# Judge prompt audit", "",
        f"The main judge read {sampled} sampled answers with its prompt ({main_prompt}) and "
        "with each alternative. Mean TV: mean total-variation distance of the stance "
        "probabilities; flips: answers whose most likely stance changed.", "",
        "| alternative prompt | answers | mean TV | flips | flip share | unreadable (main / alt.) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in table.iter_rows(named=True):
        lines.append(
            f"| {row['prompt']} | {row['answers']} | {cell(row['mean_tv'])} | {row['flips']} | "
            f"{cell(row['flip_share'])} | {row['unreadable_main']} / "
            f"{row['unreadable_alternative']} |")
    return "\n".join(lines) + "\n"


def audit_output_settings(judge: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    """What the audit depends on besides the main judge's own settings file: its prompt
    files, the sample size and the seed (``results/settings/judge_audit.json``)."""
    if not judge.get("audit"):
        return None
    return {"audit": list(judge["audit"]), "audit_answers": audit_answers(judge),
            "seed": seed}


def audit_answers(judge: Mapping[str, Any]) -> int:
    """``judge.audit_answers``, or the schema's default for a section handed without it."""
    if "audit_answers" in judge:
        return int(judge["audit_answers"])
    return int(schema_default("judge", "audit_answers"))


def audit_checkpoints(paths: Sequence[str], checkpoints: Sequence[Sequence[Any]]
                      ) -> dict[tuple[str, str, int], pl.DataFrame]:
    """``{(model, run, step): generations}`` from the generations files and their
    checkpoints, in the same order."""
    return {(str(m), str(r), int(s)): pl.read_parquet(path)
            for path, (m, r, s) in zip(paths, checkpoints, strict=True)}
