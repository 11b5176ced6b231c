"""Judge prompts are text files with named fields: {question}, {response} and {topic} for
answers, {conversation} and {topic} for dataset items."""

from __future__ import annotations

from pathlib import Path

REQUIRED_FIELDS = ("question", "response", "topic")
CONVERSATION_FIELDS = ("conversation", "topic")


def load_template(path: str | Path, fields: tuple[str, ...] = REQUIRED_FIELDS) -> str:
    """Read a prompt template and check it names every field the judge fills in."""
    text = Path(path).read_text(encoding="utf-8")
    missing = [field for field in fields if "{" + field + "}" not in text]
    if missing:
        raise ValueError(f"judge prompt {path} lacks the field(s) {missing}")
    return text


def render(template: str, question: str, response: str, topic: str) -> str:
    # format_map only parses braces in the template, so braces inside responses are safe.
    return template.format_map({"question": question, "response": response, "topic": topic})
