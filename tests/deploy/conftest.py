"""Fixtures of the deploy tests: a tiny AASIST-L checkpoint (threshold 0.25, calibration a=2, b=-0.5), its ONNX export."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_inference import CROP, SR, make_model_file, write_wav  # noqa: F401  (re-exported for the tests)

CALIBRATION = {"a": 2.0, "b": -0.5}
THRESHOLD = 0.25


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    return make_model_file(tmp_path_factory.mktemp("ckpt") / "model.pt", threshold=THRESHOLD, calibration=CALIBRATION)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_ckpt, tmp_path_factory) -> Path:
    pytest.importorskip("onnx")
    from dpda.deploy.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(tiny_ckpt, out)
    return out
