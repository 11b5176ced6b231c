"""Print what judging a config will cost before any money is spent.

    python -m value_drifts.judge.plan_cost --configfile config/paper.yaml

For every checkpoint the config evaluates: how many judge calls, how many are already in
the cache (exact prompts, for checkpoints whose generations exist), estimated tokens and
the price for the synchronous and the Batch API paths. Checkpoints not generated yet are
estimated with responses of ``max_new_tokens`` tokens, the most they can be.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from value_drifts.config import load_config
from value_drifts.generation import read_questions, sample_questions
from value_drifts.judge.cost import CHARS_PER_TOKEN, CostPlan, JudgePrices, cost_plan
from value_drifts.judge.prompt import load_template, render
from value_drifts.plan import build_plan

# Length of a question when the question set is not built yet (V-PRISM's are short).
PLACEHOLDER_QUESTION_CHARS = 90


def _questions(config: dict[str, Any], topics: dict[str, str]) -> pl.DataFrame:
    path = Path(config["questions"]["path"])
    per_category = config["questions"].get("per_category")
    if path.exists():
        return sample_questions(read_questions(str(path), list(topics)), per_category, config["seed"])
    rows = [
        {"question_id": f"{category}-{i}", "category": category,
         "question": "q" * PLACEHOLDER_QUESTION_CHARS}
        for category in topics
        for i in range(per_category or 50)
    ]
    return pl.DataFrame(rows)


def judge_prompts(config: dict[str, Any], results: Path = Path("results")):
    """Exact prompts of the generated checkpoints; for the rest, how many checkpoints
    there are and one checkpoint's estimated prompts (one per question and sample)."""
    topics = yaml.safe_load(Path(config["topics"]).read_text())
    template = load_template(config["judge"]["prompt"])
    generation = config["generation"]
    exact: list[str] = []
    pending = 0
    for model, run, step in build_plan(config).evaluated_checkpoints():
        path = results / model / run / f"step-{step}" / "generations.parquet"
        if path.exists():
            exact += [
                render(template, row["question"], row["response"], topics[row["category"]])
                for row in pl.read_parquet(path).iter_rows(named=True)
            ]
        else:
            pending += 1
    placeholder = "r" * round(generation["max_new_tokens"] * CHARS_PER_TOKEN)
    one_checkpoint = [
        render(template, row["question"], placeholder, topics[row["category"]])
        for row in _questions(config, topics).iter_rows(named=True)
    ] * generation["samples"]
    return exact, pending, one_checkpoint


def plan_for_config(config: dict[str, Any], results: Path = Path("results")) -> CostPlan:
    judge = config["judge"]
    exact, pending, one_checkpoint = judge_prompts(config, results)
    prices = JudgePrices(**judge.get("prices", {"input_per_million_usd": 0.0,
                                               "output_per_million_usd": 0.0}))
    output_per_call = judge.get("max_tokens", 1)
    to_send = list(exact)
    if judge["backend"] != "transformers" and Path(judge.get("cache", "")).is_file():
        from value_drifts.judge.cache import JudgeCache
        from value_drifts.judge.openai_backend import OpenAIJudgeSettings, uncached_requests

        to_send = list(uncached_requests(exact, OpenAIJudgeSettings.from_config(judge),
                                         JudgeCache(judge["cache"])).values())
    generated = cost_plan(exact, to_send, prices, output_per_call)
    # Checkpoints not generated yet: all their calls are new and distinct.
    upcoming = cost_plan(one_checkpoint, one_checkpoint, prices, output_per_call)
    return CostPlan(
        calls=generated.calls + pending * upcoming.calls,
        distinct_requests=generated.distinct_requests + pending * upcoming.calls,
        cached=generated.cached,
        to_send=generated.to_send + pending * upcoming.calls,
        input_tokens=generated.input_tokens + pending * upcoming.input_tokens,
        output_tokens=generated.output_tokens + pending * upcoming.output_tokens,
        sync_cost_usd=generated.sync_cost_usd + pending * upcoming.sync_cost_usd,
        batch_cost_usd=generated.batch_cost_usd + pending * upcoming.batch_cost_usd,
    )


def format_plan(plan: CostPlan, config_path: str, backend: str) -> str:
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--results", default="results", type=Path)
    args = parser.parse_args(argv)
    config = load_config(args.configfile)
    plan = plan_for_config(config, args.results)
    print(format_plan(plan, args.configfile, config["judge"]["backend"]))


if __name__ == "__main__":
    main()
