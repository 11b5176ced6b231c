"""The evaluation questions: read the V-PRISM question table, check it, and select the
questions a study evaluates (``questions.categories``, ``questions.per_category``)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


def sample_questions(
    questions: pl.DataFrame, per_category: int | None, seed: int,
    categories: Sequence[str] | None = None,
) -> pl.DataFrame:
    """A seeded sample of ``per_category`` questions from each category (all when None),
    of the ``categories`` given (``questions.categories``; all when None). Raises
    ValueError naming a category of ``categories`` that has no question."""
    if categories is not None:
        missing = sorted(set(categories) - set(questions["category"]))
        if missing:
            raise ValueError(f"questions.categories: no question in categories {missing}")
        questions = questions.filter(pl.col("category").is_in(list(categories)))
    if per_category is None:
        return questions
    return pl.concat(
        [
            group.sample(n=min(per_category, group.height), seed=seed).sort("question_id")
            for _, group in questions.group_by("category", maintain_order=True)
        ]
    )


REQUIRED_QUESTION_COLUMNS = ("question_id", "category", "question")


def read_questions(path: str, categories: Sequence[str]) -> pl.DataFrame:
    """Read a question table, rejecting missing columns, unknown categories, empty or duplicate rows."""
    frame = pl.read_parquet(path) if path.endswith(".parquet") else pl.read_csv(path)
    missing = [c for c in REQUIRED_QUESTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    problems = []
    empty = frame.filter(
        pl.any_horizontal(pl.col(c).is_null() | (pl.col(c).cast(pl.Utf8).str.strip_chars() == "")
                          for c in REQUIRED_QUESTION_COLUMNS)
    )
    if empty.height:
        problems.append(f"{empty.height} row(s) with an empty field")
    unknown = sorted(set(frame["category"].drop_nulls()) - set(categories))
    if unknown:
        problems.append(f"categories not in the topic map: {unknown}")
    duplicated = frame.filter(pl.col("question_id").is_duplicated())["question_id"].unique()
    if duplicated.len():
        problems.append(f"duplicate question_id(s): {sorted(duplicated.to_list())}")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return frame.select(REQUIRED_QUESTION_COLUMNS)
