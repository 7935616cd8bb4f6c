"""A 2-process CPU (gloo) ``dpda train`` run under torchrun.

``device: cpu`` makes both ranks CPU ranks with the gloo backend also on a
machine with GPUs (before, CUDA's mere presence chose NCCL and rank 1 asked
for ``cuda:1`` on a one-GPU machine: "invalid device ordinal").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.train.test_trainer import TINY_AASIST, write_corpus


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    train_csv = write_corpus(tmp_path / "train", 12, 0)
    dev_csv = write_corpus(tmp_path / "dev", 6, 1)
    cfg = {
        "name": "ddp", "seed": 5, "device": "cpu", "model": {"name": "aasist-l", "config": TINY_AASIST},
        "data": {"format": "generic", "train": {"protocol": str(train_csv)}, "dev": {"protocol": str(dev_csv)},
                 "crop_samples": 4000, "batch_size": 2, "num_workers": 0},
        "augment": {"where": "workers", "rawboost_algo": 3},
        "train": {"mode": "dpda", "epochs": 2, "optimizer": {"lr": 1e-3}, "log_every": 1},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", "29517", "-m", "dpda", "train", str(tmp_path / "cfg.yaml"), "--run-dir", str(run),
         "--no-progress"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "outlived destroy_process_group" not in proc.stderr  # the ranks cannot abort while exiting
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is True
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    assert len(steps) == 2 * (12 // (2 * 2))  # each global step takes 2 per rank; logged once (rank 0)
    assert proc.stdout.count("finished:") == 1  # rank-0 logging only
