"""``--model RUN_DIR`` finds what training actually writes: model.pt, else the latest checkpoint of a stopped run."""

from __future__ import annotations

import pytest

from dpda.inference import CheckpointError, Scorer, resolve_model_path
from dpda.train.trainer import SimulatedCrash, Trainer
from tests.train.test_trainer import config, write_corpus


def test_a_stopped_run_is_scored_from_its_last_checkpoint(tmp_path):
    corpus = write_corpus(tmp_path / "train", 6, 0), write_corpus(tmp_path / "dev", 4, 1)
    run = tmp_path / "run"
    with pytest.raises(SimulatedCrash):  # stopped before the end: no model.pt yet
        Trainer(config(corpus, epochs=1), run, progress=False, log=lambda m: None, checkpoint_every=1,
                stop_after_steps=2).fit()
    assert not (run / "model.pt").exists()
    assert resolve_model_path(run) == run / "checkpoints" / "last.pt"
    assert Scorer.from_checkpoint(run).info["path"] == str(run / "checkpoints" / "last.pt")
    (run / "checkpoints" / "last.pt").unlink()
    if (run / "checkpoints" / "last.prev.pt").exists():
        assert resolve_model_path(run) == run / "checkpoints" / "last.prev.pt"
        (run / "checkpoints" / "last.prev.pt").unlink()
    with pytest.raises(CheckpointError, match="no model.pt nor checkpoints/last.pt"):
        resolve_model_path(run)
