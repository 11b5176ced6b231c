"""Print what judging a config will cost before any money is spent.

    python -m value_drifts.commands.cost_plan --configfile config/paper.yaml

Every judge call the config's workflow makes, stage by stage, each with the rule's own
judge settings (the one ``judge:`` mapping; its prompt unless said otherwise):

- checkpoints (rule ``judge``): one call per question x sample of every evaluated
  checkpoint;
- dataset stances (rule ``dataset_stances``, paper App. K, Figure 19): one call per SFT
  item x topic it matched at cosine >= ``dataset_stances.min_similarity``, with the
  conversation prompt ``dataset_stances.prompt``;
- value gaps (rule ``value_gap_pairs``, App. K, Figure 20): two calls (chosen, rejected)
  per preference pair that has a topic;
- agreement (rule ``judge_agreement``): one call per hand-labelled item;
- reference judge (rule ``reference_judge``, ``judge.reference``): one call per sampled
  answer (``answers_per_checkpoint``, else every answer) of every evaluated checkpoint,
  with the reference judge's own prompt, cache and prices;
- prompt audit (rule ``judge_prompt_audit``, ``judge.audit``): the audit's sample of
  ``judge.audit_answers`` answers read with the main prompt and with each alternative.

Where a stage's outputs exist (``generations.parquet``, ``stances.parquet``,
``value_gap.parquet`` with the prepared data they index), its exact prompts are rebuilt and
looked up in the judge cache (``judge.cache``, else the backends' ``DEFAULT_CACHE``).
Elsewhere the calls are estimated, the estimate saying how: checkpoints not generated yet
with responses of ``max_new_tokens`` tokens, datasets not searched yet with every analysed
item matched. Prices are ``judge.prices``: USD per million tokens, as OpenAI lists them.

Then the disk the training runs' checkpoints need (``value_drifts.core.checkpoint_disk``):
per model and task, one checkpoint's weights and resume state and each run's peak (what
its training job declares as ``checkpoint_disk_mb``), and the plan's peak: an upper bound
with every run at its peak at once, what stays after generation deletes weights, and with
``--checkpoint-disk-mb N`` the peak when ``--resources checkpoint_disk_mb=N`` caps the
runs training at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from value_drifts.analysis.dataset_stances import (
    conversation_text,
    preference_text_pairs,
    sample_items,
)
from value_drifts.core.backends import API_JUDGE_BACKENDS
from value_drifts.core.checkpoint_disk import RESOURCE, disk_plan, format_disk_plan
from value_drifts.core.config import reference_judge, schema_default, section_with_defaults
from value_drifts.core.layout import (
    RESULTS,
    generations_path,
    preference_data,
    preference_value_gap,
    sft_data,
    sft_stances,
    within_results,
)
from value_drifts.core.questions import read_questions, sample_questions
from value_drifts.core.study import Study, load_study
from value_drifts.data.counted_sizes import counted_sizes
from value_drifts.judge.agreement import labelled_set_path, load_labelled_set
from value_drifts.judge.audit import audit_answers, audit_sample
from value_drifts.judge.backends import DEFAULT_CACHE
from value_drifts.judge.cost import CHARS_PER_TOKEN, CostPlan, JudgePrices, cost_plan
from value_drifts.judge.prompt import CONVERSATION_FIELDS, load_template, render
from value_drifts.judge.reference import answers_per_checkpoint, sample_answers

# Length of a question when the question set is not built yet (V-PRISM's are short).
PLACEHOLDER_QUESTION_CHARS = 90
# An SFT conversation's length when neither the data nor max_conversation_chars bounds it.
PLACEHOLDER_CONVERSATION_CHARS = 4000
# A preference pair's prompt and each response before the set is prepared: the response
# at 1,024 tokens, the paper's PO max_response_length (App. B.3).
PLACEHOLDER_PREFERENCE_PROMPT_CHARS = 400
PLACEHOLDER_PREFERENCE_RESPONSE_CHARS = round(1024 * CHARS_PER_TOKEN)
STAGES = ("checkpoints", "dataset stances", "value gaps", "agreement", "reference judge",
          "prompt audit")
# What a dataset stance estimate assumes before the similarity search has run.
SFT_BOUND = ("upper bound on matched items: every analysed item matched, to one topic "
             "(an item matching k topics is judged k times)")
PAIR_BOUND = "upper bound: every analysed pair has a topic (at most one), 2 calls each"


@dataclass(frozen=True)
class StagePlan:
    """One stage's judge calls, priced (``plan``), and how the parts not known yet were
    estimated (``notes``; empty when every prompt is exact)."""

    stage: str
    plan: CostPlan
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobPrompts:
    """One job's judge prompts: the ``exact`` ones where its outputs exist, else
    ``stand_ins`` each counted ``copies`` times, with a ``note`` saying how they were made."""

    exact: list[str]
    stand_ins: list[str]
    copies: int = 1
    note: str | None = None


@dataclass(frozen=True)
class ResultsView:
    """A results tree as a plan made outside the workflow may read it: a file counts only
    when it exists and, where ``current`` is known, Snakemake would not rebuild it for the
    config (``current_results``), so a tree made under other settings (the small
    default's questions where the paper config reads its own) is not taken as the
    config's. ``root``: the tree (``layout`` paths ``results/...`` map under it);
    ``current``: the layout paths Snakemake keeps, None to count every existing file."""

    root: Path = Path(RESULTS)
    current: frozenset[str] | None = None

    def path(self, layout_path: str | Path) -> Path:
        return self.root / within_results(str(layout_path))

    def has(self, layout_path: str | Path) -> bool:
        """A results file that exists and is current."""
        return self.path(layout_path).exists() and (
            self.current is None or str(layout_path) in self.current)

    def has_input(self, path: str | Path) -> bool:
        """A path a config names: a results file as ``has``, any other file as it is."""
        if Path(path).parts[:1] == (RESULTS,):
            return self.has(path)
        return Path(path).exists()


def as_view(results: Path | ResultsView) -> ResultsView:
    return results if isinstance(results, ResultsView) else ResultsView(Path(results))


def current_results(configfile: str | Path, workdir: Path | None = None
                    ) -> tuple[frozenset[str] | None, str]:
    """The results files Snakemake would keep for ``configfile`` in ``workdir`` (its
    ``--summary`` plan "no update": the workflow's own currency rule, settings compared by
    content), and a note; ``(None, note)`` when Snakemake could not plan (the note says
    why; the plan then counts no results file as current). Like any dry run it records
    the config's settings (``core.job_settings``)."""
    import subprocess
    import sys

    from value_drifts.commands.main import CHECKOUT

    workdir = workdir or Path.cwd()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(CHECKOUT / "Snakefile"),
         "--configfile", str(configfile), "--summary", "--cores", "1", "--nolock"],
        cwd=workdir, capture_output=True, text=True,
    )
    if result.returncode != 0:
        reason = next((line.strip() for line in reversed(result.stderr.splitlines())
                       if line.strip()), "no reason given")
        return None, f"results not counted: Snakemake could not plan this config ({reason})"
    kept = set()
    for line in result.stdout.splitlines()[1:]:
        fields_ = line.split("\t")
        if len(fields_) >= 6 and fields_[-1] == "no update":
            kept.add(fields_[0])
    return frozenset(kept), (f"results: {len(kept):,} files current for this config "
                             "(snakemake --summary)")


# --- pricing ------------------------------------------------------------------------------


def judge_prices(judge: Mapping[str, Any]) -> JudgePrices:
    """``judge.prices`` (USD per million input / output tokens, OpenAI's list prices; Batch
    API at ``batch_price_factor`` of them), or zero: a local judge costs no money."""
    return JudgePrices(**judge.get("prices", {"input_per_million_usd": 0.0,
                                              "output_per_million_usd": 0.0}))


def answer_tokens(judge: Mapping[str, Any]) -> int:
    """Output tokens of one judge call: ``judge.max_tokens`` (the schema's default when
    the section was handed without it)."""
    return int(judge.get("max_tokens", schema_default("judge", "max_tokens")))


def cache_path(judge: Mapping[str, Any]) -> Path:
    """The judge cache every backend answers from: ``judge.cache``, else ``DEFAULT_CACHE``
    (relative to the working directory, as for the workflow's jobs)."""
    return Path(judge.get("cache", DEFAULT_CACHE))


def requests_to_send(prompts: Sequence[str], judge: Mapping[str, Any]) -> list[str]:
    """The distinct prompts a run would still send: for an API judge, those whose exact
    request key is not in the cache file (when there is one); for a local judge, every
    distinct prompt (its keys need the model's chat template and weights digest)."""
    path = cache_path(judge)
    if judge["backend"] in API_JUDGE_BACKENDS and path.is_file():
        from value_drifts.backends.cache import JudgeCache
        from value_drifts.judge.openai_backend import OpenAIJudgeSettings, uncached_requests

        settings = OpenAIJudgeSettings.from_config(judge)
        return list(uncached_requests(prompts, settings, JudgeCache(path)).values())
    return list(dict.fromkeys(prompts))


def exact_plan(prompts: Sequence[str], judge: Mapping[str, Any]) -> CostPlan:
    """``cost_plan`` of known prompts: cache hits and repeats cost nothing; tokens are
    estimated (characters / 4), USD from ``judge.prices`` (per million tokens)."""
    return cost_plan(prompts, requests_to_send(prompts, judge), judge_prices(judge),
                     answer_tokens(judge))


def estimated_plan(stand_ins: Sequence[str], judge: Mapping[str, Any], copies: int = 1) -> CostPlan:
    """``cost_plan`` of ``copies`` x ``stand_ins`` prompts whose text is not known yet:
    every call counted as a distinct request, none cached (tokens and USD as
    ``exact_plan``)."""
    one = cost_plan(stand_ins, stand_ins, judge_prices(judge), answer_tokens(judge))
    calls = len(stand_ins) * copies
    return CostPlan(
        calls=calls, distinct_requests=calls, cached=0, to_send=calls,
        input_tokens=one.input_tokens * copies, output_tokens=one.output_tokens * copies,
        sync_cost_usd=one.sync_cost_usd * copies, batch_cost_usd=one.batch_cost_usd * copies,
    )


def combined(plans: Iterable[CostPlan]) -> CostPlan:
    """The field-wise sum of plans (calls, tokens, USD)."""
    plans = list(plans)
    return CostPlan(**{f.name: sum((getattr(p, f.name) for p in plans), start=0)
                       for f in fields(CostPlan)})


def _stage(
    name: str, parts: Sequence[JobPrompts], judge: Mapping[str, Any], bound: str | None = None
) -> StagePlan:
    """A stage's plan from its jobs' prompts; ``bound`` heads the notes when some job is
    estimated (what the estimate assumes)."""
    exact = [prompt for part in parts for prompt in part.exact]
    plans = [exact_plan(exact, judge)] + [
        estimated_plan(part.stand_ins, judge, part.copies) for part in parts if part.stand_ins
    ]
    notes = [part.note for part in parts if part.note]
    if notes and bound:
        notes.insert(0, bound)
    return StagePlan(name, combined(plans), tuple(notes))


# --- checkpoints --------------------------------------------------------------------------


def _questions(study: Study, view: ResultsView) -> pl.DataFrame:
    config, topics = study.config, study.topics
    path = Path(config["questions"]["path"])
    per_category = config["questions"].get("per_category")
    if view.has_input(path):
        questions = read_questions(str(path), list(topics))
        return sample_questions(questions, per_category, config["seed"],
                                config["questions"].get("categories"))
    categories = config["questions"].get("categories") or list(topics)
    estimated = study.questions_per_checkpoint() // len(categories)
    rows = [
        {"question_id": f"{category}-{i}", "category": category,
         "question": "q" * PLACEHOLDER_QUESTION_CHARS}
        for category in categories
        for i in range(estimated)
    ]
    return pl.DataFrame(rows)


def _longest(topics: Mapping[str, str]) -> str:
    return max(topics.values(), key=len)


def checkpoint_prompts(study: Study, results: Path | ResultsView = Path(RESULTS)):
    """Exact prompts of the generated checkpoints; for the rest, how many checkpoints
    there are and one checkpoint's estimated prompts (one per question and sample)."""
    config, topics = study.config, study.topics
    view = as_view(results)
    template = load_template(config["judge"]["prompt"])
    generation = config["generation"]
    exact: list[str] = []
    pending = 0
    for model, run, step in study.plan.evaluated_checkpoints():  # traces' ones too
        path = generations_path(model, run, step)
        if view.has(path):
            exact += [
                render(template, row["question"], row["response"], topics[row["category"]])
                for row in pl.read_parquet(view.path(path)).iter_rows(named=True)
            ]
        else:
            pending += 1
    placeholder = "r" * round(generation["max_new_tokens"] * CHARS_PER_TOKEN)
    one_checkpoint = [
        render(template, row["question"], placeholder, topics[row["category"]])
        for row in _questions(study, view).iter_rows(named=True)
    ] * generation["samples"]
    return exact, pending, one_checkpoint


def checkpoint_stage(study: Study, results: Path | ResultsView = Path(RESULTS)) -> StagePlan:
    """Rule judge: one call per question x sample (``generation.samples``) of every
    evaluated checkpoint; exact for generated checkpoints, else responses counted at
    ``generation.max_new_tokens`` tokens (the most they can be)."""
    config = study.config
    exact, pending, one_checkpoint = checkpoint_prompts(study, results)
    note = None
    if pending:
        note = (f"{pending:,} checkpoints not generated yet: responses at max_new_tokens "
                f"({config['generation']['max_new_tokens']} tokens, the most they can be)")
        if not as_view(results).has_input(config["questions"]["path"]):
            note += (f"; questions at {PLACEHOLDER_QUESTION_CHARS} characters "
                     f"({config['questions']['path']} not built yet for this config)")
    part = JobPrompts(exact, one_checkpoint, pending, note)
    return _stage("checkpoints", [part], config["judge"])


# --- dataset stances and value gaps (App. K) ----------------------------------------------


def _analysed(spec: Mapping[str, Any], settings: Mapping[str, Any]) -> int:
    """Items a dataset stance rule analyses: ``size`` (the most the prepared data holds),
    cut to ``dataset_stances.max_items``."""
    max_items = settings.get("max_items")
    return min(spec["size"], max_items) if max_items else spec["size"]


def sft_stance_prompts(
    study: Study, dataset: str, results: Path | ResultsView = Path(RESULTS)
) -> JobPrompts:
    """One SFT dataset's conversation-prompt calls (App. K): exact from ``stances.parquet``
    (one row per judged item x topic) and the prepared data; before the similarity search,
    an upper bound on matched items: every analysed item matched, to one topic."""
    config, topics = study.config, study.topics
    settings = config["dataset_stances"]
    template = load_template(settings["prompt"], CONVERSATION_FIELDS)
    max_chars = settings.get("max_conversation_chars")
    view = as_view(results)
    stances, data = view.path(sft_stances(dataset)), view.path(sft_data(dataset))
    has_stances, has_data = view.has(sft_stances(dataset)), view.has(sft_data(dataset))

    def prompt(messages, topic: str) -> str:
        text = conversation_text(messages, max_chars)[0]
        return template.format_map({"conversation": text, "topic": topic})

    if has_stances and has_data:
        rows = pl.read_parquet(data, columns=["messages"])["messages"].to_list()
        return JobPrompts([
            prompt(rows[item], topics[category])
            for item, category in pl.read_parquet(stances).select("item", "category").iter_rows()
        ], [])
    if has_data:
        rows = pl.read_parquet(data, columns=["messages"])["messages"].to_list()
        kept = sample_items(rows, settings.get("max_items"), config["seed"])
        return JobPrompts([], [prompt(rows[i], _longest(topics)) for i in kept], 1,
                          f"{dataset}: not searched yet: {len(kept):,} items analysed")
    analysed = _analysed(config["sft_datasets"][dataset], settings)
    chars = max_chars or PLACEHOLDER_CONVERSATION_CHARS
    stand_in = prompt([{"role": "user", "content": "c" * chars}], _longest(topics))
    return JobPrompts([], [stand_in], analysed,
                      f"{dataset}: not prepared yet: {analysed:,} items (min of size and "
                      f"max_items), conversations at {chars:,} characters")


def value_gap_prompts(
    study: Study, preference_set: str, results: Path | ResultsView = Path(RESULTS)
) -> JobPrompts:
    """One preference set's response-prompt calls (App. K): two per pair with a topic
    (chosen, rejected); exact from ``value_gap.parquet`` and the prepared set; before the
    similarity search, an upper bound: every analysed pair has a topic."""
    config, topics = study.config, study.topics
    settings = config["dataset_stances"]
    template = load_template(config["judge"]["prompt"])
    view = as_view(results)
    gaps, data = view.path(preference_value_gap(preference_set)), view.path(
        preference_data(preference_set))
    has_gaps = view.has(preference_value_gap(preference_set))
    has_data = view.has(preference_data(preference_set))

    def both(pairs: pl.DataFrame, pair_topics: Sequence[str]) -> list[str]:
        return [
            render(template, pair["prompt"], pair[side], topic)
            for pair, topic in zip(pairs.iter_rows(named=True), pair_topics, strict=True)
            for side in ("chosen", "rejected")
        ]

    if has_gaps and has_data:
        rows = pl.read_parquet(data).to_dicts()
        matched = pl.read_parquet(gaps).select("item", "category")
        pairs = preference_text_pairs(rows[i] for i in matched["item"])
        return JobPrompts(both(pairs, [topics[c] for c in matched["category"]]), [])
    if has_data:
        rows = pl.read_parquet(data).to_dicts()
        kept = sample_items(rows, settings.get("max_items"), config["seed"])
        pairs = preference_text_pairs(rows[i] for i in kept)
        return JobPrompts([], both(pairs, [_longest(topics)] * pairs.height), 1,
                          f"{preference_set}: not searched yet: {len(kept):,} pairs analysed")
    analysed = _analysed(config["preference_sets"][preference_set], settings)
    stand_ins = [render(template, "p" * PLACEHOLDER_PREFERENCE_PROMPT_CHARS,
                        "r" * PLACEHOLDER_PREFERENCE_RESPONSE_CHARS, _longest(topics))] * 2
    return JobPrompts([], stand_ins, analysed,
                      f"{preference_set}: not prepared yet: {analysed:,} pairs (min of size and "
                      f"max_items), prompts at {PLACEHOLDER_PREFERENCE_PROMPT_CHARS} and "
                      f"responses at {PLACEHOLDER_PREFERENCE_RESPONSE_CHARS:,} characters")


def dataset_stance_stage(study: Study, results: Path | ResultsView = Path(RESULTS)
                         ) -> StagePlan:
    """Rule dataset_stances over ``dataset_stances.sft_datasets`` (all SFT datasets when
    absent); no calls without a ``dataset_stances`` section."""
    config = study.config
    if "dataset_stances" not in config:
        return _stage("dataset stances", [], config["judge"])
    names = config["dataset_stances"].get("sft_datasets", list(config["sft_datasets"]))
    return _stage("dataset stances", [sft_stance_prompts(study, name, results) for name in names],
                  config["judge"], SFT_BOUND)


def value_gap_stage(study: Study, results: Path | ResultsView = Path(RESULTS)) -> StagePlan:
    """Rule value_gap_pairs over ``dataset_stances.preference_sets`` (all preference sets
    when absent); no calls without a ``dataset_stances`` section."""
    config = study.config
    if "dataset_stances" not in config:
        return _stage("value gaps", [], config["judge"])
    names = config["dataset_stances"].get("preference_sets",
                                          list(config.get("preference_sets", {})))
    return _stage("value gaps", [value_gap_prompts(study, name, results) for name in names],
                  config["judge"], PAIR_BOUND)


# --- agreement ----------------------------------------------------------------------------


def agreement_stage(study: Study, labelled: str | Path | None = None) -> StagePlan:
    """Rule judge_agreement: one call per usable hand-labelled item (judge.agreement.labelled,
    else the shipped set), exact prompts."""
    config, topics = study.config, study.topics
    template = load_template(config["judge"]["prompt"])
    items, _ = load_labelled_set(labelled or labelled_set_path(config["judge"]), topics)
    prompts = [
        render(template, row["question"], row["response"], topics[row["category"]])
        for row in items.iter_rows(named=True)
    ]
    return _stage("agreement", [JobPrompts(prompts, [])], config["judge"])


# --- reference judge ----------------------------------------------------------------------


def reference_stage(study: Study, results: Path | ResultsView = Path(RESULTS)) -> StagePlan:
    """Rule reference_judge (``judge.reference``): one call per answer of its fixed seeded
    sample (``answers_per_checkpoint``, else every answer) of every evaluated checkpoint,
    rendered with the reference judge's prompt and priced with its ``prices``, looked up
    in its cache. Exact where a checkpoint's generations exist (the sample drawn as the
    rule draws it), else ``min(sample, answers per checkpoint)`` responses at
    ``max_new_tokens``. No calls without a reference judge."""
    config, topics = study.config, study.topics
    judge = reference_judge(config["judge"])
    if judge is None:
        return _stage("reference judge", [], config["judge"])
    judge = section_with_defaults("judge", judge)
    template = load_template(judge["prompt"])
    view = as_view(results)
    n = answers_per_checkpoint(config["judge"])
    exact: list[str] = []
    pending = 0
    for model, run, step in study.plan.evaluated_checkpoints():
        path = generations_path(model, run, step)
        if view.has(path):
            sample = sample_answers(pl.read_parquet(view.path(path)), n, config["seed"])
            exact += [
                render(template, row["question"], row["response"], topics[row["category"]])
                for row in sample.iter_rows(named=True)
            ]
        else:
            pending += 1
    generation = config["generation"]
    placeholder = "r" * round(generation["max_new_tokens"] * CHARS_PER_TOKEN)
    one_checkpoint = [
        render(template, row["question"], placeholder, topics[row["category"]])
        for row in _questions(study, view).iter_rows(named=True)
    ] * generation["samples"]
    one_checkpoint = one_checkpoint[:n] if n is not None else one_checkpoint
    note = (f"{pending:,} checkpoints not generated yet: {len(one_checkpoint):,} answers each "
            "at max_new_tokens") if pending else None
    part = JobPrompts(exact, one_checkpoint if pending else [], pending, note)
    return _stage("reference judge", [part], judge)


# --- prompt audit -------------------------------------------------------------------------


def audit_stage(study: Study, results: Path | ResultsView = Path(RESULTS)) -> StagePlan:
    """Rule judge_prompt_audit (``judge.audit``): the main judge reads the audit's sample
    (``judge.audit_answers`` answers over every evaluated checkpoint) with its prompt and
    with each alternative, priced at ``judge.prices``. Exact once every checkpoint's
    generations exist (the sample drawn as the rule draws it), else that many responses
    at ``max_new_tokens`` per prompt. No calls without ``judge.audit``."""
    config, topics = study.config, study.topics
    judge = config["judge"]
    if not judge.get("audit"):
        return _stage("prompt audit", [], judge)
    view = as_view(results)
    templates = [load_template(judge["prompt"])] + [load_template(p) for p in judge["audit"]]
    n = audit_answers(judge)
    checkpoints = sorted(study.plan.evaluated_checkpoints())
    paths = [generations_path(*checkpoint) for checkpoint in checkpoints]
    if all(view.has(path) for path in paths):
        sample = audit_sample({c: pl.read_parquet(view.path(p))
                               for c, p in zip(checkpoints, paths, strict=True)},
                              n, config["seed"])
        prompts = [render(t, row["question"], row["response"], topics[row["category"]])
                   for t in templates for row in sample.iter_rows(named=True)]
        return _stage("prompt audit", [JobPrompts(prompts, [])], judge)
    placeholder = "r" * round(config["generation"]["max_new_tokens"] * CHARS_PER_TOKEN)
    question = _questions(study, view).row(0, named=True)
    stand_ins = [render(t, question["question"], placeholder, topics[question["category"]])
                 for t in templates]
    note = (f"not every checkpoint generated yet: {n:,} answers at max_new_tokens, read "
            f"with {len(templates)} prompts")
    return _stage("prompt audit", [JobPrompts([], stand_ins, n, note)], judge)


# --- the whole config ---------------------------------------------------------------------


def stage_plans(config: Mapping[str, Any] | Study, results: Path | ResultsView = Path(RESULTS)
                ) -> list[StagePlan]:
    """Every judge call of the config (or of its study, ``value_drifts.core.study``), one
    ``StagePlan`` per stage (``STAGES``)."""
    study = config if isinstance(config, Study) else load_study(config)
    return [
        checkpoint_stage(study, results),
        dataset_stance_stage(study, results),
        value_gap_stage(study, results),
        agreement_stage(study),
        reference_stage(study, results),
        audit_stage(study, results),
    ]


def plan_for_config(config: Mapping[str, Any], results: Path | ResultsView = Path(RESULTS)
                    ) -> CostPlan:
    """The total of ``stage_plans``: calls, cache hits, tokens (estimated, characters / 4)
    and USD for the synchronous and the Batch API."""
    return combined(stage.plan for stage in stage_plans(config, results))


def cache_note(judge: Mapping[str, Any]) -> str:
    """Which cache the plan looked in, and whether it could."""
    path = cache_path(judge)
    if judge["backend"] not in API_JUDGE_BACKENDS:
        return f"cache: {path} not checked for a local judge ({judge['backend']})"
    return f"cache: {path}" + ("" if path.is_file() else " (not there yet: nothing cached)")


def format_plan(
    plan: CostPlan,
    config_path: str,
    backend: str,
    stages: Sequence[StagePlan] = (),
    notes: Sequence[str] = (),
) -> str:
    """The total as labelled lines; with ``stages``, a table per stage and their notes."""
    lines = [
        f"judge cost plan for {config_path} (backend: {backend})",
        f"  judge calls            {plan.calls:>14,}",
        f"  already cached         {plan.cached:>14,}",
        f"  to send                {plan.to_send:>14,}",
        f"  input tokens (est.)    {plan.input_tokens:>14,}",
        f"  output tokens          {plan.output_tokens:>14,}",
        f"  cost, synchronous API  {plan.sync_cost_usd:>14,.2f} USD",
        f"  cost, Batch API        {plan.batch_cost_usd:>14,.2f} USD",
    ]
    if stages:
        row = "  {:<16}{:>12}{:>10}{:>12}{:>16}{:>12}{:>12}{:>12}"
        lines += ["", row.format("stage", "calls", "cached", "to send", "input tokens",
                                 "output", "sync USD", "batch USD")]
        for name, p in [(s.stage, s.plan) for s in stages] + [("total", plan)]:
            lines.append(row.format(
                name, f"{p.calls:,}", f"{p.cached:,}", f"{p.to_send:,}", f"{p.input_tokens:,}",
                f"{p.output_tokens:,}", f"{p.sync_cost_usd:,.2f}", f"{p.batch_cost_usd:,.2f}",
            ))
    estimates = [
        f"  {s.stage}: {note}" if i == 0 else f"    {note}"
        for s in stages for i, note in enumerate(s.notes)
    ]
    if estimates:
        lines += ["", "estimated where outputs do not exist yet:", *estimates]
    if notes:
        lines += ["", *(f"  {n}" for n in notes)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--results", default=RESULTS, type=Path)
    parser.add_argument("--checkpoint-disk-mb", type=int, default=None, metavar="N",
                        help=f"also print the disk peak when --resources {RESOURCE}=N "
                             "caps the training runs at once")
    args = parser.parse_args(argv)
    study = load_study(yaml.safe_load(Path(args.configfile).read_text()),
                       count_sizes=counted_sizes)
    config = study.config
    view, results_note = results_view(args.configfile, args.results)
    stages = stage_plans(study, view)
    plan = combined(stage.plan for stage in stages)
    print(format_plan(plan, args.configfile, config["judge"]["backend"], stages,
                      [cache_note(config["judge"]), results_note]))
    print()
    print(format_disk_plan(disk_plan(study), args.checkpoint_disk_mb))


def results_view(configfile: str | Path, results: Path) -> tuple[ResultsView, str]:
    """The results the plan may count: for the working directory's own ``results/``,
    what Snakemake keeps for the config (``current_results``); another folder is read as
    it is (nothing there was made by this directory's workflow runs), and an absent one
    holds nothing."""
    if not results.exists():
        return ResultsView(results), f"results: {results} holds nothing yet"
    if results.resolve() != (Path.cwd() / RESULTS).resolve():
        return ResultsView(results), f"results: {results} counted as it is (not planned)"
    current, note = current_results(configfile)
    return ResultsView(results, current if current is not None else frozenset()), note


if __name__ == "__main__":
    main()
