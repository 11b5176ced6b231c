"""One reader for TRL's dataset formats: a field as text messages.

Source: TRL's docs, "Dataset formats and types" (huggingface.co/docs/trl/dataset_formats).
A dataset's *format* is standard (a field is a string) or conversational (a field is a
list of messages, each ``{"role": ..., "content": ...}``); its *type* is told by its
columns (preference: ``prompt``/``chosen``/``rejected``, or only ``chosen``/``rejected``
with an *implicit prompt*: the shared start of the two). A message's content is a string
or, as in TRL's vision datasets, a list of parts ``[{"type": "text", "text": ...},
{"type": "image"}, ...]``. Messages in ShareGPT's ``from``/``value`` shape are read as
``trl.maybe_convert_to_chatml`` reads them.

Used by the ``value-gap`` command (value_gap_cli) and the workflow's loaders: the SFT
formats ``messages`` and ``prompt_completion`` (datasets.py) and the preference loaders
(preference.py), so a file one reads the other reads. Every function is pure; a value
that is in no TRL format raises FormatError, whose message says what the value is instead
by its shape only (its type, a dict's keys), never its text, so callers can count rows by
it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

# Text parts are joined as vLLM's chat parser joins them for a text-only model.
TEXT_PART_SEPARATOR = "\n"
# ShareGPT's speaker names for the chat roles.
ROLE_ALIASES = {"human": "user", "gpt": "assistant"}
# A string that starts like a message list: a list stored as its JSON or Python repr.
SERIALISED_MESSAGES = re.compile(r"""^\s*\[\s*\{\s*["'](role|from|content|type)["']\s*:""")
# TRL's types by the columns that mark them, most specific first.
DATASET_TYPES = (
    ({"prompt", "chosen", "rejected"}, "preference"),
    ({"chosen", "rejected"}, "preference with implicit prompt"),
    ({"prompt", "completions", "labels"}, "stepwise supervision"),
    ({"prompt", "completion", "label"}, "unpaired preference"),
    ({"prompt", "completion"}, "prompt-completion"),
    ({"prompt"}, "prompt-only"),
    ({"messages"}, "language modeling"),
    ({"text"}, "language modeling"),
)


class FormatError(ValueError):
    """A value in no TRL format; the message describes its shape, never its text."""


class Message(NamedTuple):
    """One message with its content as text; ``non_text`` lists the types of the content
    parts that are not text (``image``, ``audio``, ...), which the text leaves out."""

    role: str
    content: str
    non_text: tuple[str, ...] = ()


class Field(NamedTuple):
    """A prompt/chosen/rejected field: a string is one message (``conversational`` False)."""

    messages: tuple[Message, ...]
    conversational: bool


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def _either(mapping: Mapping[str, Any], key: str, alias: str) -> Any:
    """``mapping[key]``, else ``mapping[alias]`` (rows from Arrow hold both, one null)."""
    value = mapping.get(key)
    return mapping.get(alias) if value is None else value


def describe(value: Any) -> str:
    """What a value is, for error messages: "a dict with keys ['text']", "a list of int"."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return f"a dict with keys {sorted(map(str, value))}"
    if isinstance(value, str):
        return "a string"
    if _is_list(value):
        kinds = sorted({type(item).__name__ for item in value})
        return f"a list of {' and '.join(kinds)}" if kinds else "an empty list"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def content_text(content: Any) -> tuple[str, tuple[str, ...]]:
    """A message's content as (text, types of the non-text parts left out).

    A string is the text; None (an assistant turn with only tool calls) is ""; a list of
    parts gives its text parts' ``text`` joined by TEXT_PART_SEPARATOR. Raises FormatError
    for anything else, for parts without a ``type`` and for text parts without text.
    """
    if content is None:
        return "", ()
    if isinstance(content, str):
        return content, ()
    if not _is_list(content):
        raise FormatError(f"content is {describe(content)}, not a string or a list of parts")
    texts, non_text = [], []
    for part in content:
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise FormatError(f"content is {describe(content)}, not parts with a 'type'")
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise FormatError("a text part whose 'text' is not a string")
            texts.append(part["text"])
        else:
            non_text.append(part["type"])
    return TEXT_PART_SEPARATOR.join(texts), tuple(non_text)


def read_message(message: Any) -> Message:
    """A ``{"role", "content"}`` (or ShareGPT ``{"from", "value"}``) mapping as a Message."""
    if not isinstance(message, Mapping):
        raise FormatError(f"a message that is {describe(message)}")
    role = _either(message, "role", "from")
    if not isinstance(role, str):
        raise FormatError(f"a message without a role (keys {sorted(map(str, message))})")
    text, non_text = content_text(_either(message, "content", "value"))
    return Message(ROLE_ALIASES.get(role, role), text, non_text)


def read_field(value: Any, role: str) -> Field | None:
    """A field in either format, or None for a null (or absent) one.

    A string becomes one message of ``role`` (``user`` for a prompt, ``assistant`` for a
    response); a list of mappings is a conversation. Raises FormatError for other values
    (a dict, a list of strings, a number) and for a string that holds a serialised message
    list (``'[{"role": ...'``), which would otherwise be judged as its JSON text.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if SERIALISED_MESSAGES.match(value):
            raise FormatError("a string holding a serialised message list, not a list")
        return Field((Message(role, value),), conversational=False)
    if _is_list(value):
        if value and not all(isinstance(item, Mapping) for item in value):
            raise FormatError(f"{describe(value)}, not a string or a message list")
        return Field(tuple(read_message(item) for item in value), conversational=True)
    raise FormatError(f"{describe(value)}, not a string or a message list")


def prompt_message(field: Field) -> Message | None:
    """The message a prompt is asked by: its first user turn (else its first message)."""
    users = [m for m in field.messages if m.role == "user"]
    return (users or list(field.messages) or [None])[0]


def response_message(field: Field) -> Message | None:
    """The message a response is judged by: its last one."""
    return field.messages[-1] if field.messages else None


def shared_prefix_length(chosen: Sequence, rejected: Sequence) -> int:
    """Length of the implicit prompt of two sequences (strings or message tuples), as in
    ``trl.data_utils.extract_prompt``: their common prefix, less a final space, and never
    all of the shorter one. (Unlike TRL, a difference at the first item gives 0.)"""
    shortest = min(len(chosen), len(rejected))
    for index in range(shortest):
        if chosen[index] != rejected[index]:
            return index - 1 if index > 0 and chosen[index - 1] == " " else index
    return max(shortest - 1, 0)


def split_implicit_prompt(chosen: Field, rejected: Field) -> tuple[Field, Field, Field]:
    """(prompt, chosen, rejected) from a pair whose prompt is implicit (TRL's "preference
    with implicit prompt"): the prompt is the shared start, of the message lists or of the
    strings. The prompt is empty when nothing is shared. Raises FormatError when one field
    is a message list and the other a string."""
    if chosen.conversational != rejected.conversational:
        raise FormatError("chosen and rejected are not both strings or both message lists")
    if chosen.conversational:
        cut = shared_prefix_length(chosen.messages, rejected.messages)
        return (Field(chosen.messages[:cut], True), Field(chosen.messages[cut:], True),
                Field(rejected.messages[cut:], True))
    (good,), (bad,) = chosen.messages, rejected.messages
    cut = shared_prefix_length(good.content, bad.content)
    return (Field((Message("user", good.content[:cut]),), False),
            Field((good._replace(content=good.content[cut:]),), False),
            Field((bad._replace(content=bad.content[cut:]),), False))


def text_messages(value: Any, role: str = "assistant") -> list[dict[str, str]]:
    """A field as ``[{"role", "content"}]`` with string content, for training a text
    model: raises FormatError when the field is null or has non-text parts to lose."""
    field = read_field(value, role)
    if field is None:
        raise FormatError("a null field")
    return field_text_messages(field)


def field_text_messages(field: Field) -> list[dict[str, str]]:
    """A read field (from read_field or split_implicit_prompt) as ``[{"role", "content"}]``
    with string content: raises FormatError when it has non-text parts to lose."""
    lost = sorted({kind for message in field.messages for kind in message.non_text})
    if lost:
        raise FormatError(f"non-text content ({', '.join(lost)})")
    return [{"role": m.role, "content": m.content} for m in field.messages]


def conversation_text_messages(value: Any) -> list[dict[str, str]]:
    """A conversational field (TRL's ``messages``) as text messages: raises FormatError
    when it is a string or anything but a message list, or has non-text parts to lose."""
    field = read_field(value, "user")
    if field is None:
        raise FormatError("a null field")
    if not field.conversational:
        raise FormatError("a string, not a message list")
    return field_text_messages(field)


def dataset_type(columns: Sequence[str]) -> str | None:
    """TRL's type of a dataset with these columns ("preference", "prompt-completion", ...),
    or None when its columns match none."""
    names = set(columns)
    return next((kind for marks, kind in DATASET_TYPES if marks <= names), None)

