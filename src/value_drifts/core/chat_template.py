"""What a model's chat template says about turns: the token that ends an assistant turn.

SFT on conversations teaches a model to end its turn with the chat template's end-of-turn
token (ChatML's ``<|im_end|>``, Llama 3's ``<|eot_id|>``), which is often not the
tokenizer's ``eos_token`` (a base model's ``<|endoftext|>``). A checkpoint whose
tokenizer and generation config still name that eos never stops at the end of its answer:
generation runs on into invented turns, which the judge then reads, and PPO rollouts run to
the response limit. So the workflow reads the end-of-turn token from the template and makes
it the eos of everything it trains (TRL's ``SFTConfig.eos_token``; the generation config's
``eos_token_id``; PPO's ``stop_token_id``).
"""

from __future__ import annotations

from typing import Any

SENTINEL = "VALUEDRIFTSSENTINEL"


def end_of_turn_token(tokenizer: Any) -> str | None:
    """The special token the tokenizer's chat template writes right after an assistant
    message (None without a chat template, or when the template writes no special token
    there). ``tokenizer``: a transformers tokenizer."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": SENTINEL}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    after = text[text.index(SENTINEL) + len(SENTINEL):]
    specials = sorted(set(tokenizer.all_special_tokens) | set(
        getattr(tokenizer, "added_tokens_encoder", {}) or {}), key=len, reverse=True)
    stripped = after.lstrip(" ")
    return next((token for token in specials if token and stripped.startswith(token)), None)


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """Every token id that ends an answer: the end-of-turn token, the tokenizer's eos and
    the generation config's ``eos_token_id`` (an int or a list), without repeats, the
    end-of-turn token first."""
    ids: list[int] = []
    turn_end = end_of_turn_token(tokenizer)
    if turn_end is not None:
        ids.append(tokenizer.convert_tokens_to_ids(turn_end))
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    configured = getattr(generation_config, "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured] if configured is not None else []
    return list(dict.fromkeys(i for i in ids if i is not None))
