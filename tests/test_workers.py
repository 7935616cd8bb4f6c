"""DataLoader workers die with their parent; the default worker count fits the machine.

``DPDA_TEST_ARM_WORKERS=0`` runs the kill test without the parent-death signal: it then fails
(the busy workers outlive their parent), which shows what the test guards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dpda.workers import MAX_DEFAULT_WORKERS, WorkerInit, default_workers, usable_cpus

CHILD = textwrap.dedent("""
    import os, sys, time, torch
    from torch.utils.data import DataLoader, Dataset
    from dpda.workers import WorkerInit

    class Slow(Dataset):
        def __len__(self):
            return 10_000
        def __getitem__(self, i):
            time.sleep(0.05 if i < 2 else 60)  # then busy "decoding": no time to notice the parent
            return torch.zeros(4, device="cpu")

    arm = sys.argv[1] == "1"
    loader = DataLoader(Slow(), batch_size=2, num_workers=2, worker_init_fn=WorkerInit() if arm else None)
    it = iter(loader)
    next(it)
    pids = [w.pid for w in it._workers]
    print(" ".join(map(str, pids)), flush=True)
    time.sleep(120)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_workers_are_killed_with_their_parent(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), os.environ.get("DPDA_TEST_ARM_WORKERS", "1")], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 5
        while any(_alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "DataLoader workers outlived their killed parent"
    finally:
        proc.kill()


def test_worker_init_is_picklable_and_chains():
    import pickle

    seen = []
    init = pickle.loads(pickle.dumps(WorkerInit()))
    assert init.parent_pid == os.getpid()
    WorkerInit(seen.append).then(3)
    assert seen == [3]


def test_default_workers_never_exceed_usable_cpus():
    assert 1 <= default_workers() <= min(MAX_DEFAULT_WORKERS, usable_cpus())
