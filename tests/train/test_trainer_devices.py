"""The trainer on any device: one GPU per rank, steps that create nothing off the device, resume elsewhere."""

from __future__ import annotations

import pytest
import torch
import yaml

from dpda.devices import DeviceError, place_from_env, place_rank
from dpda.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from dpda.train.data import EpochSampler, train_loader
from dpda.train.trainer import SimulatedCrash, Trainer
from tests.devices import DEVICES, assert_on, implicit_tensors_on_meta, on_devices
from tests.train.test_trainer import TINY_AASIST, config, corpus  # noqa: F401  (corpus is a fixture)

QUIET = {"progress": False, "log": lambda m: None}


# ---------------------------------------------------------------- one GPU per rank
@pytest.mark.parametrize(("device", "gpus", "expected"), [
    ("auto", 0, ("cpu", "gloo")),
    ("auto", 2, ("cuda:0", "nccl")),
    ("cpu", 4, ("cpu", "gloo")),
    ("cuda", 1, ("cuda:0", "nccl")),
    ("cuda:1", 2, ("cuda:1", "nccl")),
])
def test_single_process_placement(device, gpus, expected):
    p = place_rank(device, cuda_count=gpus)
    assert (str(p.device), p.backend) == expected


def test_each_rank_takes_its_own_gpu():
    for rank in range(4):
        p = place_rank("auto", world_size=8, local_rank=rank, local_world_size=4, cuda_count=4)
        assert p.device == torch.device("cuda", rank) and p.backend == "nccl"
    # CPU ranks on a GPU machine stay on the CPU and use gloo
    assert place_rank("cpu", world_size=2, local_rank=1, cuda_count=1).backend == "gloo"


@pytest.mark.parametrize(("device", "kwargs", "message"), [
    ("auto", {"world_size": 2, "local_rank": 1, "cuda_count": 1}, "2 ranks on this node but only 1 visible GPU"),
    ("cuda", {"world_size": 3, "local_rank": 0, "cuda_count": 2}, "--nproc_per_node 2"),
    ("cuda:0", {"world_size": 2, "cuda_count": 2}, "all 2 ranks on one GPU"),
    ("cuda", {"cuda_count": 0}, "no CUDA device is available"),
    ("cuda:3", {"cuda_count": 2}, "only 2 GPU(s) are visible"),
    ("gpu0", {"cuda_count": 1}, "not a device name"),
])
def test_impossible_placements_say_why(device, kwargs, message):
    with pytest.raises(DeviceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        place_rank(device, **kwargs)


def test_placement_reads_torchrun_environment():
    env = {"WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert place_from_env("cpu", env).device == torch.device("cpu")
    assert place_from_env("cpu", {}).backend == "gloo"


def test_cli_stops_before_any_work_when_ranks_outnumber_gpus(corpus, tmp_path, monkeypatch, capsys):  # noqa: F811
    from dpda.cli.main import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**_cli_config(corpus), "device": "auto"}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for k, v in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "dpda train: error: 2 ranks on this node but only 1 visible GPU" in err
    assert not run.exists()


def _cli_config(corpus):  # noqa: F811
    return {
        "name": "dev", "seed": 1, "device": "cpu", "model": {"name": "aasist-l", "config": TINY_AASIST},
        "data": {"format": "generic", "train": {"protocol": str(corpus[0])}, "dev": {"protocol": str(corpus[1])},
                 "crop_samples": 4000, "batch_size": 3, "num_workers": 0},
        "augment": {"where": "device", "rawboost_algo": 4},
        "train": {"mode": "dpda", "epochs": 1, "optimizer": {"lr": 1e-3}},
    }


@pytest.mark.slow
def test_resume_may_change_the_device_but_not_the_recipe(corpus, tmp_path, capsys):  # noqa: F811
    from dpda.cli.main import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_cli_config(corpus)))
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress"]) == 0
    assert main(["train", "--resume", str(run), "--set", "device=cpu", "--set", "data.num_workers=0", "--no-progress"]) == 0
    assert main(["train", "--resume", str(run), "--set", "train.epochs=5"]) == 2
    assert "only device, data.num_workers may change" in capsys.readouterr().err


# ---------------------------------------------------------------- steps
#: (mode, engine mode, amp, where the augmented path is made)
STEP_CASES = [("single", "joint", "none", "device"), ("dual", "joint", "none", "device"),
              ("dpda", "joint", "none", "device"), ("dpda", "split", "none", "device"),
              ("dpda", "joint", "bf16", "device"), ("single", "joint", "bf16", "device"),
              ("single", "joint", "fp16", "device"), ("dpda", "split", "fp16", "device"),
              ("dpda", "joint", "none", "workers")]


def _first_batch(trainer: Trainer):
    sampler = EpochSampler(len(trainer.train_set), trainer.cfg.seed, 0, trainer.cfg.data.batch_size)
    x, x_aug, y = next(iter(train_loader(trainer.train_set, sampler, 0)))
    dev = trainer.device
    return x.to(dev), (x_aug.to(dev) if x_aug.numel() else None), y.to(dev)


@pytest.mark.parametrize(("mode", "engine_mode", "amp", "where"), STEP_CASES, ids=["-".join(c) for c in STEP_CASES])
def test_training_step_creates_no_tensor_off_the_device(corpus, tmp_path, mode, engine_mode, amp, where):  # noqa: F811
    """Augmentation + gradients + clipping with CPU tensors while implicit ones land on 'meta' (tests/devices.py)."""
    cfg = config(corpus, mode, engine_mode=engine_mode, amp=amp, grad_clip=1.0)
    cfg.augment.where = where
    trainer = Trainer(cfg, tmp_path / "run", **QUIET)
    x, x_aug, y = _first_batch(trainer)
    if trainer.step.loss_scaler is not None:
        trainer.step.loss_scaler.scale = 2.0**8  # fp16: start low rather than back off from 2**16 over skipped steps
    with implicit_tensors_on_meta():
        for _ in range(8):
            out = trainer.compute_gradients(x, x_aug, y)
            if not out.skipped:
                break
    assert not out.skipped
    grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    trainer.optimizer.step()  # torch's optimizers keep CPU step counters on purpose: outside the guard


@on_devices
@pytest.mark.parametrize("mode", ["single", "dpda"])
def test_training_on_device_gives_a_portable_model(corpus, tmp_path, device, mode):  # noqa: F811
    cfg = config(corpus, mode, epochs=1)
    cfg.device = device
    cfg.augment.where = "device"
    run = tmp_path / "run"
    Trainer(cfg, run, **QUIET).fit()
    for name in ("model.pt", "checkpoints/last.pt"):
        state = load_checkpoint(run / name)
        assert all(t.device.type == "cpu" for t in state["model_state"].values()), name
    model, _ = load_model(run, device="cpu")
    with torch.no_grad():
        assert model(torch.randn(2, 4000, device="cpu")).shape == (2, 2)


def _crash_then_resume(corpus, tmp_path, first: str, second: str, messages):  # noqa: F811
    run = tmp_path / f"{first}-{second}"
    cfg = config(corpus, "dpda", aligner={"name": "gradvac"})
    cfg.device, cfg.augment.where = first, "device"
    with pytest.raises(SimulatedCrash):
        Trainer(cfg, run, checkpoint_every=2, stop_after_steps=5, **QUIET).fit()
    cfg.device = second
    Trainer(cfg, run, resume=True, checkpoint_every=2, progress=False, log=messages.append).fit()
    return run


@pytest.mark.parametrize(("first", "second"), [(a, b) for a in DEVICES for b in DEVICES if a != b] or [("cpu", "cpu")])
def test_resume_on_another_device(corpus, tmp_path, first, second):  # noqa: F811
    """With a GPU: a CUDA run resumed on the CPU and back. Without: the CPU leg of the same path (see below)."""
    messages = []
    run = _crash_then_resume(corpus, tmp_path, first, second, messages)
    assert (run / "model.pt").is_file()
    assert any(f"on {second}" in m for m in messages if m.startswith("resuming"))
    if first != second:
        assert any("augmentation RNG comes from" in m for m in messages)


def test_resume_from_a_checkpoint_written_on_a_gpu(corpus, tmp_path):  # noqa: F811
    """A checkpoint whose augmentation RNG is CUDA's Philox state and which holds two GPUs' RNG states."""
    run = tmp_path / "run"
    cfg = config(corpus, "dpda")
    cfg.augment.where = "device"
    with pytest.raises(SimulatedCrash):
        Trainer(cfg, run, checkpoint_every=2, stop_after_steps=3, **QUIET).fit()
    last = run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    philox = torch.zeros(16, dtype=torch.uint8, device="cpu")  # CUDA generator state: seed and offset, 8 bytes each
    state["rng"].update(augment=philox, augment_device="cuda", cuda=[philox.clone(), philox.clone()])
    save_checkpoint(last, state)
    messages = []
    Trainer(cfg, run, resume=True, checkpoint_every=2, progress=False, log=messages.append).fit()
    assert any("augmentation RNG comes from cuda and cannot continue on cpu" in m for m in messages)
    assert (run / "model.pt").is_file()


@on_devices
def test_same_device_resume_stays_exact(corpus, tmp_path, device):  # noqa: F811
    """Resume on the device that saved continues the augmentation stream exactly (the reseed is only for a change)."""
    cfg = config(corpus, "dpda")
    cfg.device, cfg.augment.where = device, "device"
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    Trainer(cfg, ref, checkpoint_every=2, **QUIET).fit()
    with pytest.raises(SimulatedCrash):
        Trainer(cfg, crash, checkpoint_every=2, stop_after_steps=7, **QUIET).fit()
    messages = []
    Trainer(cfg, crash, resume=True, checkpoint_every=2, progress=False, log=messages.append).fit()
    assert not any("reseeded" in m for m in messages)
    a, b = load_checkpoint(ref / "model.pt")["model_state"], load_checkpoint(crash / "model.pt")["model_state"]
    for k in a:
        assert_on("cpu", a[k], b[k])
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
