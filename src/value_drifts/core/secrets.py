"""Secrets never leave the process: credentials are refused in the config and redacted
from any text the workflow writes about it.

A key reaches a client only through the environment variable a config names
(``api_key_env``); the config itself, and so every settings file, judge fingerprint,
log, the run configuration, Snakemake's metadata and the report, holds the variable's
name, never its value. A URL with credentials (``http://user:password@host/v1``) is
refused, since its password would be written wherever the URL is; so is a value in a
key-naming field (``*_env``) that cannot be a variable's name, which is most likely the key
itself. Neither is ever echoed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# scheme://user:password@host or scheme://token@host
URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s'\"]+)@")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Key shapes of common providers (OpenAI sk-..., Hugging Face hf_..., bearer tokens).
KEY_SHAPES = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,})|(?<=Bearer )[^\s'\"]+")
REDACTED = "***"


def redact(text: str) -> str:
    """``text`` with URL credentials and provider-shaped keys replaced by ``***``."""
    text = URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return KEY_SHAPES.sub(REDACTED, text)


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
            yield path, str(key), value
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}.{i}" if path else str(i))


def credential_problems(config: Mapping[str, Any]) -> list[str]:
    """Every place ``config`` holds a credential: a URL with user info, or a ``*_env``
    field whose value cannot name an environment variable. Messages name the key, never
    the value."""
    problems = []
    for parent, key, value in _walk(config):
        where = f"{parent}.{key}" if parent else key
        if isinstance(value, str) and URL_CREDENTIALS.search(value):
            problems.append(
                f"{where}: credentials in a URL are refused (the value is not shown); give "
                "the URL without them and the key in the environment variable named by "
                "api_key_env")
        elif key.endswith("_env") and isinstance(value, str) and not ENV_NAME.match(value):
            problems.append(
                f"{where}: not an environment variable's name (the value is not shown): "
                "name the variable that holds the key, never the key itself")
    return problems
