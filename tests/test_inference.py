"""Scorer, resumable score_manifest and detect_files with a tiny model on audio written here.

The scoring tests run on every device of :data:`tests.devices.DEVICES` (the CPU, and CUDA when a GPU
is visible); the batch scoring also runs under :func:`tests.devices.implicit_tensors_on_meta`, which
fails on any tensor created without an explicit device.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf
import torch

from dpda.audio import load_audio, pad_or_crop, sliding_windows
from dpda.data import load_manifest
from dpda.inference import (
    Scorer,
    ScoringError,
    decision_threshold,
    detect_files,
    resolve_device,
    score_manifest,
)
from dpda.metrics.calibration import calibrated_probability
from dpda.models import build_model
from dpda.train.checkpoint import inference_payload, load_model, save_checkpoint
from tests.devices import assert_on, implicit_tensors_on_meta, on_devices

TINY = {"filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]], "gat_dims": [8, 8]}
SR = 16000
CROP = 4000


def score_atol(device: str) -> float:
    """How closely scores of one model on one device agree across batch compositions.

    float32 rounding on the CPU (scores of the tiny model are about 0.45); on CUDA, cuDNN's TF32
    convolutions (on by default) may take another algorithm for another batch size, and TF32 keeps
    only 10 mantissa bits of each product's inputs (relative error ~5e-4 per product).
    """
    return 1e-5 if device == "cpu" else 1e-3


def make_model_file(path: Path, threshold=0.25, calibration=None, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model("aasist-l", **TINY).eval()
    save_checkpoint(path, inference_payload("aasist-l", TINY, model, SR, CROP, threshold=threshold, calibration=calibration))
    return path


def write_wav(path: Path, n: int, seed: int, sr: int = SR) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t) + 0.05 * rng.standard_normal(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
    return path


def make_corpus(root: Path, n: int = 7, bad: tuple = ()) -> Path:
    """``root/protocol.csv`` (generic ``path,label``) over ``n`` clips of varied length; ``bad`` indices are empty files."""
    rows = ["path,label"]
    for i in range(n):
        rel = f"audio/utt{i:02d}.wav"
        if i in bad:
            (root / "audio").mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"")
        else:
            write_wav(root / rel, 2500 + 1700 * i, seed=i)
        rows.append(f"{rel},{'bonafide' if i % 2 == 0 else 'spoof'}")
    (root / "protocol.csv").write_text("\n".join(rows) + "\n")
    return root / "protocol.csv"


def read_lines(path: Path):
    return [l.split() for l in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return make_model_file(tmp_path_factory.mktemp("run") / "model.pt", threshold=0.25, calibration={"a": 2.0, "b": -0.5})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return load_manifest("generic", make_corpus(root))


@on_devices
def test_fixed_and_full_modes_on_a_long_file(model_file, tmp_path, device):
    wav = load_audio(write_wav(tmp_path / "long.wav", 13000, seed=3), SR)
    fixed = Scorer.from_checkpoint(model_file, mode="fixed", batch_size=3, device=device)
    full = Scorer.from_checkpoint(model_file, mode="full", batch_size=3, device=device)
    model = fixed.model
    assert_on(device, *model.parameters(), *model.buffers())
    with torch.no_grad():
        first = model(torch.from_numpy(pad_or_crop(wav, CROP))[None].to(device))[0, 1].item()
        windows = torch.from_numpy(sliding_windows(wav, CROP)).to(device)
        assert windows.shape[0] == 4  # 0, 4000, 8000 and one aligned to the end
        mean = model(windows)[:, 1].double().mean().item()
    tol = score_atol(device)
    assert fixed.score_waveforms([wav])[0] == pytest.approx(first, abs=tol)
    assert full.score_waveforms([wav])[0] == pytest.approx(mean, abs=tol)
    assert fixed.forward_windows == 1 and full.forward_windows == 4
    assert abs(first - mean) > 1e-6  # the two modes really differ on a long file
    # a short file is repeat-padded: both modes agree
    short = wav[:1500]
    assert fixed.score_waveforms([short])[0] == pytest.approx(full.score_waveforms([short])[0], abs=tol)


@on_devices
def test_batches_straddle_utterances_without_changing_scores(model_file, tmp_path, device):
    waves = [load_audio(write_wav(tmp_path / f"{i}.wav", 3000 + 2500 * i, seed=i), SR) for i in range(5)]
    one = Scorer.from_checkpoint(model_file, mode="full", batch_size=1, device=device)
    packed = Scorer.from_checkpoint(model_file, mode="full", batch_size=4, device=device)
    expected = np.array([one.score_waveforms([w])[0] for w in waves])
    got = packed.score_waveforms(waves)
    np.testing.assert_allclose(got, expected, atol=score_atol(device))
    n_windows = sum(sliding_windows(w, CROP).shape[0] for w in waves)
    assert packed.forward_windows == n_windows


@on_devices
def test_score_manifest_writes_every_id_in_order(model_file, corpus, tmp_path, device):
    out = tmp_path / "scores.txt"
    summary = score_manifest(corpus, model_file, out, num_workers=0, batch_size=3, device=device, progress=False)
    lines = read_lines(out)
    assert [l[0] for l in lines] == corpus.ids
    assert summary["complete"] and summary["n_scored"] == summary["n_new"] == len(corpus) and summary["n_errors"] == 0
    assert not Path(str(out) + ".partial").exists() and not Path(str(out) + ".errors").exists()
    scorer = Scorer.from_checkpoint(model_file, mode="fixed", device=device)
    expected = scorer.score_waveforms([load_audio(u.path, SR) for u in corpus])
    np.testing.assert_allclose([float(l[1]) for l in lines], expected, atol=score_atol(device))


@on_devices
def test_workers_do_not_change_scores(model_file, corpus, tmp_path, device):
    a, b = tmp_path / "w0.txt", tmp_path / "w2.txt"
    score_manifest(corpus, model_file, a, num_workers=0, batch_size=4, device=device, progress=False)
    score_manifest(corpus, model_file, b, num_workers=2, batch_size=4, device=device, progress=False)
    assert a.read_text() == b.read_text()


class Interrupting(Scorer):
    """Raises KeyboardInterrupt at its ``stop_at``-th forward pass, like Ctrl-C mid-run."""

    stop_at = 3

    def forward(self, batch):
        if self.forward_windows >= (self.stop_at - 1) * self.batch_size:
            raise KeyboardInterrupt
        return super().forward(batch)


@on_devices
def test_interrupted_run_resumes_and_matches_an_uninterrupted_one(model_file, corpus, tmp_path, device):
    ref = tmp_path / "ref.txt"
    score_manifest(corpus, model_file, ref, num_workers=0, batch_size=2, device=device, progress=False)

    out = tmp_path / "scores.txt"
    partial = Path(str(out) + ".partial")
    interrupting = Interrupting.from_checkpoint(model_file, mode="fixed", batch_size=2, device=device)
    with pytest.raises(KeyboardInterrupt):
        score_manifest(corpus, interrupting, out, num_workers=0, progress=False)
    assert not out.exists()
    kept = [l for l in partial.read_text().splitlines() if not l.startswith("#")]
    assert [l.split()[0] for l in kept] == corpus.ids[:4]  # two batches of 2 made it to disk
    # a kill while writing the next line leaves it cut short
    with open(partial, "a") as f:
        f.write(f"{corpus.ids[4]} 0.12")

    resumed = Scorer.from_checkpoint(model_file, mode="fixed", batch_size=2, device=device)
    summary = score_manifest(corpus, resumed, out, num_workers=0, progress=False)
    assert summary["n_resumed"] == 4 and summary["n_new"] == len(corpus) - 4
    assert resumed.forward_windows == len(corpus) - 4  # only the rest (the cut line included) is scored
    assert summary["complete"] and not partial.exists()
    got, want = read_lines(out), read_lines(ref)
    assert [l[0] for l in got] == [l[0] for l in want] == corpus.ids
    np.testing.assert_allclose([float(l[1]) for l in got], [float(l[1]) for l in want], atol=score_atol(device))


def test_partial_from_another_setup_is_refused(model_file, corpus, tmp_path):
    out = tmp_path / "scores.txt"
    partial = Path(str(out) + ".partial")
    partial.write_text("# dpda score partial: model=/elsewhere/model.pt mode=full crop=4000 hop=None sr=16000\n")
    with pytest.raises(ScoringError, match="different scoring setup"):
        score_manifest(corpus, model_file, out, num_workers=0, device="cpu", progress=False)
    partial.write_text("not_in_protocol 0.5\n")
    with pytest.raises(ScoringError, match="not in the protocol"):
        score_manifest(corpus, model_file, out, num_workers=0, device="cpu", progress=False)


@on_devices
def test_bad_audio_is_listed_and_the_rest_scored_then_retried(model_file, tmp_path, device):
    root = tmp_path / "c"
    manifest = load_manifest("generic", make_corpus(root, n=5, bad=(1,)), None)
    (root / "audio" / "utt03.wav").write_bytes(b"RIFF....this is not audio")
    out = tmp_path / "s.txt"
    summary = score_manifest(manifest, model_file, out, num_workers=0, batch_size=2, device=device, progress=False)
    assert summary["n_errors"] == 2 and not summary["complete"]
    assert [l[0] for l in read_lines(out)] == [manifest.ids[i] for i in (0, 2, 4)]
    errors = [l.split("\t") for l in Path(summary["errors_path"]).read_text().splitlines()]
    assert [e[0] for e in errors] == [manifest.ids[1], manifest.ids[3]]
    assert "empty" in errors[0][1] and "decode" in errors[1][1]
    assert Path(summary["partial_path"]).exists()

    # the user fixes the files and runs again: only they are scored, in protocol order
    write_wav(root / "audio" / "utt01.wav", 4000, seed=1)
    write_wav(root / "audio" / "utt03.wav", 4000, seed=3)
    scorer = Scorer.from_checkpoint(model_file, mode="fixed", batch_size=2, device=device)
    summary = score_manifest(manifest, scorer, out, num_workers=0, progress=False)
    assert scorer.forward_windows == 2 and summary["n_resumed"] == 3 and summary["complete"]
    assert [l[0] for l in read_lines(out)] == manifest.ids
    assert summary["errors_path"] is None and not Path(str(out) + ".errors").exists()


@on_devices
def test_detect_files(tmp_path, device):
    cal = {"a": 2.0, "b": -0.5}
    ckpt = make_model_file(tmp_path / "m.pt", threshold=0.1, calibration=cal)
    good = [write_wav(tmp_path / "a.wav", 12000, seed=1), write_wav(tmp_path / "b.flac", 9000, seed=2, sr=8000)]
    bad = tmp_path / "missing.wav"
    report = detect_files([good[0], bad, good[1]], ckpt, device=device)
    assert report["threshold"] == 0.1 and report["threshold_source"] == "checkpoint (dev EER)" and report["calibrated"]
    res = report["results"]
    assert [r["file"] for r in res] == [str(good[0]), str(bad), str(good[1])]
    assert "not found" in res[1]["error"] and "score" not in res[1]
    full = Scorer.from_checkpoint(ckpt, mode="full", device=device)
    for r, path in zip((res[0], res[2]), good):
        assert r["score"] == pytest.approx(full.score_file(path), abs=1e-6 if device == "cpu" else score_atol(device))
        assert r["probability"] == pytest.approx(calibrated_probability(r["score"], 2.0, -0.5))
        assert r["decision"] == ("bonafide" if r["score"] >= 0.1 else "spoof")
    over = detect_files(good, ckpt, threshold=-1e9, device=device)
    assert over["threshold_source"] == "--threshold" and all(r["decision"] == "bonafide" for r in over["results"])


@on_devices
def test_decision_threshold_choices(tmp_path, device):
    assert decision_threshold({"threshold": 0.3}, None) == (0.3, "checkpoint (dev EER)")
    assert decision_threshold({"threshold": 0.3}, 1.0) == (1.0, "--threshold")
    thr, source = decision_threshold({"threshold": None, "calibration": {"a": 2.0, "b": -1.0}})
    assert thr == 0.5 and "calibration" in source and calibrated_probability(thr, 2.0, -1.0) == pytest.approx(0.5)
    with pytest.raises(ScoringError, match="--threshold"):
        decision_threshold({"threshold": None, "calibration": None})
    ckpt = make_model_file(tmp_path / "bare.pt", threshold=None, calibration=None)
    wav = write_wav(tmp_path / "x.wav", 5000, seed=0)
    with pytest.raises(ScoringError, match="no decision threshold"):
        detect_files([wav], ckpt, device=device)
    report = detect_files([wav], ckpt, threshold=0.0, device=device)
    assert report["results"][0]["probability"] is None and not report["calibrated"]
    assert math.isfinite(report["results"][0]["score"])


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "autocast"])
def test_batch_scoring_creates_no_tensor_off_the_model_device(model_file, tmp_path, amp):
    """Scorer's batching, forward and read-out (and detect_files on top) under the meta-default guard."""
    waves = [load_audio(write_wav(tmp_path / f"{i}.wav", 3000 + 4000 * i, seed=i), SR) for i in range(3)]
    files = [write_wav(tmp_path / "d.wav", 9000, seed=4)]
    scorer = Scorer.from_checkpoint(model_file, mode="full", batch_size=3, device="cpu", amp=amp)
    expected = scorer.score_waveforms(waves)
    expected_detect = detect_files(files, scorer)
    with implicit_tensors_on_meta():
        got = scorer.score_waveforms(waves)
        got_detect = detect_files(files, scorer)
    np.testing.assert_array_equal(got, expected)
    assert got_detect == expected_detect


@contextlib.contextmanager
def storages_saved_as(location: str) -> Iterator[None]:
    """While active, ``torch.save`` records CPU storages as living on ``location`` (e.g. ``"cuda:0"``),
    exactly what a checkpoint written from GPU tensors records; loading is left to torch."""

    def tagger(storage) -> "str | None":
        return location if storage.device.type == "cpu" else None

    def no_deserializer(storage, where):  # torch's own deserializers restore the storages
        return None

    registry = getattr(torch.serialization, "_package_registry", None)  # no public way to unregister a package
    if not isinstance(registry, list):
        pytest.skip("this torch has no torch.serialization._package_registry list to restore")
    before = list(registry)
    torch.serialization.register_package(0, tagger, no_deserializer)
    try:
        yield
    finally:
        registry[:] = before


def test_checkpoint_written_from_cuda_tensors_loads_on_the_cpu(model_file, tmp_path):
    cpu_model, info = load_model(model_file, device="cpu")
    payload = inference_payload("aasist-l", TINY, cpu_model, SR, CROP, threshold=info["threshold"])
    cuda_file = tmp_path / "from_cuda.pt"
    with storages_saved_as("cuda:0"):
        save_checkpoint(cuda_file, payload)
    if not torch.cuda.is_available():  # the file really asks for CUDA storages: a plain load fails here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(cuda_file, weights_only=True)
    model, _ = load_model(cuda_file, device="cpu")
    assert_on("cpu", *model.parameters(), *model.buffers())
    wav = load_audio(write_wav(tmp_path / "x.wav", 7000, seed=2), SR)
    got = Scorer(model, crop_samples=CROP, mode="full").score_waveforms([wav])
    want = Scorer(cpu_model, crop_samples=CROP, mode="full").score_waveforms([wav])
    np.testing.assert_array_equal(got, want)


def test_resolve_device_names_and_clear_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ScoringError, match="no CUDA device is available"):
            resolve_device(name)
    with pytest.raises(ScoringError, match="not a device name"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ScoringError, match=r"only 2 GPU\(s\) are visible"):
        resolve_device("cuda:2")
