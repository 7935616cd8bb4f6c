"""``dpda score`` and ``dpda detect`` end to end with a tiny model and audio written here.

The commands that score run with ``--device`` set to each device of :data:`tests.devices.DEVICES`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from dpda.cli import detect, score
from dpda.data import load_manifest
from dpda.errors import DpdaError
from dpda.evaluation import read_scores
from dpda.metrics import compute_eer
from tests.devices import on_devices
from tests.test_inference import make_corpus, make_model_file, write_wav


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpda")
    sub = p.add_subparsers(dest="command")
    score.register(sub)
    detect.register(sub)
    return p


def cli(argv) -> int:
    args = parser().parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    make_model_file(run / "model.pt", threshold=0.05, calibration={"a": 1.5, "b": 0.25})
    return run


@on_devices
def test_score_with_evaluate(run_dir, tmp_path, capsys, device):
    protocol = make_corpus(tmp_path / "c", n=6)
    out = tmp_path / "scores" / "s.txt"
    rc = cli(["score", "--model", run_dir, "--protocol", protocol, "--format", "generic", "--out", out,
              "--workers", "0", "--device", device, "--batch-size", "4", "--evaluate", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    key = load_manifest("generic", protocol)
    scores = read_scores(out)
    assert list(scores) == key.ids
    eer = 100 * compute_eer([scores[u.utt_id] for u in key if u.label == "bonafide"],
                            [scores[u.utt_id] for u in key if u.label == "spoof"])[0]
    assert "scored 6 of 6 utterances" in text
    assert f"EER:      {eer:.3f} %" in text and "trials:   3 bona fide, 3 spoof" in text


@on_devices
def test_score_with_bad_file_reports_and_exits_1(run_dir, tmp_path, capsys, device):
    protocol = make_corpus(tmp_path / "c", n=4, bad=(2,))
    out = tmp_path / "s.txt"
    rc = cli(["score", "--model", run_dir / "model.pt", "--protocol", protocol, "--format", "generic", "--out", out,
              "--workers", "0", "--device", device, "--evaluate", "--mode", "full"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "scored 3 of 4" in captured.out
    assert "dpda evaluate' will refuse" in captured.err and "evaluation skipped" in captured.err
    assert Path(str(out) + ".errors").read_text().startswith("audio/utt02.wav\t")


def test_score_refuses_evaluate_without_labels(run_dir, tmp_path):
    write_wav(tmp_path / "folder" / "x.wav", 3000, seed=0)
    with pytest.raises(DpdaError, match="labelled key"):
        cli(["score", "--model", run_dir, "--protocol", tmp_path / "folder", "--format", "generic",
             "--out", tmp_path / "s.txt", "--workers", "0", "--evaluate"])


@on_devices
def test_detect_json_with_a_bad_file(run_dir, tmp_path, capsys, device):
    files = [write_wav(tmp_path / "a.wav", 9000, seed=1), tmp_path / "broken.wav",
             write_wav(tmp_path / "b.wav", 30000, seed=2, sr=22050)]
    files[1].write_bytes(b"\x00" * 100)
    rc = cli(["detect", "--model", run_dir, *files, "--json", "--device", device])
    assert rc == 1
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == str(run_dir / "model.pt") and report["threshold"] == 0.05
    ok = [r for r in report["results"] if "error" not in r]
    assert [r["file"] for r in report["results"]] == [str(f) for f in files]
    assert set(report["results"][1]) == {"file", "error"} and "decode" in report["results"][1]["error"]
    assert len(ok) == 2
    for r in ok:
        assert set(r) == {"file", "score", "probability", "decision", "probability_disagrees", "warnings"}
        assert 0.0 < r["probability"] < 1.0
        assert r["decision"] == ("bonafide" if r["score"] >= 0.05 else "spoof")
        assert r["probability_disagrees"] == ((r["probability"] >= 0.5) != (r["decision"] == "bonafide"))
        assert r["warnings"] == []
    assert report["decision_rule"] == "bonafide when score >= 0.05, else spoof (threshold: checkpoint (dev EER))"


@on_devices
def test_detect_table_uncalibrated_and_threshold_override(tmp_path, capsys, device):
    ckpt = make_model_file(tmp_path / "m.pt", threshold=None, calibration=None)
    wav = write_wav(tmp_path / "a.wav", 5000, seed=1)
    with pytest.raises(DpdaError, match="--threshold"):
        cli(["detect", "--model", ckpt, wav, "--device", device])
    assert cli(["detect", "--model", ckpt, wav, "--threshold", "-1000.0", "--mode", "fixed", "--device", device]) == 0
    out = capsys.readouterr().out
    assert "uncalibrated" in out and "bonafide" in out and "--threshold" in out


def test_unusable_device_is_refused_before_any_work(run_dir, tmp_path, monkeypatch):
    wav = write_wav(tmp_path / "a.wav", 5000, seed=1)
    protocol = make_corpus(tmp_path / "c", n=2)
    out = tmp_path / "s.txt"
    score_argv = ["score", "--model", run_dir, "--protocol", protocol, "--format", "generic", "--out", out,
                  "--workers", "0", "--no-progress"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DpdaError, match="no CUDA device is available"):
        cli(["detect", "--model", run_dir, wav, "--device", "cuda"])
    with pytest.raises(DpdaError, match="no CUDA device is available"):
        cli([*score_argv, "--device", "cuda"])
    with pytest.raises(DpdaError, match="not a device name"):
        cli(["detect", "--model", run_dir, wav, "--device", "gpu"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DpdaError, match=r"'cuda:3' requested but only 1 GPU"):
        cli([*score_argv, "--device", "cuda:3"])
    assert not out.exists() and not (tmp_path / "s.txt.partial").exists()


def test_help_texts(capsys):
    for command in ("score", "detect"):
        with pytest.raises(SystemExit) as e:
            parser().parse_args([command, "--help"])
        assert e.value.code == 0
        assert "examples:" in capsys.readouterr().out
