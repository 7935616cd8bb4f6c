"""The torch-free decision rules (dpda.deploy.rules) give dpda.detection's results and messages, branch by branch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpda import detection
from dpda.deploy import rules
from dpda.errors import DpdaError

INFOS = [
    ({"threshold": 0.3, "calibration": {"a": 2.0, "b": 1.0}}, None),
    ({"threshold": 0.3}, 1.5),
    ({"threshold": None, "calibration": {"a": 2.0, "b": 1.0}}, None),
    ({"calibration": {"a": 0.5, "b": -3.0}, "path": "m.pt"}, None),
]
BAD = [
    ({"threshold": 0.3}, math.nan),
    ({"threshold": math.inf, "path": "m.pt"}, None),
    ({"calibration": {"a": -1.0, "b": 0.0}, "path": "m.pt"}, None),
    ({}, None),
]


@pytest.mark.parametrize("info, threshold", INFOS)
def test_thresholds_match_detection(info, threshold):
    assert rules.decision_threshold(info, threshold) == detection.decision_threshold(info, threshold)


@pytest.mark.parametrize("info, threshold", BAD)
def test_refusals_match_detection(info, threshold):
    with pytest.raises(DpdaError) as ours:
        rules.decision_threshold(info, threshold)
    with pytest.raises(DpdaError) as theirs:
        detection.decision_threshold(info, threshold)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("wave", [
    np.zeros(100, np.float32),
    np.full(8000, 3e-5, np.float32),
    0.3 * np.sin(np.arange(20000, dtype=np.float32)),
    0.3 * np.sin(np.arange(500, dtype=np.float32)),
    np.zeros(0, np.float32),
])
def test_warnings_match_detection(wave):
    assert rules.audio_warnings(wave, 16000, 4000) == detection.audio_warnings(wave, 16000, 4000)
    assert rules.SILENCE_PEAK == detection.SILENCE_PEAK


def test_decide_matches_detect_files_fields():
    from dpda.metrics.calibration import calibrated_probability

    got = rules.decide(0.1, 0.0, {"a": 1.0, "b": -0.5})
    assert got["decision"] == "bonafide" and got["probability"] == pytest.approx(calibrated_probability(0.1, 1.0, -0.5))
    assert got["probability_disagrees"] is True  # P < 0.5 but bonafide
    assert rules.decide(-1.0, 0.0, None) == {"score": -1.0, "probability": None, "decision": "spoof",
                                              "probability_disagrees": False}
