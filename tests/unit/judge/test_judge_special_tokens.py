"""Every local judge encodes its rendered prompt the same way: a chat template writes its
own BOS, so the tokenizer adds none (a Llama 3 or Gemma tokenizer adds one by default,
which would give two, or one the adapted judge never saw); without a template the
tokenizer's own special tokens are added. The transformers and vLLM scorers and the
answer fit count the same ids."""

from __future__ import annotations

import types

import pytest
import torch

from tests.support.tiny_model import build_tiny_model
from value_drifts.judge.answer_fit import tokenizer_fit
from value_drifts.judge.local import render_chat
from value_drifts.judge.transformers_backend import TransformersScorer
from value_drifts.judge.vllm_backend import VLLMScorer

pytestmark = pytest.mark.gpu_path

BOS_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def bos_adding_model(tmp_path_factory):
    """The tiny model with a tokenizer that adds a BOS, like Gemma's and Llama 3's."""
    from transformers import AutoTokenizer

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny") / "bos")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.bos_token = "<|endoftext|>"  # SmolLM2's is <|im_start|>: keep them apart
    tokenizer.add_bos_token = True
    tokenizer.chat_template = BOS_TEMPLATE
    tokenizer.save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder)("hi").input_ids[0] == tokenizer.bos_token_id
    return folder


class RecordingModel:
    """Stands in for the causal LM: records the ids it is given, answers flat logits."""

    def __init__(self, vocab: int):
        self.vocab, self.inputs = vocab, []

    def __call__(self, input_ids, attention_mask, logits_to_keep):
        self.inputs.append([ids[mask.bool()].tolist()
                            for ids, mask in zip(input_ids, attention_mask, strict=True)])
        return types.SimpleNamespace(logits=torch.zeros(input_ids.shape[0], 1, self.vocab))


def _sent_ids(folder, texts):
    scorer = TransformersScorer(str(folder), top_logprobs=3)
    scorer._model = RecordingModel(len(scorer.tokenizer))
    scorer.score(texts)
    return scorer, scorer._model.inputs[0]


def test_a_template_that_writes_bos_gets_exactly_one(bos_adding_model):
    from transformers import AutoTokenizer

    text = render_chat(AutoTokenizer.from_pretrained(bos_adding_model), "Is the death penalty?")
    scorer, sent = _sent_ids(bos_adding_model, [text])
    bos = scorer.tokenizer.bos_token_id
    assert sent[0][0] == bos and sent[0].count(bos) == 1
    # vLLM's scorer and the answer fit read the same ids.
    assert VLLMScorer(str(bos_adding_model))._token_ids(text) == sent[0]
    fit = tokenizer_fit(scorer.tokenizer, 10_000, lambda prompt: text)
    assert fit.count("any") == len(sent[0])


def test_without_a_template_the_tokenizer_adds_its_bos(bos_adding_model, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bos_adding_model)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(bos_adding_model.parent / "bare")
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (bos_adding_model.parent / "bare" / name).write_bytes((bos_adding_model / name).read_bytes())
    scorer, sent = _sent_ids(bos_adding_model.parent / "bare", ["Q: yes?\nStance:"])
    assert render_chat(scorer.tokenizer, "Q: yes?\nStance:") == "Q: yes?\nStance:"
    assert sent[0][0] == scorer.tokenizer.bos_token_id and sent[0].count(sent[0][0]) == 1


def test_readings_cached_with_the_extra_bos_are_not_reused(bos_adding_model, tmp_path):
    """Only a tokenizer whose encoding changed gets another cache key; SmolLM2's (the small
    default's judge) adds nothing, so its cached readings stay valid."""
    from value_drifts.backends.cache import JudgeCache
    from value_drifts.judge.transformers_backend import transformers_judge

    cache = JudgeCache(tmp_path / "cache.sqlite")
    bos = transformers_judge(str(bos_adding_model), cache)
    assert bos.params["special_tokens"] == "template"
    plain = build_tiny_model(tmp_path / "plain")
    assert "special_tokens" not in transformers_judge(str(plain), cache).params
