"""Every shipped configuration in configs/ parses and validates."""

from __future__ import annotations

import pytest

from dpda.config import load_config
from dpda.train.config import RunConfig, validate
from tests.conftest import REPO_ROOT

# grid*.yaml files list the cells of a benchmark grid (bench/minibench.py), augment.yaml is an augmentation chain
CONFIGS = sorted(p for p in (REPO_ROOT / "configs").glob("**/*.yaml")
                 if not p.name.startswith("grid") and p.name != "augment.yaml")


def test_configs_exist():
    assert len(CONFIGS) >= 6


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates(path):
    cfg = validate(load_config(RunConfig, path))
    assert cfg.data.train is not None


def test_the_example_chain_of_dpda_augment_help_builds_and_runs(tmp_path):
    """Issue 11 item 15: `dpda augment --help` names configs/augment.yaml; it exists and works as shown."""
    import numpy as np
    import soundfile as sf

    from dpda.augment.chain import load_chain
    from dpda.cli.augment import EPILOG
    from dpda.cli.main import main

    assert "--chain configs/augment.yaml" in EPILOG
    chain = load_chain(REPO_ROOT / "configs" / "augment.yaml")
    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    steps = set()
    for seed in range(12):
        y, trace = chain.apply(x, np.random.default_rng(seed))
        assert y.shape == x.shape and np.isfinite(y).all()
        steps.update(s["step"] for s in trace)
    assert {"rawboost", "codec"} <= steps
    sf.write(tmp_path / "in.wav", x, 16000)
    argv = ["augment", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"), "--chain", str(REPO_ROOT / "configs" / "augment.yaml"),
            "--seed", "7"]
    assert main(argv) == 0 and (tmp_path / "out.wav").is_file()
