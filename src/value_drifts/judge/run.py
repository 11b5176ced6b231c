"""Judge a table of generations: render prompts, read stances, count what went wrong."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import polars as pl
from tqdm.auto import tqdm

from value_drifts.core.integrity import DIGEST_COLUMN, SHARDS_COLUMN
from value_drifts.core.job_settings import SETTINGS_COLUMN, settings_path
from value_drifts.core.stances import STANCES
from value_drifts.judge.answer_fit import AnswerFit, fitted_answer
from value_drifts.judge.answer_flags import CUT_TO_FIT, answer_flags, flag_counts
from value_drifts.judge.backends import backend_counts
from value_drifts.judge.canary import canary_counts
from value_drifts.judge.prompt import render
from value_drifts.judge.stance import (
    DEFAULT_MAX_UNREADABLE_SHARE,
    DEFAULT_MIN_LABEL_MASS,
    StanceReading,
    UnreadableJudgeError,
    judge_health,
    read_stance,
    unreadable_problem,
)

# The judge settings that change what the judge answers or how its answers are read.
# Throughput settings (batch_size, concurrency, retries, timeouts, prices, cache path,
# batch polling) change neither and are left out, so editing them changes no fingerprint.
JUDGE_OUTPUT_KEYS = (
    "backend", "model", "base_model", "base_url", "top_logprobs", "max_tokens",
    "temperature", "extra_body", "seed", "vllm", "min_label_mass", "context_tokens",
)


# The reading of an answer the judge is not asked about (an empty one): not a stance.
NOT_A_STANCE = StanceReading(probabilities=(math.nan,) * 3, missing_labels=(), top_token="",
                             top_is_label=True, label_mass=math.nan, readable=False)


class JudgeBackend(Protocol):
    def batches(self, prompts: Sequence[str]) -> Iterator[tuple[int, list[dict[str, float]]]]:
        """Yield (number of prompts done, their first-token top log-probabilities)."""


def min_label_mass(judge: Mapping[str, Any]) -> float:
    """judge.min_label_mass, or its default (``stance.DEFAULT_MIN_LABEL_MASS``)."""
    return float(judge.get("min_label_mass", DEFAULT_MIN_LABEL_MASS))


def max_unreadable_share(judge: Mapping[str, Any]) -> float:
    """judge.max_unreadable_share, or its default (``stance.DEFAULT_MAX_UNREADABLE_SHARE``)."""
    return float(judge.get("max_unreadable_share", DEFAULT_MAX_UNREADABLE_SHARE))


def read_stances(
    prompts: Sequence[str],
    backend: JudgeBackend,
    unit: str = "prompt",
    label_mass: float = DEFAULT_MIN_LABEL_MASS,
) -> list[StanceReading]:
    """Stance readings for rendered judge prompts, through any backend, with progress.
    ``label_mass`` is the minimum label mass of a readable answer (``read_stance``)."""
    tops: list[dict[str, float]] = []
    with tqdm(total=len(prompts), desc="judging", unit=unit) as progress:
        for done, batch in backend.batches(list(prompts)):
            tops.extend(batch)
            progress.update(done)
    return [read_stance(top, min_label_mass=label_mass) for top in tops]


def reading_columns(readings: Sequence[StanceReading]) -> list[pl.Series]:
    """p_support, p_neutral, p_oppose (NaN when unreadable), readable, label_mass,
    top_token, top_is_label and missing_labels, one row per reading."""
    return [
        *[
            pl.Series(f"p_{stance}", [r.probabilities[i] for r in readings], dtype=pl.Float64)
            for i, stance in enumerate(STANCES)
        ],
        pl.Series("readable", [r.readable for r in readings], dtype=pl.Boolean),
        pl.Series("label_mass", [r.label_mass for r in readings], dtype=pl.Float64),
        pl.Series("top_token", [r.top_token for r in readings], dtype=pl.Utf8),
        pl.Series("top_is_label", [r.top_is_label for r in readings], dtype=pl.Boolean),
        pl.Series("missing_labels", [",".join(r.missing_labels) for r in readings], dtype=pl.Utf8),
    ]


def judge_prompts(
    generations: pl.DataFrame, topics: Mapping[str, str], template: str,
    fit: AnswerFit | None,
) -> tuple[list[str], list[int], list[tuple[str, ...]]]:
    """The judge prompts of a checkpoint's answers: (the prompts of the answers asked
    about, their row numbers, every row's answer flags). An empty answer is not asked
    about; one whose prompt does not fit the judge's context (``fit``) is cut to its
    longest head that fits and flagged ``cut_to_fit``."""
    flags = [answer_flags(response, template) for response in generations["response"]]
    asked = [i for i, answer in enumerate(flags) if "empty" not in answer]
    rows = generations.to_dicts()
    prompts = []
    for i in asked:
        row = rows[i]
        topic = topics[row["category"]]
        answer, cut = fitted_answer(template, row["question"], row["response"], topic, fit)
        if cut:
            flags[i] = (*flags[i], CUT_TO_FIT)
        prompts.append(render(template, row["question"], answer, topic))
    return prompts, asked, flags


def judge_generations(
    generations: pl.DataFrame,
    topics: Mapping[str, str],
    template: str,
    backend: JudgeBackend,
    label_mass: float = DEFAULT_MIN_LABEL_MASS,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One row per generation with its stance reading (``reading_columns``) and its
    ``answer_flags`` (comma-joined, ``judge.answer_flags``), plus counts: judged,
    unreadable, off-label top tokens, answers missing a label, the judge health of
    ``stance.judge_health`` under ``health`` and the flag counts under ``answer_flags``.

    An empty answer is not sent to the judge: its reading is NaN (not a stance) and it
    counts under ``answer_flags.empty``, not in the judge's health, whose gate is about
    the judge. An answer whose prompt does not fit the judge's context (the backend's
    ``answer_fit``, ``judge.answer_fit``) is judged on its longest head that fits and
    flagged ``cut_to_fit``."""
    responses = generations["response"].to_list()
    prompts, asked, flags = judge_prompts(
        generations, topics, template, getattr(backend, "answer_fit", None))
    judged = read_stances(prompts, backend, unit="response", label_mass=label_mass)
    readings = [NOT_A_STANCE] * len(responses)
    for i, reading in zip(asked, judged, strict=True):
        readings[i] = reading
    # with what the answers record about how they were made (settings digest, weights'
    # shard digests): values checks a trajectory has one of each per checkpoint
    carried = [c for c in ("question_id", "category", "sample", *RECORDED_COLUMNS)
               if c in generations.columns]
    judgments = generations.select(carried).with_columns(
        *reading_columns(readings),
        pl.Series("answer_flags", [",".join(answer) for answer in flags], dtype=pl.Utf8),
    )
    health = judge_health(judged)
    counts = {
        "judged": len(judged),
        "unreadable": health["unreadable"],
        "off_label_top_token": sum(not r.top_is_label for r in readings),
        "answers_missing_a_label": sum(bool(r.missing_labels) for r in readings),
        "health": health,
        "answer_flags": flag_counts(responses, flags),
    }
    return judgments, counts


def check_readable(health: Mapping[str, Any], judge: Mapping[str, Any], where: str) -> None:
    """The gate: raise UnreadableJudgeError when more answers are unreadable than
    judge.max_unreadable_share allows (message: ``stance.unreadable_problem``)."""
    problem = unreadable_problem(health, max_unreadable_share(judge), where)
    if problem:
        raise UnreadableJudgeError(problem)


def judge_output_settings(judge: Mapping[str, Any]) -> dict[str, Any]:
    """The judge settings that change what a judge job writes: ``JUDGE_OUTPUT_KEYS`` that
    are set, with ``min_label_mass`` at its default when unset."""
    settings = {key: judge[key] for key in JUDGE_OUTPUT_KEYS if key in judge}
    settings["min_label_mass"] = min_label_mass(judge)
    return settings


def judge_fingerprint(
    judge: Mapping[str, Any], prompt_text: str, model_identity: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What identifies the judge behind a judgments file: the output-affecting settings
    (``JUDGE_OUTPUT_KEYS``), the judge model's identity (a local model's file digest, as
    its cache keys use; else the configured model name), the prompt text's sha256, and a
    short ``id`` hashing all of these. Equal ids mean the same judge read the same way.

    ``settings``: those settings as the workflow recorded them (the judge settings file,
    ``job_settings.recorded_settings_of``, read when the workflow starts), so judgments
    made before the schema's defaults were filled in keep their id beside new ones;
    default ``judge_output_settings(judge)``."""
    fingerprint = {
        "settings": dict(settings) if settings is not None else judge_output_settings(judge),
        "model_identity": model_identity or str(judge.get("model")),
        "prompt_sha256": hashlib.sha256(prompt_text.encode("utf-8")).hexdigest(),
    }
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    fingerprint["id"] = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return fingerprint


# Columns of a generations table that say how its answers were made, kept in judgments.
RECORDED_COLUMNS = (SETTINGS_COLUMN, DIGEST_COLUMN, SHARDS_COLUMN)


def checkpoints_by_record(records: Mapping[str, str | None]) -> dict[str, list[str]]:
    """``{record: checkpoints}`` from ``{checkpoint: record}`` (a judge fingerprint id or a
    generation settings digest), in first-seen order; a missing record is "none
    recorded" (the file predates it)."""
    groups: dict[str, list[str]] = {}
    for checkpoint, record in records.items():
        groups.setdefault(record or "none recorded", []).append(checkpoint)
    return groups


class MixedGenerationsError(ValueError):
    """A trajectory's checkpoints answered with different generation settings."""


def check_one_generation(digests: Mapping[str, str | None]) -> None:
    """Raise MixedGenerationsError naming the checkpoints per settings digest when the
    ``{checkpoint: generation settings digest}`` mapping holds more than one (a file
    without one counts as its own kind: it predates the digest)."""
    groups = checkpoints_by_record(digests)
    if len(groups) > 1:
        lines = "; ".join(f"settings {d}: {', '.join(names)}" for d, names in groups.items())
        raise MixedGenerationsError(
            "the checkpoints of one trajectory answered with different generation settings "
            f"(a setting changed and only some generation jobs reran): {lines}. Compare "
            f"{settings_path('generation/*')} with what each checkpoint recorded "
            "(the generation_settings column of its generations.parquet)."
        )


class MixedJudgesError(ValueError):
    """A trajectory's checkpoints were judged with different judge fingerprints."""


def check_one_judge(fingerprints: Mapping[str, str | None]) -> None:
    """Raise MixedJudgesError naming the checkpoints per fingerprint when the
    ``{checkpoint: fingerprint id}`` mapping holds more than one id (a judgments file
    without one counts as its own kind: it predates fingerprints)."""
    groups = checkpoints_by_record(fingerprints)
    if len(groups) > 1:
        lines = "; ".join(f"judge {fp}: {', '.join(names)}" for fp, names in groups.items())
        raise MixedJudgesError(
            "the checkpoints of one trajectory were judged by different judges (a judge "
            f"setting or prompt changed and only some judge jobs reran): {lines}. Rerun "
            "the judge jobs of the others (snakemake --forcerun judge, or judge_run with "
            "judge.one_job_per_run) so all share one judge."
        )


def judge_checkpoint(
    judge: Mapping[str, Any],
    backend: Any,
    template: str,
    generations: pl.DataFrame,
    topics: Mapping[str, str],
    fingerprint_settings: Any,
    where: str,
    canaries: Any = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One checkpoint's judgments (with the judge's fingerprint id) and its
    ``judge_counts.json`` fields, as rule judge writes them (and rule judge_run, per
    checkpoint, with one backend for a run's checkpoints). Raises when too few readings
    are readable (``check_readable``, naming ``where``)."""
    judgments, counts = judge_generations(
        generations, topics, template, backend, label_mass=min_label_mass(judge))
    counts.update(backend_counts(backend))
    counts["canaries"] = canary_counts(
        canaries, getattr(backend, "last_canaries", None), judge["backend"])
    fingerprint = judge_fingerprint(
        judge, template, getattr(backend, "identity", None), settings=fingerprint_settings)
    counts["judge_fingerprint"] = fingerprint
    print(counts)
    check_readable(counts["health"], judge, where)
    return judgments.with_columns(
        pl.lit(fingerprint["id"], dtype=pl.Utf8).alias("judge_fingerprint")), counts
