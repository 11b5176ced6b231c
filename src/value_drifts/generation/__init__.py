"""Answers to the evaluation questions sampled from one checkpoint (transformers or vLLM)."""
