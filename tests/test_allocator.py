"""CPU runs keep freed activation memory (issue 11 item 13): fewer page faults, applied by train and demo on the CPU.

The page-fault count is a device-independent, load-independent measure (bench/cpu_allocator.py reports the
wall-time ratio of the demo).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from dpda import allocator
from tests.train.test_trainer import corpus  # noqa: F401  (a fixture)

STEPS = textwrap.dedent("""
    import resource, sys, torch
    from dpda.allocator import keep_freed_memory
    applied = keep_freed_memory()
    torch.set_num_threads(1)
    conv = torch.nn.Conv1d(16, 64, 9)
    x = torch.randn(8, 16, 20000, device="cpu")
    conv(x).sum().backward()  # warm-up: the heap grows once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        conv(x).sum().backward()  # ~40 MB of activations freed and re-allocated per step
    print(int(applied), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(switch: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env[allocator.ENV_SWITCH] = switch
    out = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True, env=env, timeout=120, check=True)
    applied, faults = out.stdout.split()
    return applied == "1", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keeping_freed_memory_stops_refaulting_activations():
    applied, kept = _faults("1")
    if not applied:
        pytest.skip("not glibc: mallopt unavailable")
    off_applied, default = _faults("0")
    assert not off_applied
    assert kept * 4 < default, f"minor page faults per 10 steps: {kept} kept vs {default} glibc default"


def test_dpda_train_applies_it_for_cpu_runs(monkeypatch, tmp_path, corpus):  # noqa: F811
    from dpda.cli.main import main
    from tests.cli.test_train_cli import write_config

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    cfg = write_config(corpus, tmp_path / "cfg.yaml")
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-progress", "--set", "train.epochs=1"]) == 0
    assert calls == [1]
