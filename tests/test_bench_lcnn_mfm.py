"""bench/lcnn_mfm.py: runs at a small size, finds the two Max-Feature-Map forms' gradients identical, and leaves
dpda's form installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from dpda.models.lcnn import MaxFeatureMap

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_lcnn_mfm_bench_small(capsys):
    sys.path.insert(0, str(REPO_ROOT / "bench"))  # it imports dpda_ops from its folder
    try:
        spec = importlib.util.spec_from_file_location("bench_lcnn_mfm", REPO_ROOT / "bench" / "lcnn_mfm.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO_ROOT / "bench"))
    before = MaxFeatureMap.forward
    assert module.main(["--batch", "2", "--samples", "4000", "--repeats", "1"]) == 0
    assert MaxFeatureMap.forward is before
    out = capsys.readouterr().out
    assert "gradients identical: True" in out
    counts = {line.split()[0]: int(line.split()[-1]) for line in out.splitlines()
              if line.startswith(("plain", "dpda "))}
    assert counts["dpda"] < counts["plain"]  # fewer operators dispatched: the proxy the benchmark reports
