"""``dpda detect`` where a new user trips: truncated, too short and silent files, the decision rule,
non-finite thresholds and progress on long files.

Each test runs the command through :func:`dpda.cli.main.main` (exit code, stdout, stderr) with the
tiny model of :mod:`tests.test_inference` (window: CROP = 4000 samples, 0.25 s at 16 kHz).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dpda.cli.main import main
from dpda.inference import Progress, Scorer
from dpda.metrics.calibration import calibrated_probability
from tests.test_inference import CROP, SR, make_model_file, write_wav


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    return make_model_file(run / "model.pt", threshold=0.1, calibration={"a": 2.0, "b": -0.5})


def truncated_wav(path: Path) -> Path:
    """A 16-bit WAV whose header says 125000 samples (7.8 s), of which 2000 bytes are present."""
    write_wav(path, 125000, seed=5)
    path.write_bytes(path.read_bytes()[:2000])
    return path


def silent_wav(path: Path, n: int = 8000) -> Path:
    sf.write(path, np.zeros(n, np.float32), SR, subtype="PCM_16")
    return path


# -- 7. truncated (error), too short and silent (warnings) -------------------------------------


def test_truncated_short_and_silent_files_in_json(model, tmp_path, capsys):
    good = write_wav(tmp_path / "good.wav", 9000, seed=1)
    cut = truncated_wav(tmp_path / "cut.wav")
    short = write_wav(tmp_path / "short.wav", 1600, seed=2)  # 0.1 s < the 0.25 s window
    silent = silent_wav(tmp_path / "silent.wav")
    rc = main(["detect", "--model", str(model), "--json", "--device", "cpu", "--no-progress",
               *map(str, (good, cut, short, silent))])
    report = json.loads(capsys.readouterr().out)
    assert rc == 1  # the truncated file failed; the others were scored
    res = {Path(r["file"]).name: r for r in report["results"]}
    assert list(res) == ["good.wav", "cut.wav", "short.wav", "silent.wav"]
    assert "score" not in res["cut.wav"]
    assert "truncated: header says 125000 samples, file holds 978" in res["cut.wav"]["error"]
    assert res["good.wav"]["warnings"] == []
    (w,) = res["short.wav"]["warnings"]
    assert "too short" in w and "0.100 s" in w and "0.250 s" in w
    (w,) = res["silent.wav"]["warnings"]
    assert "silent" in w
    for name in ("good.wav", "short.wav", "silent.wav"):
        assert isinstance(res[name]["score"], float) and res[name]["decision"] in ("bonafide", "spoof")


def test_warnings_and_truncation_in_the_table(model, tmp_path, capsys):
    cut = truncated_wav(tmp_path / "cut.wav")
    short = write_wav(tmp_path / "short.wav", 1600, seed=2)
    silent = silent_wav(tmp_path / "silent.wav", n=SR)
    rc = main(["detect", "--model", str(model), "--device", "cpu", "--no-progress", str(cut), str(short), str(silent)])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"{cut}" in out and "truncated: header says 125000 samples" in out
    assert f"warning: {short}: too short" in out
    assert f"warning: {silent}: silent" in out


# -- 8. non-finite thresholds; one decision rule, stated, and disagreement shown ---------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_threshold_is_refused(model, tmp_path, capsys, value):
    wav = write_wav(tmp_path / "a.wav", 5000, seed=1)
    assert main(["detect", "--model", str(model), "--device", "cpu", f"--threshold={value}", str(wav)]) == 2
    captured = capsys.readouterr()
    assert "--threshold" in captured.err and "finite" in captured.err and captured.out == ""


def test_decision_rule_is_stated_and_disagreement_flagged(tmp_path, capsys):
    # calibration that puts every score of the tiny model far below P = 0.5
    ckpt = make_model_file(tmp_path / "m.pt", threshold=0.1, calibration={"a": 1.0, "b": -10.0})
    wav = write_wav(tmp_path / "a.wav", 9000, seed=1)
    score = Scorer.from_checkpoint(ckpt, mode="full").score_file(wav)
    prob = calibrated_probability(score, 1.0, -10.0)
    assert prob < 0.5

    # --threshold far below the score: the threshold decides "bonafide", P(bona fide) says otherwise
    assert main(["detect", "--model", str(ckpt), "--device", "cpu", "--threshold", "-1000", "--json", str(wav)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "score >= -1000" in report["decision_rule"] and "--threshold" in report["decision_rule"]
    (r,) = report["results"]
    assert r["decision"] == "bonafide" and r["probability"] == pytest.approx(prob)
    assert r["probability_disagrees"] is True

    assert main(["detect", "--model", str(ckpt), "--device", "cpu", "--threshold", "-1000", str(wav)]) == 0
    out = capsys.readouterr().out
    assert "decision:" in out and "score >= -1000" in out
    (row,) = [line for line in out.splitlines() if line.startswith(str(wav))]
    assert row.rstrip().endswith("bonafide *")
    assert "* P(bona fide) and the decision disagree" in out

    # the checkpoint's threshold: a "spoof" that P agrees with is not flagged
    assert main(["detect", "--model", str(ckpt), "--device", "cpu", "--threshold", "1000", "--json", str(wav)]) == 0
    (r,) = json.loads(capsys.readouterr().out)["results"]
    assert r["decision"] == "spoof" and r["probability_disagrees"] is False


def test_help_states_the_decision_rule(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "P(bona fide) does not decide" in text and "disagree" in text and "--no-progress" in text


# -- 9. progress on long files, --no-progress --------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_tty_for_a_multi_window_file(model, tmp_path, capsys, monkeypatch):
    long = write_wav(tmp_path / "long.wav", 3 * CROP, seed=3)  # 3 windows, one batch of 1 each
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(["detect", "--model", str(model), "--device", "cpu", "--batch-size", "1", "--json", str(long)]) == 0
    shown = tty.getvalue()
    assert "scored 3/3 windows" in shown and "long.wav" in shown and shown.endswith("\n")
    json.loads(capsys.readouterr().out)  # stdout holds the report only

    tty.seek(0)
    tty.truncate()
    assert main(["detect", "--model", str(model), "--device", "cpu", "--batch-size", "1", "--no-progress",
                 "--json", str(long)]) == 0
    assert tty.getvalue() == ""


def test_no_progress_off_a_tty(model, tmp_path, capsys):
    long = write_wav(tmp_path / "long.wav", 3 * CROP, seed=3)
    assert main(["detect", "--model", str(model), "--device", "cpu", "--batch-size", "1", str(long)]) == 0
    assert "windows" not in capsys.readouterr().err  # stderr is no terminal here


def test_progress_counts_windows_through_the_hook(model):
    wave = np.random.default_rng(0).standard_normal(10 * CROP).astype(np.float32) * 0.1
    scorer = Scorer.from_checkpoint(model, mode="full", batch_size=4)
    seen = []
    list(scorer.score_windows([("x", scorer.windows(wave))], on_batch=seen.append))
    assert seen == [4, 4, 2]
    tty = FakeTTY()
    bar = Progress(10, stream=tty, every=0.0, label="x.wav: scored", items="windows", unit="windows")
    for n in seen:
        bar.update(n)
    bar.close()
    assert "x.wav: scored 4/10 windows" in tty.getvalue() and "10/10 windows" in tty.getvalue()
