"""A base tokenizer without a chat template (Llama 3 base models) gets the configured one,
saved with the prepared model (so with every checkpoint); without that setting, preparing
a model SFT trains stops naming it. Never a silent default."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.support.tiny_model import build_tiny_model
from tests.support.workflow import REPO
from value_drifts.core.chat_template import end_of_turn_token
from value_drifts.data.base_model import set_chat_template

pytestmark = pytest.mark.gpu_path
CHATML = str(REPO / "config/chat_templates/chatml.jinja")


@pytest.fixture
def templateless(tmp_path):
    folder = build_tiny_model(tmp_path / "base")
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data.pop("chat_template", None)
    config.write_text(json.dumps(data))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(folder).chat_template is None
    return folder


def test_a_model_sft_trains_without_a_template_stops_naming_it(templateless):
    with pytest.raises(ValueError, match=r"models\.llama3-3b: .* has no chat template.*"
                                         r"models\.llama3-3b\.chat_template"):
        set_chat_template(templateless, "llama3-3b", None, trained=True)
    assert set_chat_template(templateless, "llama3-3b", None, trained=False) is None


@pytest.mark.parametrize("source", ["file", "model"])
def test_the_configured_template_is_saved_with_the_model(templateless, tmp_path, source):
    from transformers import AutoTokenizer

    if source == "model":  # an instruct model whose template to copy
        instruct = tmp_path / "instruct"
        shutil.copytree(templateless, instruct)
        tokenizer = AutoTokenizer.from_pretrained(instruct)
        tokenizer.chat_template = (REPO / "config/chat_templates/chatml.jinja").read_text()
        tokenizer.save_pretrained(instruct)
        chosen = str(instruct)
    else:
        chosen = CHATML
    assert set_chat_template(templateless, "m", chosen, trained=True) == chosen
    tokenizer = AutoTokenizer.from_pretrained(templateless)
    assert end_of_turn_token(tokenizer) == "<|im_end|>"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
