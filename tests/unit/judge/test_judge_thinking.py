"""A Qwen3-style local judge is asked not to think first; other templates render as
before, so their cache keys stay."""

from __future__ import annotations

import pytest

from tests.support.tiny_model import build_tiny_model
from value_drifts.judge.local import render_chat

pytestmark = pytest.mark.gpu_path

QWEN3_LIKE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(build_tiny_model(tmp_path_factory.mktemp("t") / "m"))


def test_a_thinking_template_opens_with_an_empty_think_block(tokenizer):
    tokenizer.chat_template = QWEN3_LIKE
    assert render_chat(tokenizer, "Q").endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_other_templates_render_as_before(tokenizer):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    before = plain.apply_chat_template([{"role": "user", "content": "Q"}], tokenize=False,
                                       add_generation_prompt=True)
    assert render_chat(plain, "Q") == before
