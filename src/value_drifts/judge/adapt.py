"""Adapt a small local judge to the judge prompt with a labelled template set.

A 135M model cannot follow the stance prompt zero-shot (it answers "support" to almost
anything), so the small default fine-tunes it to answer the prompt's one word first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from value_drifts.data.synthetic import balanced_sample, labelled_stance_items
from value_drifts.judge.prompt import render


def adaptation_rows(
    spec: Mapping[str, Any], template: str, size: int, seed: int
) -> list[dict[str, Any]]:
    """TRL prompt/completion rows: the rendered judge prompt -> the stance word."""
    items = balanced_sample(labelled_stance_items(spec, seed), size)
    return [
        {
            "prompt": [
                {"role": "user",
                 "content": render(template, item["question"], item["response"], item["topic"])}
            ],
            "completion": [{"role": "assistant", "content": item["stance"]}],
        }
        for item in items
    ]
