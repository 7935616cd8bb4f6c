"""``dpda train`` end to end on a tiny corpus written by the test: run files, resume equivalence, fallbacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dpda.config import from_dict
from dpda.train.checkpoint import load_checkpoint, load_model
from dpda.train.config import RunConfig, validate
from dpda.train.trainer import SimulatedCrash, Trainer

TINY_AASIST = {"filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]], "gat_dims": [8, 8]}


def write_corpus(root: Path, n: int, seed: int) -> Path:
    """n short clips, half 'bona fide' (noisy harmonic), half 'spoof' (buzzier), generic CSV."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rows = ["path,label"]
    t = np.arange(6000) / 16000
    for i in range(n):
        f0 = rng.uniform(100, 220)
        bona = i % 2 == 0
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 8))
        x = x * (1 + 0.3 * np.sin(2 * np.pi * 3 * t)) + (0.05 if bona else 0.005) * rng.standard_normal(len(t))
        x = 0.3 * x / np.abs(x).max()
        sf.write(root / "wav" / f"u{i}.wav", x.astype(np.float32), 16000)
        rows.append(f"wav/u{i}.wav,{'bonafide' if bona else 'spoof'}")
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    return root / "list.csv"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    return write_corpus(base / "train", 12, 0), write_corpus(base / "dev", 6, 1)


def config(corpus, mode="dpda", **train):
    train_csv, dev_csv = corpus
    data = {
        "name": "tiny", "seed": 7, "device": "cpu",
        "model": {"name": "aasist-l", "config": TINY_AASIST},
        "data": {"format": "generic", "train": {"protocol": str(train_csv)}, "dev": {"protocol": str(dev_csv)},
                 "crop_samples": 4000, "batch_size": 2, "eval_batch_size": 4, "num_workers": 0},
        "augment": {"where": "workers", "rawboost_algo": 3},
        "train": {"mode": mode, "epochs": 2, "optimizer": {"name": "adam", "lr": 1e-3}, "top_k": 2, "log_every": 1,
                  "patience": 0, **train},
    }
    return validate(from_dict(RunConfig, data))


def test_full_run_writes_a_usable_run_directory(corpus, tmp_path):
    run = tmp_path / "run"
    summary = Trainer(config(corpus), run, progress=False, log=lambda m: None).fit()
    for name in ("config.yaml", "env.json", "metrics.jsonl", "model.pt", "summary.json", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    steps = [r for r in records if r["type"] == "step"]
    assert len(epochs) == 2 and len(steps) == 2 * 6
    assert {"dev_loss", "dev_eer", "conflict_rate", "mean_cos", "train_loss_orig", "train_loss_aug"} <= set(epochs[0])
    assert {"cos", "conflict", "norm_orig", "norm_aug", "loss_orig", "loss_aug", "lr"} <= set(steps[0])
    assert set(summary["plots"]) >= {"loss", "conflict_rate", "cos_hist", "dev_eer", "grad_norms"}
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    model, info = load_model(run)
    assert info["threshold"] is not None and set(info["calibration"]) == {"a", "b"}
    final = summary["final_model"]
    assert final["policy"] == "better" and set(final["candidates"]) == {"average", "best"}
    assert info["averaged_epochs"] == final["epochs"] and info["final_model"] == final["chosen"]
    assert len(final["candidates"]["average"]["epochs"]) == 2
    with torch.no_grad():
        assert model(torch.randn(2, 4000)).shape == (2, 2)


@pytest.mark.parametrize("mode", ["dpda", "single"])
def test_resume_after_a_crash_ends_with_the_same_weights(corpus, tmp_path, mode):
    ref_dir, crash_dir = tmp_path / "ref", tmp_path / "crash"
    Trainer(config(corpus, mode), ref_dir, progress=False, log=lambda m: None, checkpoint_every=2).fit()
    with pytest.raises(SimulatedCrash):
        Trainer(config(corpus, mode), crash_dir, progress=False, log=lambda m: None, checkpoint_every=2,
                stop_after_steps=9).fit()  # killed mid-epoch 2, after the step-8 checkpoint
    state = load_checkpoint(crash_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["batch"], state["global_step"]) == (1, 2, 8)
    Trainer(config(corpus, mode), crash_dir, resume=True, progress=False, log=lambda m: None, checkpoint_every=2).fit()
    a = load_checkpoint(ref_dir / "model.pt")["model_state"]
    b = load_checkpoint(crash_dir / "model.pt")["model_state"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert (ref_dir / "metrics.jsonl").read_text().count("\n") == (crash_dir / "metrics.jsonl").read_text().count("\n")


def test_truncated_last_checkpoint_falls_back_to_the_previous(corpus, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(SimulatedCrash):
        Trainer(config(corpus), run, progress=False, log=lambda m: None, checkpoint_every=2, stop_after_steps=5).fit()
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    messages = []
    Trainer(config(corpus), run, resume=True, progress=False, log=messages.append, checkpoint_every=2).fit()
    assert any("truncated or corrupt" in m and "last.prev.pt" in m for m in messages)
    assert (run / "model.pt").is_file()


def test_early_stopping(corpus, tmp_path):
    cfg = config(corpus, "dual", epochs=6, patience=1)
    cfg.train.optimizer.lr = 0.0  # nothing improves after the first epoch
    summary = Trainer(cfg, tmp_path / "run", progress=False, log=lambda m: None).fit()
    assert summary["stopped_early"] and summary["epochs"] == 2


def test_cli_train_with_device_augmentation_and_resume(corpus, tmp_path, capsys):
    import yaml

    from dpda.cli.main import main

    cfg_path = tmp_path / "cfg.yaml"
    data = {
        "name": "cli", "seed": 3, "device": "cpu", "model": {"name": "aasist-l", "config": TINY_AASIST},
        "data": {"format": "generic", "train": {"protocol": str(corpus[0])}, "dev": {"protocol": str(corpus[1])},
                 "crop_samples": 4000, "batch_size": 3, "num_workers": 0},
        "augment": {"where": "device", "rawboost_algo": 4},
        "train": {"mode": "dpda", "epochs": 1, "optimizer": {"lr": 1e-3}, "aligner": {"name": "gradvac"}},
    }
    cfg_path.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    assert main(["train", str(cfg_path), "--run-dir", str(run), "--set", "train.epochs=2", "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.split("finished:")[-1].split("\n", 1)[1])
    assert summary["epochs"] == 2 and (run / "model.pt").is_file()
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 2 and resolved["augment"]["where"] == "device"
    # a finished run resumes to the same end; a second start in the same directory is refused
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert main(["train", str(cfg_path), "--run-dir", str(run), "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err
