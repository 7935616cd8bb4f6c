"""SIGINT / SIGTERM stop ``dpda train`` after the current step with ``last.pt`` written at that step.

The signals are real (``signal.raise_signal`` inside the step, a validation or
the data loader); a resumed run must end with the weights of an uninterrupted
one, bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Iterator

import pytest
import torch
import yaml

from dpda.train import trainer as trainer_module
from dpda.train.checkpoint import load_checkpoint
from dpda.train.interrupt import StopRequest, TrainingInterrupted
from dpda.train.trainer import Trainer
from tests.train.test_trainer import TINY_AASIST, config, corpus, write_corpus  # noqa: F401  (corpus is a fixture)

CPU = torch.device("cpu")


def signal_at_step(trainer: Trainer, step: int, sig: int, times: int = 1) -> None:
    """Make ``trainer`` receive ``sig`` (``times`` times) during its ``step``-th gradient step (1-based)."""
    calls = {"n": 0}
    compute = trainer.compute_gradients

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            for _ in range(times):
                signal.raise_signal(sig)
        return compute(*args, **kwargs)

    trainer.compute_gradients = wrapped


def assert_same_weights(a_dir, b_dir) -> None:
    a = load_checkpoint(a_dir / "model.pt")["model_state"]
    b = load_checkpoint(b_dir / "model.pt")["model_state"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert (a_dir / "metrics.jsonl").read_text().count("\n") == (b_dir / "metrics.jsonl").read_text().count("\n")


def position(run) -> tuple:
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    return state["epoch"], state["batch"], state["global_step"]


# ---------------------------------------------------------------------------- StopRequest alone
def test_the_first_signal_sets_the_flag_the_second_stops_at_once_and_handlers_come_back():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with StopRequest(CPU, announce=False) as stop:
        assert not stop.requested()
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested() and stop.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_outside_the_main_thread_no_handler_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body():
        with StopRequest(CPU, announce=False) as stop:
            seen.append(stop._previous)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [{}] and signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------------------- the loop
@pytest.mark.parametrize("step, sig, expected", [
    (3, signal.SIGTERM, (0, 3, 3)),  # mid epoch 1 (6 steps per epoch), no periodic checkpoint there
    (6, signal.SIGINT, (0, 6, 6)),   # the last step of epoch 1: resumes into its validation
])
def test_a_signal_in_a_step_checkpoints_that_step_and_the_resume_is_exact(corpus, tmp_path, step, sig, expected):
    ref, run = tmp_path / "ref", tmp_path / "run"
    Trainer(config(corpus), ref, progress=False, log=lambda m: None).fit()
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    messages = []
    trainer = Trainer(config(corpus), run, progress=False, log=messages.append)
    signal_at_step(trainer, step, sig)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert position(run) == expected and not (run / "model.pt").exists()
    assert any(f"checkpoint written after step {step}" in m and f"dpda train --resume {run}" in m for m in messages)
    Trainer(config(corpus), run, resume=True, progress=False, log=lambda m: None).fit()
    assert_same_weights(ref, run)


def test_a_signal_during_validation_stops_after_the_epoch_checkpoint(corpus, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    Trainer(config(corpus, "dual"), ref, progress=False, log=lambda m: None).fit()
    trainer = Trainer(config(corpus, "dual"), run, progress=False, log=lambda m: None)
    validate = trainer.validate

    def validate_with_signal(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return validate(*args, **kwargs)

    trainer.validate = validate_with_signal
    with pytest.raises(TrainingInterrupted, match=r"after step 6 \(end of epoch 1\)"):
        trainer.fit()
    assert position(run) == (1, 0, 6)
    Trainer(config(corpus, "dual"), run, resume=True, progress=False, log=lambda m: None).fit()
    assert_same_weights(ref, run)


def test_a_second_signal_stops_at_once_without_a_new_checkpoint(corpus, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(config(corpus), run, progress=False, log=lambda m: None)
    signal_at_step(trainer, 2, signal.SIGINT, times=2)
    with pytest.raises(KeyboardInterrupt) as caught:
        trainer.fit()
    assert not isinstance(caught.value, TrainingInterrupted)
    assert not (run / "checkpoints" / "last.pt").exists()  # nothing written since the start


def test_a_loader_worker_stopped_by_the_same_ctrl_c_still_checkpoints_the_last_step(corpus, tmp_path, monkeypatch):
    real_loader = trainer_module.train_loader

    def loader_whose_worker_dies(*args, **kwargs) -> Iterator:
        for i, b in enumerate(real_loader(*args, **kwargs)):
            if i == 4:  # the terminal's Ctrl-C reaches the worker and the main process while it waits
                signal.raise_signal(signal.SIGINT)
                raise RuntimeError("DataLoader worker (pid 4242) exited unexpectedly")
            yield b

    monkeypatch.setattr(trainer_module, "train_loader", loader_whose_worker_dies)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        Trainer(config(corpus), run, progress=False, log=lambda m: None).fit()
    assert position(run) == (0, 4, 4)


def test_a_loader_error_without_a_signal_is_not_taken_for_an_interruption(corpus, tmp_path, monkeypatch):
    def broken_loader(*args, **kwargs) -> Iterator:
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed")
        yield  # pragma: no cover

    monkeypatch.setattr(trainer_module, "train_loader", broken_loader)
    with pytest.raises(RuntimeError, match="Killed"):
        Trainer(config(corpus), tmp_path / "run", progress=False, log=lambda m: None).fit()


# ---------------------------------------------------------------------------- the command line
def test_dpda_train_exits_130_at_sigterm_and_resume_finishes(corpus, tmp_path, capsys, monkeypatch):
    from dpda.cli.main import main

    compute = Trainer.compute_gradients
    calls = {"n": 0}

    def compute_with_sigterm(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            signal.raise_signal(signal.SIGTERM)
        return compute(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "compute_gradients", compute_with_sigterm)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "name": "cli", "seed": 3, "device": "cpu", "model": {"name": "aasist-l", "config": TINY_AASIST},
        "data": {"format": "generic", "train": {"protocol": str(corpus[0])}, "dev": {"protocol": str(corpus[1])},
                 "crop_samples": 4000, "batch_size": 3, "num_workers": 0},
        "train": {"mode": "dual", "epochs": 1, "optimizer": {"lr": 1e-3}},
    }))
    run = tmp_path / "run"
    assert main(["train", str(cfg_path), "--run-dir", str(run), "--no-progress"]) == 130
    out = capsys.readouterr()
    assert "SIGTERM: checkpoint written after step 2 (epoch 1, batch 2 of 4)" in out.out + out.err
    assert position(run) == (0, 2, 2)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert (run / "model.pt").is_file()


@pytest.mark.slow
def test_torchrun_ranks_stop_together_when_only_rank_1_gets_sigterm(tmp_path):
    """torchrun, 2 CPU ranks: rank 1 alone gets SIGTERM in step 2; both stop after it, rank 0 writes last.pt."""
    train_csv = write_corpus(tmp_path / "train", 12, 0)
    dev_csv = write_corpus(tmp_path / "dev", 6, 1)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({
        "name": "ddp", "seed": 5, "device": "cpu", "model": {"name": "aasist-l", "config": TINY_AASIST},
        "data": {"format": "generic", "train": {"protocol": str(train_csv)}, "dev": {"protocol": str(dev_csv)},
                 "crop_samples": 4000, "batch_size": 2, "num_workers": 0},
        "augment": {"where": "workers", "rawboost_algo": 3},
        "train": {"mode": "dpda", "epochs": 1, "optimizer": {"lr": 1e-3}, "log_every": 1},
    }))
    (tmp_path / "rank1_sigterm.py").write_text(
        "import os, signal, sys\n"
        "from dpda.cli.main import main\n"
        "from dpda.train.trainer import Trainer\n"
        "compute, calls = Trainer.compute_gradients, [0]\n"
        "def wrapped(self, *a, **k):\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 2 and os.environ['RANK'] == '1':\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return compute(self, *a, **k)\n"
        "Trainer.compute_gradients = wrapped\n"
        "sys.exit(main(sys.argv[1:]))\n")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", "29523"]
    proc = subprocess.run(launch + [str(tmp_path / "rank1_sigterm.py"), "train", str(tmp_path / "cfg.yaml"),
                                    "--run-dir", str(run), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode != 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tail = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "checkpoint written after step 2 (epoch 1, batch 2 of 3)" in proc.stdout, tail
    assert position(run) == (0, 2, 2)
    proc = subprocess.run(launch + ["-m", "dpda", "train", "--resume", str(run), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is True
