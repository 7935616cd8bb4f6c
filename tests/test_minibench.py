"""The real minibench corpus (when present): protocols validate and audio loads."""

from __future__ import annotations

import numpy as np
import pytest

from dpda.audio import load_audio
from dpda.data import load_manifest
from dpda.data.check import check_corpus

SPLITS = ["train", "dev", "eval", "ood_dev"]


@pytest.mark.parametrize("split", SPLITS)
def test_minibench_protocols_check_clean(minibench_dir, split):
    report = check_corpus("asvspoof2019", minibench_dir / "protocols" / f"minibench.{split}.txt", minibench_dir / "flac" / split)
    assert report.problems == []
    assert len(report.manifest) > 0
    assert set(report.manifest.counts("label")) == {"bonafide", "spoof"}


def test_minibench_audio_loads_as_16k_float32(minibench_dir):
    manifest = load_manifest("asvspoof2019", minibench_dir / "protocols" / "minibench.dev.txt", minibench_dir / "flac" / "dev")
    for utt in list(manifest)[:3] + list(manifest)[-3:]:
        x = load_audio(utt.path)
        assert x.dtype == np.float32 and x.ndim == 1
        assert 0 < x.size <= 4 * 16000
        assert np.abs(x).max() <= 1.0
