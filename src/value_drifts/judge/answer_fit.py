"""Answers cut to fit the judge's context window, never read past it without a word.

A judge reads the whole judge prompt (instruction, question, answer, label list) before
its first answer token. An answer longer than the judge's context leaves it two wrong
choices: a local model reads positions it was never trained on (or fails), a server
refuses the prompt or cuts it where it likes. So before judging, every answer whose
prompt would not fit is cut at its end to the longest head that fits, and flagged
``cut_to_fit`` (``judge.answer_flags``): it is still a stance (its first part, where
answers say what they think), counted in values, and its count per checkpoint is in the
judge's health with examples.

What "fits" means per backend (``AnswerFit``):

- local judges (transformers, vLLM): the judge's own tokenizer counts the prompt after
  the chat template; the context is ``judge.context_tokens`` when set, else vLLM's
  ``judge.vllm.max_model_len``, else the model config's ``max_position_embeddings``;
- judges behind a URL: the tokenizer is the server's, so the prompt's UTF-8 bytes bound
  its tokens from above (a byte-level BPE token holds at least one byte) against
  ``judge.context_tokens``; unset, nothing is cut and a server refuses an overlong prompt
  with an error that names it.

One token is always kept free for the answer token the judge writes, and a URL judge
keeps ``CHAT_WRAPPER_TOKENS`` more for the chat template the server puts around the
prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from value_drifts.judge.local import adds_special_tokens
from value_drifts.judge.prompt import render

# Tokens a server's chat template adds around one user turn (role markers, BOS, the
# assistant header): generous for the templates in use (ChatML adds about 10).
CHAT_WRAPPER_TOKENS = 64


class AnswerDoesNotFitError(ValueError):
    """The judge prompt without any answer is already longer than the judge's context."""


@dataclass(frozen=True)
class AnswerFit:
    """How much of a judge prompt a judge can read.

    ``count(prompt)``: what the prompt costs (tokens, or a byte bound on them);
    ``head(text, n)``: the first ``n`` such units of an answer; ``reserve``: units kept
    free (the answer token, a server's chat template); ``unit``: "tokens" or "bytes"."""

    context: int
    count: Callable[[str], int]
    head: Callable[[str, int], str]
    reserve: int = 1
    unit: str = "tokens"

    def room(self, prompt: str) -> int:
        """Units left for more text after ``prompt`` (negative: it does not fit)."""
        return self.context - self.reserve - self.count(prompt)


def byte_fit(context_tokens: int) -> AnswerFit:
    """The fit of a judge behind a URL with a ``context_tokens`` window: UTF-8 bytes,
    an upper bound on any byte-level BPE tokenizer's count."""

    def head(text: str, n: int) -> str:
        return text.encode("utf-8")[: max(n, 0)].decode("utf-8", errors="ignore")

    return AnswerFit(
        context=int(context_tokens), count=lambda text: len(text.encode("utf-8")), head=head,
        reserve=1 + CHAT_WRAPPER_TOKENS, unit="bytes",
    )


def tokenizer_fit(tokenizer, context_tokens: int, rendered: Callable[[str], str]) -> AnswerFit:
    """The fit of a local judge: ``tokenizer`` counts ``rendered(prompt)`` (the prompt
    in the model's chat template, as the scorer encodes it) against ``context_tokens``."""
    add_special = adds_special_tokens(tokenizer)

    def count(prompt: str) -> int:
        return len(tokenizer.encode(rendered(prompt), add_special_tokens=add_special))

    def head(text: str, n: int) -> str:
        ids = tokenizer.encode(text, add_special_tokens=False)
        return tokenizer.decode(ids[: max(n, 0)])

    return AnswerFit(context=int(context_tokens), count=count, head=head)


def model_context(model_path: str, configured: int | None = None) -> int | None:
    """A local judge's context in tokens: ``configured`` when set, else the model
    config's ``max_position_embeddings`` (None when the config has none)."""
    if configured:
        return int(configured)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None) or getattr(
            getattr(config, "text_config", None), name, None)
        if value:
            return int(value)
    return None


def fitted_answer(
    template: str, question: str, response: str, topic: str, fit: AnswerFit | None
) -> tuple[str, bool]:
    """``(answer, cut)``: ``response`` as is when its judge prompt fits ``fit`` (or no fit
    is known), else its longest head whose prompt fits, and True.

    Raises AnswerDoesNotFitError when the prompt without an answer does not fit."""
    if fit is None or fit.room(render(template, question, response, topic)) >= 0:
        return response, False
    room = fit.room(render(template, question, "", topic))
    if room <= 0:
        raise AnswerDoesNotFitError(
            f"the judge prompt without an answer takes {fit.context - fit.reserve - room} "
            f"{fit.unit} of the judge's {fit.context}: raise judge.context_tokens or use a "
            "shorter prompt"
        )
    cut = fit.head(response, room)
    # A cut can tokenise differently from the same text inside the prompt: shrink to fit.
    while cut and fit.room(render(template, question, cut, topic)) < 0:
        room -= max(1, room // 20)
        cut = fit.head(response, room)
    return cut, True
