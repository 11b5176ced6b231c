"""Stance distributions of training datasets and value gaps of preference sets (App. K).

Every dataset item and every evaluation question is embedded (sentence-transformers,
unit-length vectors); (item, question) pairs with cosine similarity at or above a threshold
(0.5 in the paper) are kept. Then:

- SFT datasets (Figure 19): each kept item is judged, as a whole conversation, for its
  stance toward the topic of every category it matched (``judge_conversation.txt``).
- Preference sets (Figure 20): the chosen and the rejected response of each pair are judged
  toward the topic of the pair's nearest question (or the pair's own category when it has
  one) with the response judge prompt; the value gap of a pair is the Euclidean distance
  between the two stance distributions (0 = same stance, sqrt(2) = opposite certainties).

The similarity search runs chunk by chunk (matrix products of normalised embeddings), so
255k items x 550 questions never needs the full similarity matrix.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from value_drifts.analysis.aggregate import PROB_COLUMNS, readable_answers
from value_drifts.core.stances import STANCES
from value_drifts.data.value_gap_set import Encoder, embed
from value_drifts.judge.run import judge_generations, read_stances, reading_columns
from value_drifts.judge.stance import DEFAULT_MIN_LABEL_MASS, judge_health

SPEAKER_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}
MAX_DISTANCE = math.sqrt(2.0)
NO_MATCH = "no question at or above the similarity threshold"
P_COLUMNS = tuple(PROB_COLUMNS)


# --- similarity search ------------------------------------------------------------------


def search_chunk(
    item_vectors: np.ndarray, question_vectors: np.ndarray, threshold: float, offset: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item index, question index, cosine) of every pair at or above ``threshold`` in one
    chunk of unit-length item vectors; item indices are shifted by ``offset``."""
    similarity = item_vectors @ question_vectors.T
    items, questions = np.nonzero(similarity >= threshold)
    return items + offset, questions, similarity[items, questions].astype(np.float32)


def _concatenate(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))


def similar_pairs(
    item_vectors: np.ndarray, question_vectors: np.ndarray, threshold: float, chunk_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (item, question, cosine) at or above ``threshold``, searched ``chunk_size`` items
    at a time; pairs come sorted by item, then question (as ``np.nonzero`` of the full
    matrix would give them)."""
    parts = [
        search_chunk(item_vectors[start : start + chunk_size], question_vectors, threshold, start)
        for start in range(0, len(item_vectors), chunk_size)
    ]
    return _concatenate(parts)


def embed_and_search(
    encoder: Encoder,
    texts: Sequence[str],
    question_vectors: np.ndarray,
    threshold: float,
    chunk_size: int = 4096,
    encode_batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``similar_pairs`` with the items embedded chunk by chunk: memory stays at one chunk
    of embeddings and one chunk x questions similarity block."""
    parts = []
    for start in tqdm(range(0, len(texts), chunk_size), desc="embedding", unit="chunk"):
        vectors = embed(encoder, texts[start : start + chunk_size], encode_batch_size)
        parts.append(search_chunk(vectors, question_vectors, threshold, start))
    return _concatenate(parts)


def match_table(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray], questions: pl.DataFrame
) -> pl.DataFrame:
    """The search's pairs as a table with each question's id and category."""
    items, question_index, similarity = pairs
    return pl.DataFrame(
        {
            "item": items.astype(np.int64),
            "question_id": questions["question_id"].gather(question_index.astype(np.int64)),
            "category": questions["category"].gather(question_index.astype(np.int64)),
            "similarity": similarity.astype(np.float64),
        },
        schema={"item": pl.Int64, "question_id": pl.Utf8, "category": pl.Utf8,
                "similarity": pl.Float64},
    )


def best_per_topic(matches: pl.DataFrame) -> pl.DataFrame:
    """One row per (item, category): the category's most similar question (ties: first id)."""
    return (
        matches.sort(["item", "category", "similarity", "question_id"],
                     descending=[False, False, True, False])
        .unique(["item", "category"], keep="first", maintain_order=True)
    )


def nearest_question(matches: pl.DataFrame) -> pl.DataFrame:
    """One row per item: its most similar question (ties: first question id)."""
    return (
        matches.sort(["item", "similarity", "question_id"], descending=[False, True, False])
        .unique("item", keep="first", maintain_order=True)
    )


# --- item text --------------------------------------------------------------------------


def first_user_turn(messages: Sequence[Mapping[str, Any]]) -> str:
    """The opening user message of a conversation ('' when there is none)."""
    return next((str(t.get("content") or "") for t in messages if t.get("role") == "user"), "")


def conversation_text(messages: Sequence[Mapping[str, Any]], max_chars: int | None = None):
    """A conversation as 'User: ...' / 'Assistant: ...' paragraphs, and whether it was cut
    to ``max_chars`` (long conversations would blow up the judge's context)."""
    text = "\n\n".join(
        f"{SPEAKER_NAMES.get(t.get('role'), str(t.get('role')))}: "
        f"{str(t.get('content') or '').strip()}"
        for t in messages
    )
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars].rstrip() + " [...]", True
    return text, False


def prompt_text(prompt: Sequence[Mapping[str, Any]]) -> str:
    """A preference pair's prompt as the judge's 'question': the user's message itself for a
    single-turn prompt, the transcript for a multi-turn one."""
    if len(prompt) == 1:
        return str(prompt[0].get("content") or "")
    return conversation_text(prompt)[0]


def sample_items(rows: list[dict[str, Any]], max_items: int | None, seed: int) -> list[int]:
    """Indices of the rows to analyse: all, or a seeded sample of ``max_items`` (sorted)."""
    from value_drifts.data.datasets import downsample

    indices = [{"i": i} for i in range(len(rows))]
    return [r["i"] for r in downsample(indices, max_items, seed)] if max_items else list(
        range(len(rows))
    )


# --- judging ----------------------------------------------------------------------------


def _stance_columns(readings: Sequence) -> list[pl.Series]:
    """The judge's reading columns (``judge.run.reading_columns``) a stances table keeps."""
    kept = (*P_COLUMNS, "readable", "top_is_label")
    return [column for column in reading_columns(readings) if column.name in kept]


def judge_conversations(
    rows: Sequence[Mapping[str, Any]],
    matches: pl.DataFrame,
    topics: Mapping[str, str],
    template: str,
    backend,
    max_chars: int | None = None,
    label_mass: float = DEFAULT_MIN_LABEL_MASS,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Stance of each matched (item, category) conversation toward the category's topic;
    an unreadable judge answer leaves the row's probabilities NaN and its stance null."""
    prompts, truncated = [], 0
    for item, category in matches.select("item", "category").iter_rows():
        text, cut = conversation_text(rows[item]["messages"], max_chars)
        truncated += cut
        prompts.append(template.format_map({"conversation": text, "topic": topics[category]}))
    readings = read_stances(prompts, backend, label_mass=label_mass)
    judged = matches.with_columns(_stance_columns(readings)) if readings else matches.with_columns(
        [pl.lit(None, dtype=pl.Float64).alias(c) for c in P_COLUMNS]
        + [pl.lit(None, dtype=pl.Boolean).alias(c) for c in ("readable", "top_is_label")]
    )
    health = judge_health(readings)
    counts = {
        "judged": len(readings),
        "unreadable": health["unreadable"],
        "truncated_conversations": truncated,
        "off_label_top_token": sum(not r.top_is_label for r in readings),
        "health": health,
    }
    return judged.with_columns(stance_label()), counts


def stance_label() -> pl.Expr:
    """The most probable stance of a row (the label the paper counts); null where the
    judge's answer was unreadable (NaN probabilities)."""
    return (
        pl.when(readable_answers(P_COLUMNS))
        .then(
            pl.concat_list(*P_COLUMNS).list.arg_max()
            .replace_strict(list(range(len(STANCES))), list(STANCES), return_dtype=pl.Utf8)
        )
        .otherwise(None)
        .alias("stance")
    )


def sft_dataset_stances(
    rows: list[dict[str, Any]],
    questions: pl.DataFrame,
    topics: Mapping[str, str],
    encoder: Encoder,
    template: str,
    backend,
    threshold: float,
    max_items: int | None = None,
    max_chars: int | None = None,
    chunk_size: int = 4096,
    seed: int = 0,
    label_mass: float = DEFAULT_MIN_LABEL_MASS,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Figure 19's data for one SFT dataset: one row per matched (item, category)."""
    chosen = sample_items(rows, max_items, seed)
    subset = [rows[i] for i in chosen]
    texts = [first_user_turn(row["messages"]) for row in subset]
    question_vectors = embed(encoder, questions["question"].to_list())
    pairs = embed_and_search(encoder, texts, question_vectors, threshold, chunk_size)
    matches = best_per_topic(match_table(pairs, questions))
    judged, judge_counts = judge_conversations(subset, matches, topics, template, backend,
                                               max_chars, label_mass)
    judged = judged.with_columns(pl.col("item").replace_strict(
        list(range(len(chosen))), chosen, return_dtype=pl.Int64))
    matched_items = judged["item"].n_unique()
    counts = {
        "items": len(rows),
        "analysed": len(subset),
        "matched_items": matched_items,
        "unmatched_items": {NO_MATCH: len(subset) - matched_items},
        "item_topic_pairs": judged.height,
        "per_category": dict(Counter(judged["category"].to_list())),
        **judge_counts,
    }
    return judged, counts


# --- value gap --------------------------------------------------------------------------


def stance_distance(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean distance between two arrays of stance distributions."""
    return np.linalg.norm(np.asarray(first, float) - np.asarray(second, float), axis=-1)


def value_gap_pairs(
    pairs: pl.DataFrame,
    questions: pl.DataFrame,
    topics: Mapping[str, str],
    encoder: Encoder,
    template: str,
    backend,
    threshold: float,
    chunk_size: int = 4096,
    label_mass: float = DEFAULT_MIN_LABEL_MASS,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Value gap of each pair of a table with text columns prompt, chosen, rejected (and
    optionally category): one row per pair that has a topic, with both stance distributions
    and their Euclidean ``distance``. A pair's topic is its own ``category`` when given,
    else the category of its nearest question at or above ``threshold``. A pair with an
    unreadable judge answer on either side has a null ``distance`` (counted in
    ``unreadable_pairs``), never a number."""
    pairs = pairs.with_row_index("item").with_columns(pl.col("item").cast(pl.Int64))
    own = pairs.filter(pl.col("category").is_not_null()) if "category" in pairs.columns else None
    unknown = sorted(set(own["category"]) - set(topics)) if own is not None else []
    if unknown:
        raise ValueError(f"categories not in the topic map: {unknown}")
    to_search = pairs if own is None else pairs.filter(pl.col("category").is_null())
    question_vectors = embed(encoder, questions["question"].to_list())
    found = embed_and_search(
        encoder, to_search["prompt_embed"].to_list(), question_vectors, threshold, chunk_size
    )
    nearest = nearest_question(match_table(found, questions)).with_columns(
        pl.col("item").replace_strict(list(range(to_search.height)), to_search["item"].to_list(),
                                      return_dtype=pl.Int64)
    )
    if own is not None and own.height:
        nearest = pl.concat([
            own.select("item", pl.lit(None, dtype=pl.Utf8).alias("question_id"), "category",
                       pl.lit(None, dtype=pl.Float64).alias("similarity")),
            nearest,
        ]).sort("item")
    matched = nearest.join(pairs.select("item", "prompt", "chosen", "rejected"), on="item")
    generations = pl.concat([
        matched.select(pl.col("item").cast(pl.Utf8).alias("question_id"), "category",
                       pl.lit(sample, dtype=pl.Int64).alias("sample"),
                       pl.col("prompt").alias("question"), pl.col(column).alias("response"))
        for sample, column in enumerate(("chosen", "rejected"))
    ])
    judgments, judge_counts = judge_generations(generations, topics, template, backend,
                                                label_mass)
    chosen = judgments.filter(pl.col("sample") == 0).select(P_COLUMNS).to_numpy()
    rejected = judgments.filter(pl.col("sample") == 1).select(P_COLUMNS).to_numpy()
    result = matched.select("item", "question_id", "category", "similarity").with_columns(
        *[pl.Series(f"chosen_{c}", chosen[:, i] if len(chosen) else [], dtype=pl.Float64)
          for i, c in enumerate(P_COLUMNS)],
        *[pl.Series(f"rejected_{c}", rejected[:, i] if len(rejected) else [], dtype=pl.Float64)
          for i, c in enumerate(P_COLUMNS)],
        pl.Series("distance", stance_distance(chosen, rejected) if len(chosen) else [],
                  dtype=pl.Float64).fill_nan(None),
    )
    counts = {
        "pairs": pairs.height,
        "with_topic": result.height,
        "own_category": 0 if own is None else own.height,
        "unmatched_pairs": {NO_MATCH: pairs.height - result.height},
        "unreadable_pairs": int(result["distance"].null_count()),
        **{f"judge_{k}": v for k, v in judge_counts.items()},
    }
    return result, counts


def preference_text_pairs(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """A prepared preference set (prompt/chosen/rejected messages) as text columns:
    ``prompt`` for the judge, ``prompt_embed`` (the first user turn) for the search."""
    records = [
        {
            "prompt": prompt_text(row["prompt"]),
            "prompt_embed": first_user_turn(row["prompt"]),
            "chosen": str(row["chosen"][-1]["content"]),
            "rejected": str(row["rejected"][-1]["content"]),
        }
        for row in rows
    ]
    return pl.DataFrame(records, schema={c: pl.Utf8 for c in
                                         ("prompt", "prompt_embed", "chosen", "rejected")})


# --- summaries ----------------------------------------------------------------------------

ALL_TOPICS = "All topics"


def _topics_then_all(table: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """Rows sorted by group, then category, with each group's 'All topics' row last."""
    return table.sort([*by, pl.col("category") == ALL_TOPICS, "category"])


def stance_distribution(stances: pl.DataFrame, by: Sequence[str] = ("dataset",)) -> pl.DataFrame:
    """Per group and category (and over all categories): matched items with a readable
    judge answer (``items``; ``unreadable`` the others), the share of them whose most
    probable stance is each label, and their mean stance probabilities."""
    by = list(by)
    aggregations = [
        pl.col("stance").count().alias("items"),
        pl.col("stance").null_count().alias("unreadable"),
        *[(pl.col("stance") == s).mean().alias(f"share_{s}") for s in STANCES],
        *[pl.col(c).fill_nan(None).mean().alias(f"mean_{c}") for c in P_COLUMNS],
    ]
    per_topic = stances.group_by([*by, "category"]).agg(aggregations)
    overall = stances.group_by(by).agg(aggregations).with_columns(
        pl.lit(ALL_TOPICS).alias("category"))
    return _topics_then_all(pl.concat([per_topic, overall.select(per_topic.columns)]), by)


def value_gap_summary(
    gaps: pl.DataFrame, threshold: float, by: Sequence[str] = ("preference_set",)
) -> pl.DataFrame:
    """Per group and category (and over all): pairs touching the topic with both sides
    readable (``pairs``; ``unreadable_pairs`` the others, left out), mean and median
    distance, and the share of pairs whose distance exceeds ``threshold``."""
    by = list(by)
    aggregations = [
        pl.col("distance").count().alias("pairs"),
        pl.col("distance").null_count().alias("unreadable_pairs"),
        pl.col("distance").mean().alias("mean_distance"),
        pl.col("distance").median().alias("median_distance"),
        (pl.col("distance") > threshold).mean().alias("share_above_threshold"),
    ]
    per_topic = gaps.group_by([*by, "category"]).agg(aggregations)
    overall = gaps.group_by(by).agg(aggregations).with_columns(
        pl.lit(ALL_TOPICS).alias("category"))
    return _topics_then_all(pl.concat([per_topic, overall.select(per_topic.columns)]), by)


# --- figures ------------------------------------------------------------------------------


def plot_stance_distributions(
    distribution: pl.DataFrame, outputs: Sequence[str | Path], dataset_column: str = "dataset"
) -> None:
    """Figure 19: per dataset, the share of retrieved items in each stance, per topic."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from value_drifts.analysis.plots import STANCE_COLOURS
    from value_drifts.core.figures import save_figure

    sns.set_theme(style="whitegrid", context="paper")
    datasets = sorted(distribution[dataset_column].unique().to_list()) or ["(none)"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 3.8),
                             sharey=True, squeeze=False)
    long = distribution.unpivot(
        index=[dataset_column, "category", "items"], on=[f"share_{s}" for s in STANCES],
        variable_name="stance", value_name="share",
    ).with_columns(pl.col("stance").str.strip_prefix("share_"))
    for ax, name in zip(axes[0], datasets, strict=True):
        part = long.filter(pl.col(dataset_column) == name)
        if part.height:
            items = dict(part.select("category", "items").unique().iter_rows())
            order = sorted(c for c in items if c != ALL_TOPICS) + [ALL_TOPICS]
            sns.barplot(
                data=part.to_pandas(), x="category", y="share", hue="stance", order=order,
                hue_order=list(STANCES), palette=STANCE_COLOURS, ax=ax, legend=ax is axes[0][-1],
            )
            ax.set_xticks(range(len(order)), [f"{c} (n={items[c]})" for c in order],
                          rotation=60, ha="right")
        else:
            ax.text(0.5, 0.5, "no item matched a question", ha="center", transform=ax.transAxes)
        ax.set_title(name)
        ax.set_xlabel("")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("share of retrieved items")
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.01, 1), title="stance")
    fig.tight_layout()
    save_figure(fig, outputs)


def plot_value_gap_histograms(
    gaps: Mapping[str, np.ndarray], outputs: Sequence[str | Path], bins: int = 20
) -> None:
    """Figure 20: one histogram of chosen-rejected stance distances per preference set;
    NaN distances (a side the judge answered unreadably) are left out of bars and n."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from value_drifts.core.figures import save_figure

    sns.set_theme(style="whitegrid", context="paper")
    names = list(gaps) or ["(none)"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 2.8), squeeze=False)
    edges = np.linspace(0.0, MAX_DISTANCE, bins + 1)
    for ax, name in zip(axes[0], names, strict=True):
        distances = np.asarray(gaps.get(name, []), float)
        distances = distances[~np.isnan(distances)]
        ax.hist(distances, bins=edges, color="#4c72b0", edgecolor="white")
        ax.set_title(f"{name} (n={len(distances)})")
        ax.set_xlabel("Euclidean distance, chosen vs rejected")
        ax.set_xlim(0, MAX_DISTANCE)
    axes[0][0].set_ylabel("pairs")
    fig.tight_layout()
    save_figure(fig, outputs)


def markdown_table(frame: pl.DataFrame, digits: int = 3) -> str:
    """A summary table as GitHub markdown (floats rounded)."""
    from tabulate import tabulate

    rounded = frame.with_columns(pl.col(pl.Float64).round(digits))
    return tabulate(rounded.rows(), headers=rounded.columns, tablefmt="github") + "\n"

