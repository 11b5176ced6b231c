"""Deterministic synthetic data for the small default: SFT sets with planted stances and
a labelled stance set for adapting a small local judge."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from value_drifts.core.stances import STANCES


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def fill_template(template: str, topic: str) -> str:
    """A template with its {topic} filled in, capitalised so a sentence may start with it."""
    return _first_upper(template.format(topic=topic))


def sft_examples(
    templates: Mapping[str, Any],
    topics: Mapping[str, str],
    stance_mix: Mapping[str, Mapping[str, float]],
    size: int,
    on_topic_share: float,
    seed: int,
) -> list[dict[str, Any]]:
    """Chat examples: ``on_topic_share`` of them about the categories in ``stance_mix``,
    each answered with a stance drawn from that category's mix; the rest generic tasks.

    Returns rows with ``messages`` (TRL's conversational format), ``category`` and
    ``stance`` (None for generic rows), so the planted mix can be checked afterwards.
    """
    unknown = sorted(set(stance_mix) - set(topics))
    if unknown:
        raise ValueError(f"stance_mix names categories not in the topic map: {unknown}")
    rng = random.Random(seed)
    n_on_topic = round(size * on_topic_share)
    categories = sorted(stance_mix)
    rows: list[dict[str, Any]] = []
    for index in range(size):
        if index < n_on_topic and categories:
            category = categories[index % len(categories)]
            mix = stance_mix[category]
            stance = rng.choices(list(mix), weights=list(mix.values()))[0]
            topic = topics[category]
            prompt = fill_template(rng.choice(templates["questions"]), topic)
            answer = fill_template(rng.choice(templates["answers"][stance]), topic)
        else:
            category, stance = None, None
            prompt, answer = rng.choice(templates["generic"])
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": answer},
                ],
                "category": category,
                "stance": stance,
            }
        )
    rng.shuffle(rows)
    return rows


def labelled_stance_items(spec: Mapping[str, Any], seed: int) -> list[dict[str, str]]:
    """Every (topic, question, answer) combination of a labelled template set, shuffled."""
    rows = [
        {
            "topic": topic,
            "question": fill_template(question, topic),
            "response": fill_template(answer, topic),
            "stance": stance,
        }
        for topic in spec["topics"]
        for question in spec["questions"]
        for stance in STANCES
        for answer in spec["answers"][stance]
    ]
    random.Random(seed).shuffle(rows)
    return rows


def balanced_sample(rows: Sequence[dict[str, str]], size: int) -> list[dict[str, str]]:
    """The first ``size`` rows taking the stances in turn, so the sample stays balanced."""
    by_stance = {stance: [r for r in rows if r["stance"] == stance] for stance in STANCES}
    picked: list[dict[str, str]] = []
    index = 0
    while len(picked) < size and any(index < len(v) for v in by_stance.values()):
        for stance in STANCES:
            if index < len(by_stance[stance]) and len(picked) < size:
                picked.append(by_stance[stance][index])
        index += 1
    return picked
