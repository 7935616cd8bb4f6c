"""``dpda train`` as a user meets it: bad settings, resume at any point, the final model's choice (issue 11)."""

from __future__ import annotations

import json
from typing import List

import pytest
import torch
import yaml

from dpda.cli.main import main
from dpda.train.checkpoint import load_checkpoint
from dpda.train.trainer import SimulatedCrash, Trainer
from tests.train.test_trainer import TINY_AASIST, config, corpus  # noqa: F401  (corpus is a fixture)


def write_config(corpus, path):  # noqa: F811
    data = {
        "name": "cli", "seed": 2, "device": "cpu", "model": {"name": "aasist-l", "config": TINY_AASIST},
        "data": {"format": "generic", "train": {"protocol": str(corpus[0])}, "dev": {"protocol": str(corpus[1])},
                 "crop_samples": 4000, "batch_size": 3, "num_workers": 0},
        "augment": {"where": "device", "rawboost_algo": 4},
        "train": {"mode": "dpda", "epochs": 2, "optimizer": {"lr": 1e-3}, "top_k": 2, "patience": 0},
    }
    path.write_text(yaml.safe_dump(data))
    return path


BAD_SETTINGS = [
    (["train.aligner.name=foo"], "train.aligner: unknown aligner 'foo'"),
    (["train.aligner.options={beta: 2}"], "train.aligner: bad options for aligner 'pcgrad'"),
    (["model.config.foo=1"], "model.config (aasist-l): "),
    (["data.crop_samples=10"], "data.crop_samples: "),
    (["model.name=lcnn", "model.config={}", "data.crop_samples=1000"], "data.crop_samples: LCNN needs at least 2400"),
    (["train.optimizer.lr=-1"], "train.optimizer.lr: must be >= 0, got -1"),
    (["train.optimizer.betas=[0.9, 1.5]"], "train.optimizer.betas"),
    (["augment.rawboost_params={nBands: 2, foo: 1}"], "augment.rawboost_params"),
    (["model.name=xlsr_aasist", "model.config={ssl_pretrained: /nowhere/xlsr.pt}"], "ssl_pretrained: /nowhere/xlsr.pt not found"),
    (["train.final_model=last"], "train.final_model: expected one of better, average, best"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_SETTINGS, ids=[b[0][-1].split("=")[0] for b in BAD_SETTINGS])
def test_bad_settings_stop_before_the_run_directory_exists(corpus, tmp_path, capsys, overrides, message):  # noqa: F811
    cfg = write_config(corpus, tmp_path / "cfg.yaml")
    run = tmp_path / "run"
    argv = ["train", str(cfg), "--run-dir", str(run), "--no-progress"]
    for o in overrides:
        argv += ["--set", o]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dpda train: error: ") and message in err, err
    assert "Traceback" not in err and not run.exists()


def test_cuda_without_a_gpu_is_a_setting_error(corpus, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = write_config(corpus, tmp_path / "cfg.yaml")
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--set", "device=cuda"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(corpus, tmp_path, capsys):  # noqa: F811
    cfg = config(corpus, "dpda", epochs=1)
    run = tmp_path / "run"
    with pytest.raises(SimulatedCrash):
        Trainer(cfg, run, progress=False, log=lambda m: None, stop_after_steps=2).fit()
    assert not (run / "checkpoints" / "last.pt").exists() and (run / "metrics.jsonl").is_file()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "no checkpoint yet" in out and "starting it from the beginning" in out
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["type"] == "step"] == list(range(1, 7))  # one fresh epoch, no leftovers
    assert (run / "model.pt").is_file()


def test_resume_of_a_finished_run_says_so_and_changes_nothing(corpus, tmp_path, capsys):  # noqa: F811
    cfg = write_config(corpus, tmp_path / "cfg.yaml")
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress", "--set", "train.epochs=1"]) == 0
    before = {p: p.stat().st_mtime_ns for p in (run / "model.pt", run / "summary.json", run / "metrics.jsonl")}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress", "--json"]) == 0
    out = capsys.readouterr().out
    assert "is finished (1 epoch(s)); nothing to resume" in out and "resuming" not in out
    assert json.loads(out[out.index("{"):])["epochs"] == 1
    assert {p: p.stat().st_mtime_ns for p in before} == before


# ---------------------------------------------------------------- item 12: the final model
def _fit_with_dev_losses(cfg, run, final_losses: List[float], monkeypatch):
    """Train for real, but let the final-model candidates (average first, then best) score ``final_losses`` on dev."""
    real = Trainer.validate
    queue = list(final_losses)

    def validate(self, model=None):
        result = real(self, model)
        return result if model is None else (queue.pop(0), *result[1:])

    monkeypatch.setattr(Trainer, "validate", validate)
    messages: List[str] = []
    summary = Trainer(cfg, run, progress=False, log=messages.append).fit()
    return summary, messages, load_checkpoint(run / "model.pt")


@pytest.mark.parametrize(("policy", "losses", "chosen"), [
    ("better", [0.927, 0.564], "best"),     # the average is worse on dev: model.pt is the best epoch
    ("better", [0.500, 0.564], "average"),
    ("average", [0.927], "average"),       # the paper code's habit, whatever dev says
    ("best", [0.927], "best"),
])
def test_final_model_is_the_better_of_average_and_best_unless_told(corpus, tmp_path, monkeypatch, policy, losses,  # noqa: F811
                                                                   chosen):
    cfg = config(corpus, "dual", epochs=3, top_k=2, final_model=policy)
    summary, messages, payload = _fit_with_dev_losses(cfg, tmp_path / "run", losses, monkeypatch)
    final = summary["final_model"]
    assert final["policy"] == policy and final["chosen"] == chosen and payload["final_model"] == chosen
    assert payload["averaged_epochs"] == final["epochs"]
    assert len(final["epochs"]) == (2 if chosen == "average" else 1)
    if chosen == "best":
        assert final["epochs"] == [summary["best_epoch"]]
    if policy == "better":
        assert set(final["candidates"]) == {"average", "best"}
        assert final["candidates"]["average"]["dev_loss"] == losses[0]
        assert any(m.startswith("final model: average of epochs") and f"took the {chosen}" in m for m in messages)
    assert summary["final_dev_loss"] == losses[0 if chosen == "average" or policy != "better" else 1]
    assert any("model.pt is the " + ("average" if chosen == "average" else "best epoch") in m for m in messages)


def test_deprecated_average_top_k_still_chooses(corpus):  # noqa: F811
    assert config(corpus, "dual", average_top_k=False).train.final_model == "best"
    assert config(corpus, "dual", average_top_k=True).train.final_model == "average"
