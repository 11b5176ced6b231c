"""A cost plan before spending: judge calls, cache hits, estimated tokens and price.

Token counts are estimated from characters unless a real tokenizer's counter is given:
the plan exists to catch an order-of-magnitude surprise before a run, not to bill.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

# Tokens a chat request adds around one user message (role markers, priming the answer).
CHAT_OVERHEAD_TOKENS = 7
# English prose averages about four characters per token for GPT-style tokenizers.
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class JudgePrices:
    """USD per million tokens; the Batch API bills ``batch_price_factor`` of these."""

    input_per_million_usd: float
    output_per_million_usd: float
    batch_price_factor: float = 0.5


@dataclass(frozen=True)
class CostPlan:
    calls: int
    distinct_requests: int
    cached: int
    to_send: int
    input_tokens: int
    output_tokens: int
    sync_cost_usd: float
    batch_cost_usd: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def estimate_tokens(text: str, count_tokens: Callable[[str], int] | None = None) -> int:
    """Tokens of one request: the tokenizer's count if given, else characters / 4."""
    body = count_tokens(text) if count_tokens else round(len(text) / CHARS_PER_TOKEN)
    return int(body) + CHAT_OVERHEAD_TOKENS


def cost_plan(
    prompts: Sequence[str],
    to_send: Sequence[str],
    prices: JudgePrices,
    output_tokens_per_call: int = 1,
    count_tokens: Callable[[str], int] | None = None,
) -> CostPlan:
    """Plan for ``prompts`` of which only the distinct uncached ``to_send`` cost money.

    ``to_send`` is what the backend would send (its cache misses, repeats folded), so a
    rerun after editing one prompt file shows the price of just the changed prompts.
    """
    distinct = len(set(prompts))
    input_tokens = sum(estimate_tokens(p, count_tokens) for p in to_send)
    output_tokens = output_tokens_per_call * len(to_send)
    sync_cost = (
        input_tokens * prices.input_per_million_usd
        + output_tokens * prices.output_per_million_usd
    ) / 1e6
    return CostPlan(
        calls=len(prompts),
        distinct_requests=distinct,
        cached=distinct - len(to_send),
        to_send=len(to_send),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        sync_cost_usd=sync_cost,
        batch_cost_usd=sync_cost * prices.batch_price_factor,
    )
