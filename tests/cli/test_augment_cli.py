"""``dpda augment``: parser built with the module's ``register``; files written to tmp_path."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List

import numpy as np
import pytest
import soundfile as sf

from dpda.cli import augment as augment_cli
from dpda.errors import DpdaError

SR = 16000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpda")
    sub = p.add_subparsers(dest="command")
    augment_cli.register(sub)
    return p


def run(argv: List[str]) -> int:
    args = parser().parse_args(["augment", *argv])
    return args.func(args)


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    t = np.arange(SR) / 22050
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    x += 0.01 * np.random.default_rng(0).standard_normal(t.size)
    path = tmp_path / "clean.flac"
    sf.write(str(path), x.astype(np.float32), 22050)  # resampled to --sr on load
    return path


@pytest.fixture
def chain_yaml(tmp_path: Path) -> Path:
    cfg = tmp_path / "chain.yaml"
    cfg.write_text(
        "series:\n"
        "  - bandlimit: {low: 300, high: 3400}\n"
        "  - choice:\n"
        "      - codec: {name: mp3, bitrate: [16, 32]}\n"
        "      - codec: {name: gsm}\n"
    )
    return cfg


def test_writes_wav_and_png(tmp_path: Path, clean: Path, chain_yaml: Path, capsys: pytest.CaptureFixture) -> None:
    out, png = tmp_path / "out" / "aug.wav", tmp_path / "spec.png"
    assert run([str(clean), str(out), "--chain", str(chain_yaml), "--seed", "3", "--spectrogram", str(png)]) == 0
    info = sf.info(str(out))
    assert (info.samplerate, info.subtype, info.channels) == (SR, "PCM_16", 1)
    x_len = int(round(SR * SR / 22050))
    assert abs(info.frames - x_len) <= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "seed 3" in text and "bandlimit:" in text and "codec:" in text
    assert not list(tmp_path.glob("**/.*.tmp*"))  # atomic writes leave no temporaries

    # same seed -> same file; another seed is printed when none is given
    out2 = tmp_path / "aug2.wav"
    run([str(clean), str(out2), "--chain", str(chain_yaml), "--seed", "3"])
    assert np.array_equal(sf.read(str(out))[0], sf.read(str(out2))[0])
    run([str(clean), str(tmp_path / "aug3.flac"), "--chain", str(chain_yaml)])
    assert "seed " in capsys.readouterr().out


def test_rawboost_shortcut(tmp_path: Path, clean: Path) -> None:
    try:
        import dpda.augment.rawboost.reference  # noqa: F401
    except ImportError as e:  # pragma: no cover
        pytest.skip(f"dpda.augment.rawboost.reference not importable yet ({e})")
    out = tmp_path / "rb.wav"
    assert run([str(clean), str(out), "--rawboost", "4", "--seed", "0"]) == 0
    y, sr = sf.read(str(out))
    assert sr == SR and np.max(np.abs(y)) <= 1.0


def test_usage_and_errors(tmp_path: Path, clean: Path, chain_yaml: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["augment", "--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    assert "--chain" in help_text and "--rawboost" in help_text and "--spectrogram" in help_text and "series:" in help_text
    with pytest.raises(SystemExit):  # neither --chain nor --rawboost
        parser().parse_args(["augment", str(clean), "out.wav"])
    with pytest.raises(SystemExit):  # both
        parser().parse_args(["augment", str(clean), "out.wav", "--chain", "c.yaml", "--rawboost", "4"])
    with pytest.raises(DpdaError, match="unsupported output extension '.xyz'"):
        run([str(clean), str(tmp_path / "o.xyz"), "--chain", str(chain_yaml)])
    with pytest.raises(DpdaError, match="file not found"):
        run([str(tmp_path / "missing.wav"), str(tmp_path / "o.wav"), "--chain", str(chain_yaml)])
    bad = tmp_path / "bad.yaml"
    bad.write_text("series:\n  - codec: {name: mp3, rate: 3}\n")
    with pytest.raises(DpdaError, match=r"chain\.series\[0\]\.codec: unknown option 'rate'"):
        run([str(clean), str(tmp_path / "o.wav"), "--chain", str(bad)])
    assert not (tmp_path / "o.wav").exists()


def test_main_reports_errors_without_traceback(
    tmp_path: Path, clean: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from dpda.cli import main as main_mod

    if "augment" not in main_mod.COMMAND_MODULES:
        monkeypatch.setattr(main_mod, "COMMAND_MODULES", tuple(main_mod.COMMAND_MODULES) + ("augment",))
    bad = tmp_path / "bad.yaml"
    bad.write_text("choice: []\n")
    rc = main_mod.main(["augment", str(clean), str(tmp_path / "o.wav"), "--chain", str(bad)])
    assert rc == 2
    assert "dpda augment: error:" in capsys.readouterr().err
