"""The model card: training data from the run's config.yaml, provenance, threshold source; window times."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from dpda.deploy.analysis import envelope, window_starts
from dpda.deploy.card import model_card
from dpda.inference import WindowSpec
from dpda.train.checkpoint import load_model


def test_card_of_a_run_directory(tiny_ckpt, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_ckpt, run / "model.pt")
    (run / "config.yaml").write_text("data:\n  format: generic\n  train: {protocol: train.csv, root: audio}\n"
                                     "  crop_samples: 4000\nmodel: {name: aasist-l}\n")
    _, info = load_model(run)
    card = model_card(info)
    assert card["training_data"]["format"] == "generic" and card["training_data"]["train"]["protocol"] == "train.csv"
    assert card["architecture"] == "aasist-l" and card["window_seconds"] == pytest.approx(0.25)
    assert card["threshold_source"] == "checkpoint (dev EER)" and card["provenance"]["file"] == "model.pt"
    assert model_card(info, threshold=1.0)["threshold_source"] == "--threshold"


def test_card_without_threshold_says_why():
    card = model_card({"model_name": "lcnn", "crop_samples": 64600, "sample_rate": 16000})
    assert card["threshold"] is None and "--threshold" in card["threshold_source"]
    assert card["training_data"] is None and card["calibration"] is None


@pytest.mark.parametrize("n, mode, hop", [(100, "full", None), (4000, "full", None), (4001, "full", None),
                                          (13000, "full", None), (13000, "full", 1500), (13000, "fixed", None)])
def test_window_starts_are_those_of_the_scorer(n, mode, hop):
    wave = np.arange(n, dtype=np.float32)
    windows = WindowSpec(4000, mode, hop)(wave)
    starts = window_starts(n, 4000, mode, hop)
    assert len(starts) == windows.shape[0]
    for start, row in zip(starts, windows):
        assert row[0] == start  # each window begins at its start sample (short files: repeat-padded from 0)


def test_envelope():
    env = envelope(np.array([0, 1, -1, 0.5, -0.25, 0.0], np.float32), points=3)
    assert env == {"min": [0.0, -1.0, -0.25], "max": [1.0, 0.5, 0.0]}
