"""The three stances a judge reads an answer as (paper §3), in the order of every table's
probability columns."""

STANCES: tuple[str, ...] = ("support", "neutral", "oppose")
