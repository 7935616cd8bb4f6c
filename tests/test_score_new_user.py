"""``dpda score`` where a new user trips: a wrong audio root, worker processes, truncated files.

Each test runs the command through :func:`dpda.cli.main.main` (exit code, stdout, stderr) with the
tiny model and the small corpus of :mod:`tests.test_inference`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

import dpda.inference as inference
import dpda.inference.manifest
from dpda.cli.main import main
from dpda.data import load_manifest
from dpda.evaluation import read_scores
from dpda.workers import WorkerInit
from tests.test_inference import make_corpus, make_model_file, write_wav


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_model_file(tmp_path_factory.mktemp("run") / "model.pt", threshold=0.1)


def score_argv(model, protocol, out, *extra):
    return ["score", "--model", str(model), "--protocol", str(protocol), "--format", "generic",
            "--out", str(out), "--no-progress", *map(str, extra)]


# -- 4. a wrong --root fails before any work ---------------------------------------------------


def test_wrong_root_fails_early_naming_the_root_and_missing_files(model, tmp_path, capsys):
    protocol = make_corpus(tmp_path / "c", n=25)
    wrong = tmp_path / "not_the_audio"
    wrong.mkdir()
    out = tmp_path / "scores" / "s.txt"
    rc = main(score_argv(model, protocol, out, "--root", wrong, "--workers", "0"))
    err = capsys.readouterr().err
    assert rc == 2
    assert "none of the first 20" in err and str(wrong) in err
    assert str(wrong / "audio" / "utt00.wav") in err and str(wrong / "audio" / "utt02.wav") in err
    assert str(wrong / "audio" / "utt19.wav") not in err  # a few examples, not all of them
    assert "--root" in err and err.count("\n") < 15
    for path in (out, Path(f"{out}.partial"), Path(f"{out}.errors")):
        assert not path.exists(), path


def test_a_few_missing_files_among_present_ones_stay_per_file_errors(model, tmp_path, capsys):
    protocol = make_corpus(tmp_path / "c", n=6)
    for i in (0, 1, 4):
        (tmp_path / "c" / "audio" / f"utt{i:02d}.wav").unlink()
    out = tmp_path / "s.txt"
    rc = main(score_argv(model, protocol, out, "--workers", "0"))
    assert rc == 1
    assert list(read_scores(out)) == ["audio/utt02.wav", "audio/utt03.wav", "audio/utt05.wav"]
    errors = Path(f"{out}.errors").read_text().splitlines()
    assert [e.split("\t")[0] for e in errors] == ["audio/utt00.wav", "audio/utt01.wav", "audio/utt04.wav"]
    assert all("not found" in e for e in errors)
    assert "scored 3 of 6" in capsys.readouterr().out


# -- 5. DataLoader workers die with their parent -----------------------------------------------


def dataloader_calls(monkeypatch) -> list:
    """The keyword arguments of every DataLoader built from now on (torch.utils.data.DataLoader is spied on)."""
    built = []
    real = torch.utils.data.DataLoader

    class Spy(real):
        def __init__(self, *args, **kwargs):
            built.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch.utils.data, "DataLoader", Spy)
    return built


def test_scoring_dataloader_workers_die_with_their_parent(model, tmp_path, monkeypatch):
    built = dataloader_calls(monkeypatch)
    manifest = load_manifest("generic", make_corpus(tmp_path / "c", n=3))
    summary = inference.score_manifest(manifest, model, tmp_path / "s.txt", num_workers=0, device="cpu", progress=False)
    assert summary["complete"]
    assert len(built) == 1 and isinstance(built[0].get("worker_init_fn"), WorkerInit)
    assert built[0]["worker_init_fn"].parent_pid == os.getpid()


# -- 6. the default worker count fits the machine ----------------------------------------------


def test_default_workers_raise_no_worker_count_warning(model, tmp_path, monkeypatch, capsys):
    # a machine with 2 usable CPUs, as seen by dpda.workers and by PyTorch's own check alike
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    protocol = make_corpus(tmp_path / "c", n=4)
    out = tmp_path / "s.txt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(score_argv(model, protocol, out))  # no --workers
    assert rc == 0 and len(read_scores(out)) == 4
    about_workers = [str(w.message) for w in caught if "worker" in str(w.message)]
    assert about_workers == []
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    assert "usable CPUs" in " ".join(capsys.readouterr().out.split())


def test_score_manifest_default_workers_follow_the_machine(model, tmp_path, monkeypatch):
    monkeypatch.setattr(dpda.inference.manifest, "default_workers", lambda: 0)
    built = dataloader_calls(monkeypatch)
    manifest = load_manifest("generic", make_corpus(tmp_path / "c", n=2))
    inference.score_manifest(manifest, model, tmp_path / "s.txt", device="cpu", progress=False)
    assert built[0]["num_workers"] == 0


# -- 7. a truncated file is a per-file error of dpda score -------------------------------------


def test_truncated_file_is_a_per_file_error(model, tmp_path, capsys):
    protocol = make_corpus(tmp_path / "c", n=4)
    victim = tmp_path / "c" / "audio" / "utt03.wav"
    write_wav(victim, 60000, seed=3)
    victim.write_bytes(victim.read_bytes()[:2000])
    out = tmp_path / "s.txt"
    rc = main(score_argv(model, protocol, out, "--workers", "0"))
    assert rc == 1
    assert list(read_scores(out)) == ["audio/utt00.wav", "audio/utt01.wav", "audio/utt02.wav"]
    (line,) = Path(f"{out}.errors").read_text().splitlines()
    assert line.startswith("audio/utt03.wav\t") and "truncated: header says 60000 samples, file holds 978" in line
