"""The synthetic demo corpus (``dpda.data.synthetic``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from dpda.data import load_manifest
from dpda.data.check import check_corpus
from dpda.data.synthetic import ATTACKS, SPLITS, make_synthetic_corpus, synthesize_utterance
from dpda.metrics import compute_eer

SIZES = dict(n_train=40, n_dev=10, n_test=20, n_test_shifted=20)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    info = make_synthetic_corpus(out, seconds=1.0, seed=0, workers=1, **SIZES)
    return out, info


def _rows(csv_path):
    with open(csv_path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_protocols_parse_and_check(corpus):
    out, info = corpus
    assert not info["reused"]
    assert set(info["protocols"]) == set(SPLITS)
    speakers = {}
    for split in SPLITS:
        proto = out / f"{split}.csv"
        assert info["protocols"][split] == str(proto)
        manifest = load_manifest("generic", proto)
        assert len(manifest) == SIZES[f"n_{split}"]
        report = check_corpus("generic", proto, decode=True)
        assert report.ok, report.problems
        assert report.problems == []
        labels = [u.label for u in manifest]
        assert labels.count("bonafide") == labels.count("spoof")
        assert {u.attack for u in manifest if u.label == "spoof"} == set(ATTACKS)
        assert all(u.attack is None for u in manifest if u.label == "bonafide")
        assert all(u.path.parent == out / "audio" / split for u in manifest)
        speakers[split] = {u.speaker for u in manifest}
        header = (out / f"{split}.csv").read_text(encoding="utf-8").splitlines()[0]
        expected = "path,label,speaker,attack,utt_id" + (",condition" if split == "test_shifted" else "")
        assert header == expected
        if split == "test_shifted":
            conditions = {u.conditions["condition"] for u in manifest}
            assert all(c.startswith("tel-") for c in conditions) and len(conditions) > 1
        else:
            assert all(not u.conditions for u in manifest)
        counts = info["counts"][split]
        assert counts["bonafide"] + counts["spoof"] == len(manifest)
    assert not speakers["train"] & speakers["dev"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    meta = json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    assert meta["params"] == info["params"]
    assert "synthetic" in meta["description"]


def test_shifted_split_pairs_with_test(corpus):
    out, _ = corpus
    test = _rows(out / "test.csv")
    shifted = _rows(out / "test_shifted.csv")
    for a, b in zip(test, shifted):
        assert (a["label"], a["speaker"], a["attack"]) == (b["label"], b["speaker"], b["attack"])


def test_audio_files(corpus):
    out, _ = corpus
    for split in SPLITS:
        for row in _rows(out / f"{split}.csv"):
            path = out / row["path"]
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.frames) == (16000, 1, 16000)
            assert info.format == "FLAC" and info.subtype == "PCM_16"
            x, _ = sf.read(str(path), dtype="float32")
            assert x.shape == (16000,)
            assert np.all(np.isfinite(x))
            assert np.max(np.abs(x)) <= 1.0
            assert np.sqrt(np.mean(x**2)) > 1e-3  # not silent


def test_synthesize_utterance_lengths_and_rates():
    for sr in (8000, 22050):
        for label, attack in [("bonafide", None)] + [("spoof", a) for a in ATTACKS]:
            x, cond = synthesize_utterance(3, "test_shifted", 1, label, attack, "S12", seconds=0.5, sample_rate=sr)
            assert x.dtype == np.float32 and x.shape == (int(0.5 * sr),)
            assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0
            assert cond is not None and cond.startswith("tel-")
    with pytest.raises(ValueError):
        synthesize_utterance(0, "train", 0, "spoof", "V9", "S01", seconds=0.5)


def _audio_bytes(out: Path):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "audio").rglob("*.flac"))}


def test_deterministic_and_independent_of_workers(tmp_path):
    small = dict(n_train=4, n_dev=2, n_test=4, n_test_shifted=4, seconds=0.5)
    a = make_synthetic_corpus(tmp_path / "a", seed=5, workers=1, **small)
    make_synthetic_corpus(tmp_path / "b", seed=5, workers=2, **small)
    make_synthetic_corpus(tmp_path / "c", seed=6, workers=1, **small)
    bytes_a, bytes_b, bytes_c = (_audio_bytes(tmp_path / n) for n in "abc")
    assert len(bytes_a) == 14
    assert bytes_a == bytes_b
    for split in SPLITS:
        assert (tmp_path / "a" / f"{split}.csv").read_bytes() == (tmp_path / "b" / f"{split}.csv").read_bytes()
    assert bytes_a.keys() == bytes_c.keys()
    assert all(bytes_a[k] != bytes_c[k] for k in bytes_a)
    assert a["counts"]["train"] == {"bonafide": 2, "spoof": 2, "attacks": {"V1": 1, "V2": 1}}


def test_reuse_and_regenerate(tmp_path):
    small = dict(n_train=4, n_dev=2, n_test=2, n_test_shifted=2, seconds=0.5, workers=1)
    first = make_synthetic_corpus(tmp_path, **small)
    assert not first["reused"]
    files = sorted((tmp_path / "audio").rglob("*.flac")) + [tmp_path / "corpus.json"]
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    again = make_synthetic_corpus(tmp_path, **small)
    assert again["reused"]
    assert again["counts"] == first["counts"] and again["protocols"] == first["protocols"]
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    # a missing file or different parameters -> generated again
    files[0].unlink()
    assert not make_synthetic_corpus(tmp_path, **small)["reused"]
    assert files[0].is_file()
    assert not make_synthetic_corpus(tmp_path, **dict(small, seed=1))["reused"]
    assert json.loads((tmp_path / "corpus.json").read_text())["params"]["seed"] == 1


def test_rejects_bad_parameters(tmp_path):
    with pytest.raises(ValueError):
        make_synthetic_corpus(tmp_path, n_train=-1)
    with pytest.raises(ValueError):
        make_synthetic_corpus(tmp_path, seconds=0.1)


# --------------------------------------------------------------------------- learnability


def _lfcc_stats(x: np.ndarray, sr: int = 16000, n_filters: int = 20) -> np.ndarray:
    """Mean / std / delta-std of 20 linear-band cepstra over the louder frames, and spectral flatness."""
    _, _, z = signal.stft(x, fs=sr, nperseg=512, noverlap=352)
    power = np.abs(z) ** 2 + 1e-10
    edges = np.linspace(0, power.shape[0], n_filters + 1).astype(int)
    bands = np.log(np.stack([power[edges[i] : edges[i + 1]].sum(0) for i in range(n_filters)]) + 1e-10)
    k = np.arange(n_filters)
    dct = np.cos(np.pi / n_filters * (k[None, :] + 0.5) * k[:, None])
    ceps = dct @ bands
    active = bands.max(0) > np.percentile(bands.max(0), 40)
    ceps = ceps[:, active]
    flat = np.log(np.exp(np.mean(np.log(power), 0)) / np.mean(power, 0))[active]
    return np.concatenate([ceps.mean(1), ceps.std(1), np.diff(ceps, axis=1).std(1), [flat.mean(), flat.std()]])


def _logistic_regression(x_train, y_train, x_test, l2=1e-2, steps=1500, lr=0.1):
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-9
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    w, bias = np.zeros(a.shape[1]), 0.0
    for _ in range(steps):
        g = 1.0 / (1.0 + np.exp(-(a @ w + bias))) - y_train
        w -= lr * (a.T @ g / len(g) + l2 * w)
        bias -= lr * g.mean()
    return b @ w + bias


def test_learnable_but_not_by_level(tmp_path):
    make_synthetic_corpus(
        tmp_path, n_train=160, n_dev=0, n_test=80, n_test_shifted=0, seconds=1.0, seed=0, workers=1
    )

    def load(split):
        rows = _rows(tmp_path / f"{split}.csv")
        audio = [sf.read(str(tmp_path / r["path"]), dtype="float32")[0] for r in rows]
        return audio, np.array([r["label"] == "bonafide" for r in rows], dtype=float)

    train_audio, y_train = load("train")
    test_audio, y_test = load("test")
    x_train = np.stack([_lfcc_stats(x) for x in train_audio])
    x_test = np.stack([_lfcc_stats(x) for x in test_audio])
    scores = _logistic_regression(x_train, y_train, x_test)
    eer, _ = compute_eer(scores[y_test == 1], scores[y_test == 0])
    assert eer < 0.40

    rms = np.array([np.sqrt(np.mean(x**2)) for x in test_audio])
    rms_eer, _ = compute_eer(rms[y_test == 1], rms[y_test == 0])
    assert 0.30 <= rms_eer <= 0.70
