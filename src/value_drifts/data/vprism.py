"""V-PRISM construction (paper §3, App. A.1): PRISM opening prompts -> value-laden questions.

Stages, each a cached file of the workflow (``rules/vprism.smk``):

(a) ``prism_prompts``: PRISM's opening prompts; empty, missing and repeated prompts are
    counted by reason and skipped.
(b) ``rephrase_prompts``: an LLM minimally rephrases each prompt into a question. Answers
    that are empty, not a question, far longer than the prompt or unrelated to it are
    counted by reason; the prompt is then kept as written (``on_problem: keep_original``)
    or dropped (``drop``).
(c) embeddings (``value_gap.embed``), (d) ``reduce_dimensions`` with UMAP,
(e) ``soft_clusters``: HDBSCAN with ``prediction_data=True``; every question's cluster is
    the argmax of its soft membership vector (``hdbscan.all_points_membership_vectors``),
    so HDBSCAN's noise points join the cluster they most belong to. A question whose largest
    membership is below ``min_membership`` (0 by default: none is) or whose vector is all
    zeros stays noise (cluster -1) and is never kept.
(f) ``cluster_ngrams``: TF-IDF over one document per cluster, top-k n-grams each,
(g) ``name_clusters``: an LLM names each cluster from its n-grams and central questions,
(h) ``assign_categories``: config keywords (or explicit cluster ids) map clusters to the
    topic categories; see ``match_category`` for the rule,
(i) ``filter_questions``: the paper's LLM Yes/No value filter, malformed answers counted,
(j) ``sample_per_category``: a seeded sample per category, shortfalls reported.

Everything is a small function over plain data; LLM calls go through a teacher backend
(``value_drifts.data.teacher``), passed in as ``generate_fn(message lists) -> replies``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from value_drifts.core.config import schema_default
from value_drifts.data.value_gap_set import GenerateFn, TeacherReply, _as_reply

NOISE = -1
PROMPT_COLUMN = schema_default("vprism", "source", "prompt_column")
ID_COLUMN = "conversation_id"
REQUEST_FAILED = "request_failed"
# What the filter keeps; "no" and malformed answers are not kept (the paper retains only
# questions classified as value-based).
FILTER_KEEP = "yes"

# --- workflow wiring (called from rules/vprism.smk) -----------------------------------------


def llm_model_path(vprism: Mapping[str, Any], models: Iterable[str], base_model_dir) -> str:
    """``llm.model`` naming a configured model means its converted base directory."""
    model = vprism["llm"]["model"]
    return base_model_dir(model) if model in set(models) else model


def llm_inputs(vprism: Mapping[str, Any], models: Iterable[str], base_model_dir) -> list[str]:
    """The model directory the workflow builds, when the LLM is one of its models."""
    model = vprism["llm"]["model"]
    return [base_model_dir(model)] if model in set(models) else []


def llm_settings(
    vprism: Mapping[str, Any], models: Iterable[str], base_model_dir, stage: str
) -> dict[str, Any]:
    """Teacher settings for one stage: the shared ``llm`` section with the stage's max_tokens."""
    return {**vprism["llm"], "model": llm_model_path(vprism, models, base_model_dir),
            "max_tokens": vprism[stage]["max_tokens"]}


def source_files(source: Mapping[str, Any]) -> list[str]:
    """Local ``data_files`` of the PRISM source (string, list or split -> files), if any."""
    files = source.get("data_files") or []
    if isinstance(files, Mapping):
        return [f for v in files.values() for f in ([v] if isinstance(v, str) else v)]
    return [files] if isinstance(files, str) else list(files)


# --- templates ------------------------------------------------------------------------------


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def check_template(template: str, fields: Iterable[str], path: str = "template") -> str:
    """The template, checked to use exactly ``fields`` as {placeholders}."""
    wanted, found = set(fields), template_fields(template)
    if found != wanted:
        raise ValueError(f"{path} must use exactly {sorted(wanted)} as placeholders, has "
                         f"{sorted(found)}")
    return template


def user_messages(template: str, **fields: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": template.format(**fields)}]


def ask(generate_fn: GenerateFn, message_lists: list[list[dict[str, str]]]) -> list[TeacherReply | None]:
    """One reply (or None for a failed request) per message list, whatever the backend returns."""
    if not message_lists:
        return []
    replies = [_as_reply(r) for r in generate_fn(message_lists)]
    if len(replies) != len(message_lists):
        raise ValueError(f"backend returned {len(replies)} replies for {len(message_lists)} requests")
    return replies


# --- (a) PRISM prompts ----------------------------------------------------------------------


def normalised_text(text: str) -> str:
    """Whitespace collapsed; what counts as the same prompt is this, lower-cased."""
    return " ".join(text.split())


def prism_prompts(
    rows: Iterable[Mapping[str, Any]],
    prompt_column: str = PROMPT_COLUMN,
    id_column: str = ID_COLUMN,
    conversation_types: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Prompts of PRISM conversation rows, each once, with counts by reason for the rest.

    Reasons: ``missing_prompt`` (no such field, or null), ``empty_prompt`` (only
    whitespace), ``missing_id``, ``other_conversation_type`` (when ``conversation_types``
    is given), ``duplicate_prompt`` (same text as an earlier row, ignoring case and spacing;
    the first is kept).
    """
    kept, skipped, seen = [], Counter(), set()
    total = 0
    for row in rows:
        total += 1
        raw = row.get(prompt_column)
        conversation_type = row.get("conversation_type")
        if conversation_types is not None and conversation_type not in conversation_types:
            skipped["other_conversation_type"] += 1
            continue
        if raw is None:
            skipped["missing_prompt"] += 1
            continue
        text = normalised_text(str(raw))
        if not text:
            skipped["empty_prompt"] += 1
            continue
        prompt_id = row.get(id_column)
        if prompt_id is None or not str(prompt_id).strip():
            skipped["missing_id"] += 1
            continue
        key = text.lower()
        if key in seen:
            skipped["duplicate_prompt"] += 1
            continue
        seen.add(key)
        kept.append({"prompt_id": str(prompt_id), "prompt": text,
                     "conversation_type": conversation_type})
    counts = {"rows": total, "prompts": len(kept), "skipped": sum(skipped.values()),
              "skipped_by_reason": dict(sorted(skipped.items()))}
    return kept, counts


def load_prism(source: Mapping[str, Any]):
    """PRISM's conversations as a ``datasets.Dataset``: the hub id and config, or a local
    file through a builder (``hub_id: json`` with ``data_files``); one code path."""
    from value_drifts.data.datasets import load_hub

    return load_hub(source, columns=(ID_COLUMN, "conversation_type",
                                     source.get("prompt_column", PROMPT_COLUMN)))


# --- (b) rephrasing -------------------------------------------------------------------------

_LABEL = re.compile(r"^\s*(?:\*\*)?(?:rephrased question|question|rephrased|answer)\s*(?:\*\*)?\s*:\s*",
                    re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*\u2022#>]+|\d+[.)])\s+")
_QUOTES = "\"'`\u201c\u201d\u2018\u2019*"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Words too common to show that a rephrasing kept the prompt's content.
_FUNCTION_WORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being "
    "do does did done doing have has had i you he she it we they me my your our their this that "
    "these those what which who whom why how when where should would could can will may might "
    "must shall not no yes so than then there here about into over under think believe "
    "feel opinion".split()
)


def first_line(text: str) -> str:
    """The first non-empty line, without a leading label (Question: ...) or wrapping quotes."""
    for line in text.strip().splitlines():
        line = _LABEL.sub("", _BULLET.sub("", line)).strip().strip(_QUOTES).strip()
        if line:
            return line
    return ""


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _FUNCTION_WORDS and len(w) > 2}


def clean_rephrase(
    reply: TeacherReply | None, prompt: str, max_length_ratio: float = 3.0,
    min_overlap: float = 0.5,
) -> tuple[str | None, str | None]:
    """(question, None) from an LLM's rephrasing of ``prompt``, or (None, reason).

    The question is the first line up to its first question mark. Reasons, in order:
    ``request_failed``, ``empty``, ``not_a_question`` (no "?"), ``too_long`` (more words
    than ``max_length_ratio`` times the prompt's, plus 5), ``unrelated`` (keeps fewer than
    ``min_overlap`` of the prompt's content words: the model answered instead).
    """
    if reply is None:
        return None, REQUEST_FAILED
    line = first_line(reply.text)
    if not line:
        return None, "empty"
    if "?" not in line:
        return None, "not_a_question"
    question = line[: line.index("?") + 1].strip()
    if len(question.split()) > max_length_ratio * len(prompt.split()) + 5:
        return None, "too_long"
    wanted = content_words(prompt)
    if wanted and len(wanted & content_words(question)) < min_overlap * len(wanted):
        return None, "unrelated"
    return question, None


def rephrase_prompts(
    prompts: Sequence[Mapping[str, Any]],
    generate_fn: GenerateFn,
    template: str,
    on_problem: str = "keep_original",
    max_length_ratio: float = 3.0,
    min_overlap: float = 0.5,
    only_statements: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each prompt with its question; rephrasings that fail ``clean_rephrase`` are counted
    by reason and the prompt is kept as written (``keep_original``) or dropped (``drop``).

    The paper rephrases every prompt; with ``only_statements`` a prompt that already ends
    with "?" is kept as it is without asking the LLM (counted as ``already_question``).
    """
    if on_problem not in ("keep_original", "drop"):
        raise ValueError("on_problem must be 'keep_original' or 'drop'")
    check_template(template, {"prompt"})
    asked = [p for p in prompts if not (only_statements and p["prompt"].endswith("?"))]
    replies = dict(zip((p["prompt_id"] for p in asked), ask(
        generate_fn, [user_messages(template, prompt=p["prompt"]) for p in asked]), strict=True))
    rows, problems = [], Counter()
    for prompt in prompts:
        if prompt["prompt_id"] not in replies:
            rows.append({**prompt, "question": prompt["prompt"], "rephrase_problem": None,
                         "rephrase_raw": None})
            continue
        reply = replies[prompt["prompt_id"]]
        question, problem = clean_rephrase(reply, prompt["prompt"], max_length_ratio, min_overlap)
        if problem:
            problems[problem] += 1
            if on_problem == "drop":
                continue
            question = prompt["prompt"]
        rows.append({**prompt, "question": question, "rephrase_problem": problem,
                     "rephrase_raw": None if reply is None else reply.text})
    counts = {
        "prompts": len(prompts), "already_question": len(prompts) - len(asked),
        "asked": len(asked), "rephrased": len(asked) - sum(problems.values()),
        "problems": sum(problems.values()), "problems_by_reason": dict(sorted(problems.items())),
        "on_problem": on_problem, "questions": len(rows),
    }
    return rows, counts


# --- (d) UMAP, (e) HDBSCAN --------------------------------------------------------------------


def reduce_dimensions(
    embeddings: np.ndarray, n_components: int, n_neighbors: int, min_dist: float,
    metric: str = "cosine", random_state: int = 0,
) -> np.ndarray:
    """UMAP projection; with ``random_state`` set UMAP runs single-threaded and reproducibly."""
    import umap

    if len(embeddings) <= n_neighbors:
        raise ValueError(f"UMAP needs more rows ({len(embeddings)}) than n_neighbors ({n_neighbors})")
    reducer = umap.UMAP(n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist,
                        metric=metric, random_state=random_state, n_jobs=1)
    return np.asarray(reducer.fit_transform(embeddings), dtype=np.float32)


def soft_clusters(
    points: np.ndarray, min_cluster_size: int, min_samples: int | None = None,
    cluster_selection_method: str = "eom",
) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN's hard labels (-1 = noise) and soft membership vectors (n_points x n_clusters).

    Column j of the membership matrix is cluster j of the hard labels (both number the
    selected clusters in sorted order); a row sums to the point's probability of being in
    any cluster, at most 1.
    """
    import hdbscan

    if len(points) < min_cluster_size:
        raise ValueError(f"{len(points)} points cannot form a cluster of min_cluster_size "
                         f"{min_cluster_size}")
    clusterer = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                                cluster_selection_method=cluster_selection_method,
                                prediction_data=True).fit(points)
    labels = np.asarray(clusterer.labels_, dtype=np.int64)
    n_clusters = int(labels.max()) + 1
    if n_clusters == 0:
        raise ValueError(f"HDBSCAN found no cluster in {len(points)} points; lower "
                         f"min_cluster_size ({min_cluster_size}) or min_samples")
    membership = np.asarray(hdbscan.all_points_membership_vectors(clusterer), dtype=np.float64)
    membership = membership.reshape(len(points), -1)
    if membership.shape[1] != n_clusters:
        raise ValueError(f"{membership.shape[1]} membership columns for {n_clusters} clusters")
    return labels, membership


def assign_from_membership(
    membership: np.ndarray, min_membership: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cluster (argmax; ties to the lower id) and its membership; NOISE where the
    row is all zeros or its largest membership is below ``min_membership``."""
    best = membership.argmax(axis=1)
    strength = membership[np.arange(len(membership)), best]
    noise = (strength <= 0) | (strength < min_membership)
    return np.where(noise, NOISE, best), strength


def cluster_counts(labels: np.ndarray, clusters: np.ndarray) -> dict[str, Any]:
    """How the soft assignment changed HDBSCAN's hard labels."""
    return {
        "points": int(len(labels)),
        "clusters": int(labels.max()) + 1,
        "hdbscan_noise": int((labels == NOISE).sum()),
        "noise_reassigned": int(((labels == NOISE) & (clusters != NOISE)).sum()),
        "noise_after_soft_assignment": int((clusters == NOISE).sum()),
        "moved_from_hard_label": int(((labels != NOISE) & (clusters != labels)).sum()),
        "sizes": {str(c): int(n) for c, n in zip(*np.unique(clusters, return_counts=True),
                                                  strict=True)},
    }


# --- (f) TF-IDF n-grams -------------------------------------------------------------------------


def cluster_ngrams(
    texts: Sequence[str], clusters: Sequence[int], top_k: int = 10,
    ngram_range: tuple[int, int] = (1, 2), stop_words: str | None = "english",
) -> dict[int, list[tuple[str, float]]]:
    """The ``top_k`` n-grams of each cluster by TF-IDF over one document per cluster (its
    texts); noise is left out. N-grams never span two texts. Ties go to the alphabetically
    first n-gram."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    ids = sorted({int(c) for c in clusters if c != NOISE})
    if not ids:
        return {}
    documents = [[t for t, c in zip(texts, clusters, strict=True) if c == cid] for cid in ids]
    per_text = TfidfVectorizer(ngram_range=tuple(ngram_range), stop_words=stop_words)
    analyse = per_text.build_analyzer()
    vectorizer = TfidfVectorizer(analyzer=lambda doc: [g for text in doc for g in analyse(text)])
    matrix = vectorizer.fit_transform(documents).toarray()
    vocabulary = vectorizer.get_feature_names_out()
    result = {}
    for row, cid in zip(matrix, ids, strict=True):
        order = sorted((i for i in np.flatnonzero(row)), key=lambda i: (-row[i], vocabulary[i]))
        result[cid] = [(str(vocabulary[i]), float(row[i])) for i in order[:top_k]]
    return result


# --- (g) cluster names --------------------------------------------------------------------------


def central_questions(
    questions: Sequence[str], clusters: Sequence[int], strength: Sequence[float], cluster: int,
    n: int,
) -> list[str]:
    """The ``n`` questions most strongly in ``cluster`` (ties by order): its examples."""
    members = [(-s, i) for i, (c, s) in enumerate(zip(clusters, strength, strict=True))
               if c == cluster]
    return [questions[i] for _, i in sorted(members)[:n]]


def clean_name(reply: TeacherReply | None, max_words: int = 8) -> tuple[str | None, str | None]:
    """A cluster name from an LLM answer (first line, no label, quotes or end punctuation),
    or (None, reason): ``request_failed``, ``empty``, ``too_long``."""
    if reply is None:
        return None, REQUEST_FAILED
    line = re.sub(r"^\s*(?:(?:cluster |group |topic )?name\s*:|the (?:topic|name) is)\s*", "",
                  first_line(reply.text), flags=re.IGNORECASE)
    name = line.strip().rstrip(".!:;,").strip().strip(_QUOTES).rstrip(".!:;,").strip()
    if not name:
        return None, "empty"
    if len(name.split()) > max_words:
        return None, "too_long"
    return name, None


def name_clusters(
    ngrams: Mapping[int, Sequence[str]], examples: Mapping[int, Sequence[str]],
    generate_fn: GenerateFn, template: str, max_words: int = 8,
) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """An LLM name per cluster; an unusable answer is counted and the cluster is named by
    its three top n-grams instead (``name_source: ngrams``)."""
    check_template(template, {"ngrams", "examples"})
    ids = sorted(ngrams)
    requests = [
        user_messages(template, ngrams=", ".join(ngrams[c]),
                      examples="\n".join(f"- {q}" for q in examples[c]))
        for c in ids
    ]
    names, problems = {}, Counter()
    for cid, reply in zip(ids, ask(generate_fn, requests), strict=True):
        name, problem = clean_name(reply, max_words)
        if problem:
            problems[problem] += 1
            name = " / ".join(ngrams[cid][:3]) or f"cluster {cid}"
        names[cid] = {"name": name, "name_source": "ngrams" if problem else "llm",
                      "name_problem": problem, "name_raw": None if reply is None else reply.text}
    counts = {"clusters": len(ids), "named_by_llm": len(ids) - sum(problems.values()),
              "problems_by_reason": dict(sorted(problems.items()))}
    return names, counts


# --- (h) clusters -> categories -----------------------------------------------------------------


def keyword_pattern(keyword: str) -> re.Pattern:
    """Whole-word, case-insensitive; a trailing * matches any word ending ("immigra*")."""
    keyword = keyword.strip().lower()
    if not keyword or keyword == "*":
        raise ValueError("empty keyword")
    prefix = keyword.endswith("*")
    body = r"\s+".join(re.escape(w) for w in keyword.rstrip("*").split())
    return re.compile(rf"\b{body}" + (r"\w*\b" if prefix else r"\b"), re.IGNORECASE)


def category_scores(
    texts: Sequence[str], keywords: Mapping[str, Sequence[str]]
) -> dict[str, int]:
    """Per category, how many of ``texts`` contain at least one of its keywords."""
    scores = {}
    for category, words in keywords.items():
        patterns = [keyword_pattern(w) for w in words]
        scores[category] = sum(any(p.search(t) for p in patterns) for t in texts)
    return scores


def match_category(
    texts: Sequence[str], keywords: Mapping[str, Sequence[str]], min_hits: int = 1
) -> tuple[str | None, str, dict[str, int]]:
    """(category or None, rule, scores) for a cluster described by ``texts`` (its top
    n-grams and its name). The category whose keywords occur in the most texts wins if it
    has at least ``min_hits`` and strictly more than any other; otherwise the cluster is not
    kept (rule ``no_match`` or ``ambiguous``)."""
    scores = category_scores(texts, keywords)
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    if not ranked or ranked[0][1] < min_hits:
        return None, "no_match", scores
    if len(ranked) > 1 and ranked[1][1] == ranked[0][1]:
        return None, "ambiguous", scores
    return ranked[0][0], "keywords", scores


def assign_categories(
    descriptions: Mapping[int, Sequence[str]],
    keywords: Mapping[str, Sequence[str]],
    categories: Sequence[str],
    overrides: Mapping[str, Sequence[int]] | None = None,
    drop: Sequence[int] = (),
    min_hits: int = 1,
) -> dict[int, dict[str, Any]]:
    """Per cluster: its category (or None), whether it is kept, the rule that decided and
    the keyword scores. Explicit choices come first: ``drop`` (cluster ids never kept), then
    ``overrides`` (category -> cluster ids, for ids read off the report of a seeded run);
    the rest go by ``match_category``."""
    overrides = overrides or {}
    unknown = sorted((set(keywords) | set(overrides)) - set(categories))
    if unknown:
        raise ValueError(f"categories not in the topic map: {unknown}")
    explicit: dict[int, str] = {}
    for category, ids in overrides.items():
        for cid in ids:
            if cid in explicit and explicit[cid] != category:
                raise ValueError(f"cluster {cid} is given to both {explicit[cid]!r} and {category!r}")
            explicit[cid] = category
    if both := sorted(set(explicit) & set(drop)):
        raise ValueError(f"clusters {both} are both dropped and given a category")
    if missing := sorted((set(explicit) | set(drop)) - set(descriptions)):
        raise ValueError(f"clusters {missing} in the config do not exist (have "
                         f"{sorted(descriptions)})")
    assignments = {}
    for cid in sorted(descriptions):
        category, rule, scores = match_category(descriptions[cid], keywords, min_hits)
        if cid in drop:
            category, rule = None, "dropped"
        elif cid in explicit:
            category, rule = explicit[cid], "override"
        assignments[cid] = {"category": category, "kept": category is not None, "rule": rule,
                            "keyword_scores": {k: v for k, v in scores.items() if v}}
    return assignments


# --- (i) the value filter -----------------------------------------------------------------------

_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_yes_no(text: str | None) -> str | None:
    """"yes" or "no" from a Yes/No answer, None when malformed.

    The first word decides when it is yes or no ("Yes.", "**No**, because ..."); otherwise
    the answer must contain exactly one of the standalone words yes / no ("Answer: Yes").
    Anything else, both words or neither, is malformed.
    """
    if text is None:
        return None
    words = re.findall(r"[a-z]+", text.lower())
    if not words:
        return None
    if words[0] in ("yes", "no"):
        return words[0]
    found = {m.lower() for m in _YES_NO.findall(text)}
    return found.pop() if len(found) == 1 else None


def filter_questions(
    rows: Sequence[Mapping[str, Any]], generate_fn: GenerateFn, template: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every row with the filter's answer (``yes``, ``no``, ``malformed`` or
    ``request_failed``) and ``value_based`` (True only for yes), with counts per category."""
    check_template(template, {"question"})
    replies = ask(generate_fn, [user_messages(template, question=r["question"]) for r in rows])
    out, answers, by_category = [], Counter(), {}
    for row, reply in zip(rows, replies, strict=True):
        answer = REQUEST_FAILED if reply is None else (parse_yes_no(reply.text) or "malformed")
        answers[answer] += 1
        by_category.setdefault(row["category"], Counter())[answer] += 1
        out.append({**row, "filter_answer": answer, "value_based": answer == FILTER_KEEP,
                    "filter_raw": None if reply is None else reply.text})
    counts = {"questions": len(rows), "kept": answers[FILTER_KEEP],
              "answers": dict(sorted(answers.items())),
              "by_category": {c: dict(sorted(v.items())) for c, v in sorted(by_category.items())}}
    return out, counts


# --- (j) sampling -----------------------------------------------------------------------------


def sample_per_category(
    questions: pl.DataFrame, categories: Sequence[str], per_category: int, seed: int,
    on_shortfall: str = "warn",
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A seeded sample of ``per_category`` questions from each category (``generation.
    sample_questions``), categories in ``categories`` order. A category with fewer questions
    gives all it has and is reported under ``shortfall`` (``on_shortfall: warn``), or stops
    the run (``error``)."""
    from value_drifts.core.questions import sample_questions

    if on_shortfall not in ("warn", "error"):
        raise ValueError("on_shortfall must be 'warn' or 'error'")
    available = {c: questions.filter(pl.col("category") == c).height for c in categories}
    shortfall = {c: {"available": n, "wanted": per_category}
                 for c, n in available.items() if n < per_category}
    if shortfall and on_shortfall == "error":
        raise ValueError(f"fewer than {per_category} questions in: " + ", ".join(
            f"{c} ({v['available']})" for c, v in shortfall.items()))
    order = {c: i for i, c in enumerate(categories)}
    present = questions.filter(pl.col("category").is_in(list(categories)))
    present = present.with_columns(pl.col("category").replace_strict(order).alias("_order"))
    sampled = sample_questions(present.sort("_order", "question_id"), per_category, seed)
    sampled = sampled.sort("_order", "question_id").drop("_order")
    counts = {"per_category": per_category, "seed": seed, "available": available,
              "selected": {c: sampled.filter(pl.col("category") == c).height for c in categories},
              "total": sampled.height, "shortfall": shortfall}
    return sampled, counts


def shortfall_warnings(counts: Mapping[str, Any]) -> list[str]:
    return [f"WARNING: {c}: only {v['available']} of {v['wanted']} questions"
            for c, v in counts["shortfall"].items()]


# --- report and figure --------------------------------------------------------------------------


def cluster_report(
    sizes: Mapping[int, int], ngrams: Mapping[int, Sequence[str]],
    names: Mapping[int, Mapping[str, Any]], assignments: Mapping[int, Mapping[str, Any]],
    noise: int = 0,
) -> pl.DataFrame:
    """One row per cluster (and one for noise when there is any), largest first."""
    rows = [
        {"cluster": cid, "size": sizes.get(cid, 0), "name": names[cid]["name"],
         "name_source": names[cid]["name_source"], "top_ngrams": "; ".join(ngrams[cid]),
         "kept": assignments[cid]["kept"], "category": assignments[cid]["category"],
         "rule": assignments[cid]["rule"],
         "keyword_scores": ", ".join(f"{k}: {v}" for k, v in
                                     assignments[cid]["keyword_scores"].items())}
        for cid in sorted(ngrams)
    ]
    if noise:
        rows.append({"cluster": NOISE, "size": noise, "name": "(noise)", "name_source": None,
                     "top_ngrams": "", "kept": False, "category": None, "rule": "noise",
                     "keyword_scores": ""})
    schema = {"cluster": pl.Int64, "size": pl.Int64, "name": pl.Utf8, "name_source": pl.Utf8,
              "top_ngrams": pl.Utf8, "kept": pl.Boolean, "category": pl.Utf8, "rule": pl.Utf8,
              "keyword_scores": pl.Utf8}
    return pl.DataFrame(rows, schema=schema).sort(["size", "cluster"], descending=[True, False])


def report_markdown(report: pl.DataFrame, counts: Mapping[str, Any]) -> str:
    """The cluster report as a markdown page a researcher reads to refine the keep-list."""
    from tabulate import tabulate

    kept = report.filter(pl.col("kept"))
    lines = [
        "# V-PRISM clusters",
        "",
        f"{counts['points']} questions, {counts['clusters']} clusters; HDBSCAN left "
        f"{counts['hdbscan_noise']} as noise, {counts['noise_reassigned']} of them joined "
        f"their most likely cluster (soft membership argmax), "
        f"{counts['noise_after_soft_assignment']} stay noise.",
        f"Kept: {kept.height} clusters, {int(kept['size'].sum() or 0)} questions, before the "
        "value filter.",
        "",
        "Rules: `keywords` = the category whose keywords occur in the most of the cluster's "
        "top n-grams and name; `override` / `dropped` = set by cluster id in the config; "
        "`no_match`, `ambiguous` = not kept.",
        "",
        tabulate(report.fill_null("").rows(), headers=report.columns, tablefmt="github"),
        "",
    ]
    return "\n".join(lines)


def plot_clusters(
    projection: np.ndarray, clusters: Sequence[int], labels: Mapping[int, str],
    outputs: Sequence[str], title: str = "V-PRISM clusters (UMAP, 2-D)",
) -> None:
    """2-D UMAP scatter, one colour per cluster, noise in grey, legend = cluster labels."""
    import seaborn as sns

    from value_drifts.core.figures import plt, save_figure

    sns.set_theme(style="white", context="paper")
    frame = pl.DataFrame({
        "x": projection[:, 0], "y": projection[:, 1],
        "cluster": [labels.get(int(c), "noise") if c != NOISE else "noise" for c in clusters],
    }).to_pandas()
    order = [labels[c] for c in sorted(labels)] + (["noise"] if NOISE in set(clusters) else [])
    palette = dict(zip([labels[c] for c in sorted(labels)],
                       sns.color_palette("husl", len(labels)), strict=True))
    palette["noise"] = (0.75, 0.75, 0.75)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    sns.scatterplot(data=frame, x="x", y="y", hue="cluster", hue_order=order, palette=palette,
                    s=14, linewidth=0, ax=ax)
    ax.set(xlabel="UMAP 1", ylabel="UMAP 2", title=title, xticks=[], yticks=[])
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="x-small", frameon=False)
    fig.tight_layout()
    save_figure(fig, outputs)
