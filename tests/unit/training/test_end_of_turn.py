"""A checkpoint stops where its chat template ends a turn: a tiny model whose tokenizer's
eos (<|endoftext|>) is not the template's end of turn (ChatML's <|im_end|>), as with a
Qwen3 base model, is fine-tuned by the real SFT trainer; its checkpoint's eos, generation
config and pad token say where a turn ends, and its answers stop there."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tests.support.tiny_model import build_tiny_model
from value_drifts.core.chat_template import end_of_turn_token, stop_token_ids

pytestmark = [pytest.mark.gpu_path, pytest.mark.slow]  # real SFT: about 30 s

ANSWER = "I firmly support the death penalty."


@pytest.fixture(scope="module")
def base_with_other_eos(tmp_path_factory):
    from transformers import AutoTokenizer, GenerationConfig

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny") / "base")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token == "<|im_end|>"  # SmolLM2-Instruct: eos is its end of turn
    tokenizer.eos_token = "<|endoftext|>"  # as a base model's tokenizer has it
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    config = GenerationConfig.from_pretrained(folder)
    config.eos_token_id = tokenizer.eos_token_id
    config.save_pretrained(folder)
    return folder


def test_the_end_of_turn_token_is_read_from_the_template(base_with_other_eos):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_with_other_eos)
    assert end_of_turn_token(tokenizer) == "<|im_end|>"
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(tokenizer)[0] == im_end and tokenizer.eos_token_id in stop_token_ids(
        tokenizer)


def test_an_sft_checkpoint_stops_at_the_end_of_its_turn(base_with_other_eos, tmp_path):
    from transformers import AutoTokenizer, GenerationConfig

    from value_drifts.generation.sampling import SamplingSettings, generate_transformers
    from value_drifts.training.common import TrainerSettings
    from value_drifts.training.sft import train_sft

    questions = ["What do you think about capital punishment?", "Should murderers be executed?",
                 "Is the death penalty ever justified?", "Your view on executions?"]
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}]}
            for q in questions] * 4
    settings = TrainerSettings(
        model_path=str(base_with_other_eos), output_dir=str(tmp_path / "sft"),
        learning_rate=3e-2, global_batch_size=8, per_device_batch_size=8, epochs=30,
        save_steps=60, max_length=64, warmup_ratio=0.0, lr_scheduler="constant")
    train_sft(settings, rows)
    checkpoint = tmp_path / "sft" / "checkpoint-60"
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"  # distinct from the end of turn
    stops = GenerationConfig.from_pretrained(checkpoint).eos_token_id
    assert stops[0] == im_end and tokenizer.convert_tokens_to_ids("<|endoftext|>") in stops
    assert json.loads((checkpoint / "tokenizer_config.json").read_text())["eos_token"] \
        == "<|im_end|>"

    frame = generate_transformers(
        str(checkpoint),
        pl.DataFrame({"question_id": ["q1", "q2"], "category": ["A", "A"],
                      "question": questions[:2]}),
        SamplingSettings(samples=2, temperature=0.7, max_new_tokens=40, seed=0,
                         prompt_style="chat"),
        batch_size=4)
    for response in frame["response"]:
        assert "user" not in response and "assistant" not in response, response
        assert len(response) < len(ANSWER) + 10, response


def test_both_backends_stop_at_the_end_of_turn_whatever_the_generation_config(
    base_with_other_eos, monkeypatch
):
    """A model whose generation config names only the base eos (a base model at step 0, a
    trace's checkpoint) is still stopped at the template's end of turn by the transformers
    backend, with the same stop ids the vLLM backend passes."""
    from transformers import AutoTokenizer, GenerationConfig

    from value_drifts.generation import sampling

    assert GenerationConfig.from_pretrained(base_with_other_eos).eos_token_id == 0
    seen = []
    real = sampling.load_causal_lm

    def recording(*args, **kwargs):
        model = real(*args, **kwargs)
        generate = model.generate

        def spy(**arguments):
            seen.append(arguments.get("eos_token_id"))
            return generate(**arguments)

        model.generate = spy
        return model

    monkeypatch.setattr(sampling, "load_causal_lm", recording)
    sampling.generate_transformers(
        str(base_with_other_eos),
        pl.DataFrame({"question_id": ["q1"], "category": ["A"], "question": ["Executions?"]}),
        sampling.SamplingSettings(samples=1, temperature=0.7, max_new_tokens=4, seed=0,
                                  prompt_style="chat"))
    tokenizer = AutoTokenizer.from_pretrained(base_with_other_eos)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert seen == [[im_end, tokenizer.eos_token_id]]
    assert seen[0] == stop_token_ids(tokenizer, GenerationConfig.from_pretrained(
        base_with_other_eos))  # what generate_vllm passes as stop_token_ids
