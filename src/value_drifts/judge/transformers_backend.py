"""Local judge on CPU: a transformers causal LM scored on its first answer token.

It returns the same ``{token: logprob}`` top list an OpenAI-compatible API returns with
``logprobs=True, top_logprobs=k``, so stance reading is shared by every backend. Answers
are cached (judge/local.py): the model is loaded only when some prompt is not cached.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from value_drifts.backends.cache import JudgeCache
from value_drifts.judge.answers import merged_top
from value_drifts.judge.local import (
    CachedLocalJudge,
    adds_special_tokens,
    model_identity,
    render_chat,
)

BACKEND_KIND = "transformers"


class TransformersScorer:
    """First-token top-k log-probabilities from a causal LM; the model loads on first use."""

    pads_batches = True  # a batch is padded to its longest text

    def __init__(self, model_path: str, top_logprobs: int = 20):
        self.model_path = model_path
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.top_logprobs = top_logprobs
        self._model = None
        self.forward_calls = 0  # batches run through the model, for tests and logs

    @property
    def model(self):
        if self._model is None:
            self._model = AutoModelForCausalLM.from_pretrained(
                self.model_path, dtype=torch.float32
            )
            self._model.eval()
        return self._model

    def render(self, prompt: str) -> str:
        return render_chat(self.tokenizer, prompt)

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        encoded = self.tokenizer(list(texts), return_tensors="pt", padding=True,
                                 add_special_tokens=adds_special_tokens(self.tokenizer))
        self.forward_calls += 1
        with torch.inference_mode():
            # Only the next-token distribution is needed: skip the vocab projection elsewhere.
            logits = self.model(**encoded, logits_to_keep=1).logits[:, -1, :]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        values, indices = logprobs.topk(self.top_logprobs, dim=-1)
        return [
            merged_top(
                (self.tokenizer.decode([int(i)]), float(v))
                for v, i in zip(row_values, row_indices, strict=True)
            )
            for row_values, row_indices in zip(values, indices, strict=True)
        ]


def transformers_judge(
    model_path: str, cache: JudgeCache, top_logprobs: int = 20, batch_size: int = 8
) -> CachedLocalJudge:
    """The cached local judge: keyed on the model directory's file digest, computed once.

    A tokenizer that adds special tokens of its own to templated text (a BOS: Llama 3,
    Gemma) is now encoded without them (``local.adds_special_tokens``): its key carries
    ``"special_tokens": "template"`` so readings cached when it was encoded with them are
    not reused; other tokenizers (SmolLM2) keep their keys."""
    scorer = TransformersScorer(model_path, top_logprobs)
    params = {"top_logprobs": top_logprobs, "dtype": "float32", "position": "first_token"}
    if encoding_changed(scorer.tokenizer):
        params["special_tokens"] = "template"
    return CachedLocalJudge(
        scorer,
        cache,
        identity=model_identity(model_path, cache),
        params=params,
        kind=BACKEND_KIND,
        batch_size=batch_size,
    )


def encoding_changed(tokenizer) -> bool:
    """Whether encoding templated text without the tokenizer's special tokens
    (``local.adds_special_tokens``) gives other ids than encoding it with them did."""
    if adds_special_tokens(tokenizer):
        return False
    probe = render_chat(tokenizer, "probe")
    return (tokenizer.encode(probe, add_special_tokens=True)
            != tokenizer.encode(probe, add_special_tokens=False))
