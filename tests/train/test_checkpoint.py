"""Atomic, safe checkpoints and loading models for inference."""

from __future__ import annotations

import os

import pytest
import torch

from dpda.models import build_model
from dpda.train.checkpoint import (
    CheckpointError,
    inference_payload,
    load_checkpoint,
    load_model,
    resolve_model_path,
    save_checkpoint,
)

TINY = {"filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]], "gat_dims": [8, 8]}


def test_round_trip_and_load_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("aasist-l", **TINY).eval()
    save_checkpoint(tmp_path / "run" / "model.pt", inference_payload("aasist-l", TINY, model, 16000, 16000, threshold=0.5,
                                                                     calibration={"a": 1.0, "b": 0.0}))
    loaded, info = load_model(tmp_path / "run")
    x = torch.randn(2, 16000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert info["threshold"] == 0.5 and info["sample_rate"] == 16000 and "model_state" not in info
    assert resolve_model_path(tmp_path / "run") == tmp_path / "run" / "model.pt"


def test_truncated_and_foreign_files_give_clear_errors(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"x": torch.arange(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(path)
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        torch.save({"format": 1, "obj": os.getcwd}, f)  # a function reference: refused by weights_only
    with pytest.raises(CheckpointError, match="cannot be loaded safely|truncated or corrupt"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no model.pt"):
        resolve_model_path(tmp_path)


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
