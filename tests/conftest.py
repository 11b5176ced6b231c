from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.fixture
def paper_config():
    return yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
