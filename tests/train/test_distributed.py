"""Two CPU processes (gloo) give the same update as one process on the global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dpda.train import DualPathEngine
from dpda.train.ranks import join_process_group, leave_process_group
from tests.train.test_engine import TinyNet

STEPS = 3


def global_batches():
    g = torch.Generator().manual_seed(123)
    out = []
    for _ in range(STEPS):
        x = torch.randn(8, 200, generator=g)
        out.append((x, x + 0.5 * torch.randn(8, 200, generator=g), torch.tensor([0, 1] * 4)))
    return out


def train(model, batches, rank=0, world=1, one_pass=None):
    engine = DualPathEngine(model, "gradvac", one_pass=one_pass)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    per = 8 // world
    for x, x_aug, y in batches:
        sl = slice(rank * per, (rank + 1) * per)
        engine.step(x[sl], x_aug[sl], y[sl], opt)
    return engine


def worker(rank: int, world: int, init_file: str, out_file: str, one_pass=None) -> None:
    join_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)  # different initial weights: the engine broadcasts rank 0's
        model = TinyNet(batchnorm=False)
        if rank == 0:
            torch.save(model.state_dict(), out_file + ".init")
        dist.barrier()
        engine = train(model, global_batches(), rank, world, one_pass)
        assert engine.one_pass_fallback is None
        if rank == 0:
            torch.save({"model": model.state_dict(), "rho": engine.aligner.state_dict()["rho"]}, out_file)
    except BaseException:
        leave_process_group(barrier=False)
        raise
    # a group that outlives this (held by something) makes 1 exit in 40-150 abort: SIGABRT while exiting
    assert leave_process_group(), f"rank {rank}: the process group outlived destroy_process_group"


@pytest.mark.slow
@pytest.mark.parametrize("one_pass", [None, True], ids=["default", "one_pass"])
def test_two_process_gloo_equals_single_process(tmp_path, one_pass):
    """Also with joint mode's one pass over copies on each rank (its rows are all-reduced like the others)."""
    out_file = str(tmp_path / "ddp.pt")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(worker, args=(2, str(tmp_path / "init"), out_file, one_pass), nprocs=2, join=True)
    result = torch.load(out_file, weights_only=True)
    model = TinyNet(batchnorm=False)
    model.load_state_dict(torch.load(out_file + ".init", weights_only=True))
    engine = train(model, global_batches())
    for name, value in model.state_dict().items():
        torch.testing.assert_close(result["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(result["rho"], engine.aligner.state_dict()["rho"], rtol=1e-5, atol=1e-6)


LEAVE_AFTER_AN_OPTIMIZER = """
import sys, torch
from dpda.train.ranks import join_process_group, leave_process_group
join_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)  # first optimizer: imports torch._dynamo
print(leave_process_group())
"""


def test_the_group_is_freed_when_left_after_the_first_optimizer(tmp_path):
    """In a fresh interpreter (where nothing imported torch._dynamo before the group existed): the group
    is freed, so no gloo thread is left to abort the exit. Without join_process_group's imports it is not."""
    proc = subprocess.run([sys.executable, "-c", LEAVE_AFTER_AN_OPTIMIZER, str(tmp_path / "init")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["True"], proc.stdout + proc.stderr[-3000:]
