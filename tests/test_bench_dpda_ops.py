"""bench/dpda_ops.py: the operator counter and its attention options (the counts docs/benchmarks.md reports)."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

import torch

from dpda.models import build_model

REPO_ROOT = Path(__file__).resolve().parent.parent
FUSED_CPU = "_scaled_dot_product_flash_attention_for_cpu.default"


def _load_ops():
    sys.path.insert(0, str(REPO_ROOT / "bench"))  # dpda_ops imports dpda_step from its folder
    try:
        spec = importlib.util.spec_from_file_location("bench_dpda_ops", REPO_ROOT / "bench" / "dpda_ops.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO_ROOT / "bench"))


def test_fused_attention_counts_the_copies_attention_once_per_copy():
    """With attention dropout 0 every attention call is the CPU's fused kernel; the copies run attention with
    dropout once per copy, which ``per_copy_attention`` keeps: twice the plain step's fused calls (forward), and
    without it as many as the plain step."""
    ops = _load_ops()
    torch.manual_seed(0)
    model = build_model("xlsr_conformer_tcm", **ops.model_config("xlsr_conformer_tcm", "micro"))
    layers = ops.set_attention_dropout(model, 0.0)
    assert layers == 2  # one XLS-R layer, one Conformer block
    probabilities = [getattr(m, a) for m in model.modules() for a in ("attn_dropout", "dropout")
                     if isinstance(getattr(m, a, None), float) and type(m).__name__.endswith("Attention")]
    assert probabilities == [0.0, 0.0]
    counts = {}
    for fused in (False, True):
        with ops.per_copy_attention() if fused else contextlib.nullcontext():
            counts[fused] = ops.count_model("micro", model, ["plain", "joint_1pass"], batch=2, samples=4000)
    for fused, result in counts.items():
        per_op = result["per_operator"]
        plain, copies = per_op["plain"].get(FUSED_CPU, 0), per_op["joint_1pass"].get(FUSED_CPU, 0)
        assert plain == layers
        assert copies == (2 * layers if fused else layers), (fused, plain, copies)
    assert counts[True]["operators"]["joint_1pass"] > counts[False]["operators"]["joint_1pass"]
    assert counts[True]["operators"]["plain"] == counts[False]["operators"]["plain"]
