"""Local judge on GPU with vLLM's offline engine (``judge.backend: vllm``).

The judge prompt is rendered with the model's chat template by its tokenizer (the text
that keys the cache), encoded without adding special tokens again (as ``LLM.chat`` does
for templates that carry their own BOS) and sent to ``LLM.generate`` as token-id prompts
with ``SamplingParams(max_tokens=1, temperature=0, logprobs=k)``. The first generated
position's ``{token_id: Logprob}`` becomes the ``{token text: logprob}`` top list every
backend yields. Answers are cached (judge/local.py), and the engine starts only when some
prompt is not cached, so a rerun with unchanged inputs never touches the GPU.

vllm is imported lazily, inside the scorer: it cannot be installed on the CPU machines
this project is developed on. This backend is tested only with a stand-in ``vllm``
module that follows vLLM's API (``LLM``, ``SamplingParams``, ``RequestOutput.outputs[i]
.logprobs[position][token_id] -> Logprob(logprob, rank, decoded_token)``), never with
the real engine; run it once on a GPU machine before relying on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from value_drifts.backends.cache import JudgeCache
from value_drifts.judge.answer_fit import model_context
from value_drifts.judge.answers import merged_top
from value_drifts.judge.local import (
    CachedLocalJudge,
    adds_special_tokens,
    model_identity,
    render_chat,
)

BACKEND_KIND = "vllm_offline"


def judge_max_model_len(longest_prompt: int, model_window: int | None) -> int:
    """The vLLM judge engine's ``max_model_len``: the longest prompt it reads, in tokens,
    plus the one token it answers, never beyond the model's own window (``model_window``,
    None when unknown). Answers longer than the window are cut to fit before this
    (``judge.answer_fit``)."""
    needed = longest_prompt + 1
    return min(needed, model_window) if model_window else needed


class JudgeOutputError(RuntimeError):
    """vLLM returned no log-probabilities for an answer's first token."""


def top_from_position(
    position: Mapping[int, Any], decode: Callable[[int], str]
) -> dict[str, float]:
    """``{token text: logprob}`` from one position's ``{token_id: Logprob}``.

    ``decoded_token`` is None when the engine runs without detokenisation; the judge's
    tokenizer decodes the id then. Ids decoding to the same text add up (merged_top).
    """
    return merged_top(
        (
            entry.decoded_token if entry.decoded_token is not None else decode(token_id),
            float(entry.logprob),
        )
        for token_id, entry in position.items()
    )


def first_position_top(output: Any, decode: Callable[[int], str]) -> dict[str, float]:
    """The top list of a RequestOutput's first completion at its first generated token."""
    completion = output.outputs[0]
    if not completion.logprobs:
        raise JudgeOutputError(
            f"vLLM request {getattr(output, 'request_id', '?')} returned no logprobs"
        )
    return top_from_position(completion.logprobs[0], decode)


class VLLMScorer:
    """A vLLM engine reduced to first-token top lists; the engine starts on first use."""

    pads_batches = False  # vLLM schedules its own batches

    def __init__(
        self,
        model: str,
        top_logprobs: int = 20,
        tensor_parallel_size: int = 1,
        seed: int = 0,
        engine_args: Mapping[str, Any] | None = None,
    ):
        from transformers import AutoTokenizer

        self.model = model
        self.top_logprobs = top_logprobs
        self.tensor_parallel_size = tensor_parallel_size
        self.seed = seed
        self.engine_args = dict(engine_args or {})
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self._llm = None
        self._sampling_params = None
        self.generate_calls = 0
        self._sized: dict[str, Any] = {}  # engine arguments derived from the texts (prepare)

    def prepare(self, texts: Sequence[str]) -> None:
        """Size the engine's context to the longest of ``texts`` plus the one answer token
        (``judge_max_model_len``), unless ``judge.vllm.max_model_len`` is configured: vLLM
        otherwise reserves KV cache for the model's whole window (131,072 tokens for Llama
        3.1) to read prompts of a few hundred. A later call with a longer text (the prompt
        audit judges again with other templates) stops a running engine so the next one is
        started larger. The length is not part of the cache key (no reading depends on it)."""
        if "max_model_len" in self.engine_args or not texts:
            return
        longest = max(len(self._token_ids(text)) for text in texts)
        needed = judge_max_model_len(longest, model_context(self.model))
        if needed <= self._sized.get("max_model_len", 0):
            return
        if self._llm is not None:
            self._stop_engine()
        self._sized = {"max_model_len": needed}

    def _stop_engine(self) -> None:
        """Drop the running engine and free its memory (vLLM's documented way: delete the
        ``LLM`` and collect; its engine's ``shutdown`` where the version has one)."""
        import gc

        llm, self._llm = self._llm, None
        shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm
        gc.collect()

    def _engine(self):
        if self._llm is None:
            import vllm

            self._llm = vllm.LLM(
                model=self.model,
                tensor_parallel_size=self.tensor_parallel_size,
                seed=self.seed,
                **{**self._sized, **self.engine_args},
            )
            self._sampling_params = vllm.SamplingParams(
                max_tokens=1, temperature=0.0, logprobs=self.top_logprobs
            )
        return self._llm

    def render(self, prompt: str) -> str:
        return render_chat(self.tokenizer, prompt)

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        llm = self._engine()
        prompts = [{"prompt_token_ids": self._token_ids(text)} for text in texts]
        self.generate_calls += 1
        outputs = llm.generate(prompts, self._sampling_params, use_tqdm=False)
        return [first_position_top(output, self._decode) for output in outputs]

    def _token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=adds_special_tokens(self.tokenizer))

    def _decode(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])


def vllm_judge(
    model: str,
    cache: JudgeCache,
    top_logprobs: int = 20,
    tensor_parallel_size: int = 1,
    seed: int = 0,
    batch_size: int = 512,
    engine_args: Mapping[str, Any] | None = None,
) -> CachedLocalJudge:
    """The cached vLLM judge. ``batch_size`` is how many prompts go to the engine at once
    (and are stored together); vLLM schedules them on the GPU itself."""
    engine_args = dict(engine_args or {})
    return CachedLocalJudge(
        VLLMScorer(model, top_logprobs, tensor_parallel_size, seed, engine_args),
        cache,
        identity=model_identity(model, cache),
        params={
            "top_logprobs": top_logprobs, "max_tokens": 1, "temperature": 0.0,
            "tensor_parallel_size": tensor_parallel_size, "engine": engine_args,
        },
        kind=BACKEND_KIND,
        batch_size=batch_size,
    )
