"""Every shipped configuration in configs/ parses and validates."""

from __future__ import annotations

import pytest

from dpda.config import load_config
from dpda.train.config import RunConfig, validate
from tests.conftest import REPO_ROOT

# grid*.yaml files list the cells of a benchmark grid (bench/minibench.py), not a run config
CONFIGS = sorted(p for p in (REPO_ROOT / "configs").glob("**/*.yaml") if not p.name.startswith("grid"))


def test_configs_exist():
    assert len(CONFIGS) >= 6


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates(path):
    cfg = validate(load_config(RunConfig, path))
    assert cfg.data.train is not None
