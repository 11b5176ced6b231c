"""Secrets never leave the process: a config holding a credential (a URL with a password,
a key in a key-naming field) stops the workflow at start without echoing it, in its output
or in any file the failing run leaves. (A finished run with a key in the environment is
scanned in tests/workflow/test_own_sft_data.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.workflow import REPO, copy_repo, snakemake

PASSWORD = "Pl4nted-Passw0rd-7731"
KEY = "sk-planted0123456789abcdef"


# What a run writes in its working directory.
RUN_OUTPUTS = ("results", "logs", ".snakemake", "benchmarks")


def files_holding(root: Path, secret: str) -> list[str]:
    """Every file a run wrote under ``root`` (its RUN_OUTPUTS) holding ``secret``."""
    found = []
    for path in (p for folder in RUN_OUTPUTS for p in (root / folder).rglob("*")):
        if path.is_file() and not path.is_symlink():
            try:
                if secret.encode() in path.read_bytes():
                    found.append(str(path.relative_to(root)))
            except OSError:
                continue
    return found


@pytest.mark.parametrize(("where", "value", "secret", "message"), [
    (("judge", "base_url"), f"http://user:{PASSWORD}@127.0.0.1:9/v1", PASSWORD,
     "judge.base_url: credentials in a URL are refused"),
    (("judge", "api_key_env"), KEY, KEY,
     "judge.api_key_env: not an environment variable's name"),
    # a schema error quotes the value it rejects: redacted
    (("generation", "temperature"), f"https://{PASSWORD}@example.org", PASSWORD,
     "generation.temperature: credentials in a URL are refused"),
])
def test_a_credential_in_the_config_stops_the_run_unechoed(tmp_path, where, value, secret,
                                                           message):
    repo = copy_repo(tmp_path / "repo")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    section, key = where
    config[section][key] = value
    path = tmp_path / "secret.yaml"  # outside the copy: the user's own file holds it
    path.write_text(yaml.safe_dump(config))
    result = snakemake("--cores", "1", "--configfile", str(path), cwd=repo, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr
    assert files_holding(repo, secret) == []
