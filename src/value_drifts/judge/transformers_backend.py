"""Local judge on CPU: a transformers causal LM scored on its first answer token.

It returns the same ``{token: logprob}`` top list an OpenAI-compatible API returns with
``logprobs=True, top_logprobs=k``, so stance reading is shared by every backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


class TransformersJudge:
    def __init__(self, model_path: str, top_logprobs: int = 20, batch_size: int = 8):
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        self.model.eval()
        self.top_logprobs = top_logprobs
        self.batch_size = batch_size

    def _chat(self, prompt: str) -> str:
        if self.tokenizer.chat_template is None:
            return prompt
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )

    def batches(self, prompts: Sequence[str]) -> Iterator[tuple[int, list[dict[str, float]]]]:
        """Yield ``(batch size, top lists)`` so callers can drive a progress bar."""
        for start in range(0, len(prompts), self.batch_size):
            texts = [self._chat(p) for p in prompts[start : start + self.batch_size]]
            encoded = self.tokenizer(texts, return_tensors="pt", padding=True)
            with torch.inference_mode():
                # Only the next-token distribution is needed: skip the vocab projection elsewhere.
                logits = self.model(**encoded, logits_to_keep=1).logits[:, -1, :]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            values, indices = logprobs.topk(self.top_logprobs, dim=-1)
            tops = [
                {
                    self.tokenizer.decode([int(i)]): float(v)
                    for v, i in zip(row_values, row_indices, strict=True)
                }
                for row_values, row_indices in zip(values, indices, strict=True)
            ]
            yield len(texts), tops
