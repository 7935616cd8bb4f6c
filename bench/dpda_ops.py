"""Operators dispatched per training step: the device-independent cost proxy of a dual-path step.

On a GPU at the sizes the field trains (XLS-R 300M, a few utterances per
path) a step is launch-bound: its time follows the number of kernels it
launches, not the arithmetic. This benchmark counts, per procedure of
``bench/dpda_step.py`` (plain, public, joint, joint_1pass, joint_bbwd, split, split_1pass, ...), the
ATen operators a step dispatches, with a ``TorchDispatchMode``, leaving out
views and operators that only make or relabel tensors (``OpOverload.is_view``,
``empty*``, ``detach``, ``alias``, ``lift_fresh``, ``_unsafe_view`` (a view that autograd
does not track as one: ``matmul`` and ``reshape`` return it; it never copies) and
``_local_scalar_dense``, a host read of a scalar that is a copy, not a kernel): what is left launches a
kernel on a GPU (or runs a loop on a CPU). Counting is exact and the same on
every machine for a given torch version; any CPU can run it.

Each procedure runs one warm-up step, then one counted step. Reported: the
count per procedure and its ratio to the plain step (one forward/backward of
the concatenated 2B batch).

Usage::

    python bench/dpda_ops.py                        # AASIST-L, tiny XLS-R + TCM / AASIST, B = 2, 1 s
    python bench/dpda_ops.py --ssl-size full --models xlsr_conformer_tcm,xlsr_aasist   # XLS-R 300M
    python bench/dpda_ops.py --json-out ops.json    # every count, per operator too
    python bench/dpda_ops.py --fused-attention      # attention as CUDA launches it (see below)

Attention with dropout: on CUDA ``F.scaled_dot_product_attention`` is one
fused kernel forward and one backward, with or without dropout; on the CPU
with dropout it runs the math formulation, about a dozen operators each way,
so the CPU count weighs every attention call more than a GPU does
(``--attention-dropout 0`` sets the attention dropout of every attention
layer to 0 in every procedure, which the CPU also runs as one fused kernel
each way). The joint one pass over copies runs an attention layer with
dropout once per copy (both from the same random-number state, so both draw
the joint forward's mask), which ``--attention-dropout 0`` would hide:
``--fused-attention`` counts attention as CUDA launches it, dropout 0 (the
fused CPU kernel) but the copies' attention still run once per copy, as they
do with dropout.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import json
import sys
from pathlib import Path
from typing import Any, Callable, Counter, Dict, Iterator, List

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dpda_step import (  # noqa: E402
    PROCEDURES, SavedTensorMeter, _csv, make_engine, model_config, plain_step, public_pcgrad_step,
)

from dpda.models import build_model  # noqa: E402
from dpda.train import weighted_cross_entropy  # noqa: E402

#: operators that allocate or relabel without computing (not counted besides views)
NOT_LAUNCHING = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "detach", "alias",
                           "lift_fresh", "lift_fresh_copy", "_local_scalar_dense", "_unsafe_view"})
DEFAULT_MODELS = ("aasist-l", "xlsr_conformer_tcm", "xlsr_aasist")
DEFAULT_PROCS = ("plain", "public", "joint", "joint_1pass", "joint_bbwd", "split", "split_1pass")
#: targets of issue 12 (ratio to plain)
TARGETS = {"joint": 1.3, "joint_1pass": 1.3, "joint_bbwd": 1.3, "split": 1.1, "split_1pass": 1.1}


class OperatorCounter(TorchDispatchMode):
    """Counts dispatched ATen operators that compute (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        if not (func.is_view or name in NOT_LAUNCHING):
            self.counts[func.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_operators(step: Callable[[], Any]) -> Counter[str]:
    """Operators ``step()`` dispatches, per overload name."""
    counter = OperatorCounter()
    with counter:
        step()
    return counter.counts


def set_attention_dropout(model: torch.nn.Module, p: float) -> int:
    """Sets the attention-probability dropout of every attention layer of ``model`` to ``p`` (dpda's Conformer
    ``attn_dropout``, the XLS-R front-end's ``Wav2Vec2Attention.dropout``); returns how many layers it set."""
    n = 0
    for module in model.modules():
        for attr in ("attn_dropout", "dropout"):
            if isinstance(getattr(module, attr, None), float) and type(module).__name__.endswith("Attention"):
                setattr(module, attr, float(p))
                n += 1
    return n


@contextlib.contextmanager
def per_copy_attention() -> Iterator[None]:
    """Within: the one pass over copies runs attention once per copy (what it does for attention WITH
    dropout) even where the model's attention dropout is 0, so that each call is the CPU's fused kernel."""
    from dpda.train import path_kernels

    original = path_kernels._attention_per_copy
    path_kernels._attention_per_copy = lambda same_draws, dropout_p: same_draws
    try:
        yield
    finally:
        path_kernels._attention_per_copy = original


def count_model(name: str, model: torch.nn.Module, procs: List[str], batch: int, samples: int) -> Dict[str, Any]:
    """Counts of every procedure on ``model`` (B = ``batch`` per path, ``samples`` per utterance)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, samples, generator=g)
    x_aug = x + 0.1 * torch.randn(batch, samples, generator=g)
    y = torch.tensor([i % 2 for i in range(batch)])
    loss_fn = weighted_cross_entropy()
    counts: Dict[str, Counter[str]] = {}
    notes: Dict[str, str] = {}
    for proc in ["plain"] + [p for p in procs if p != "plain"]:
        m = copy.deepcopy(model).train()
        if proc == "plain":
            def step(m=m): plain_step(m, x, x_aug, y, loss_fn)
        elif proc == "public":
            def step(m=m): public_pcgrad_step(m, x, x_aug, y, loss_fn, SavedTensorMeter())
        else:
            engine = make_engine(proc, m, loss_fn)
            def step(e=engine): e.compute_gradients(x, x_aug, y)
        step()  # warm-up (an engine's first step may probe, e.g. the one-pass split)
        if proc != "plain" and proc != "public" and engine.one_pass_fallback:
            notes[proc] = f"fell back to two passes: {engine.one_pass_fallback}"
        counts[proc] = count_operators(step)
    total = {k: sum(c.values()) for k, c in counts.items()}
    return {
        "model": name, "batch_per_path": batch, "samples": samples,
        "operators": total, "ratio_to_plain": {k: total[k] / total["plain"] for k in total},
        "per_operator": {k: dict(c.most_common()) for k, c in counts.items()}, "notes": notes,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=_csv, default=list(DEFAULT_MODELS), metavar="LIST")
    ap.add_argument("--ssl-size", choices=("tiny", "full", "micro"), default="tiny")
    ap.add_argument("--procs", type=_csv, default=list(DEFAULT_PROCS), metavar="LIST",
                    help=f"from {','.join(PROCEDURES)} (default {','.join(DEFAULT_PROCS)})")
    ap.add_argument("--batch", type=int, default=2, help="utterances per path (B, default 2)")
    ap.add_argument("--samples", type=int, default=16000, help="samples per utterance (default 16000)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-out", metavar="PATH")
    ap.add_argument("--attention-dropout", type=float, metavar="P",
                    help="set every attention layer's dropout to P (default: the model's; see the module docstring)")
    ap.add_argument("--fused-attention", action="store_true",
                    help="count attention as CUDA launches it (see the module docstring)")
    args = ap.parse_args(argv)
    if args.fused_attention:
        args.attention_dropout = 0.0
    bad = [k for k in args.procs if k not in PROCEDURES]
    if bad:
        ap.error(f"unknown procedure: {', '.join(bad)}")
    torch.set_num_threads(args.threads)
    results = []
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name, **model_config(name, args.ssl_size))
        label = f"{name} ({args.ssl_size})" if name.startswith("xlsr") else name
        if args.attention_dropout is not None and set_attention_dropout(model, args.attention_dropout):
            label += ", fused attn" if args.fused_attention else f", attn p={args.attention_dropout:g}"
        with per_copy_attention() if args.fused_attention else contextlib.nullcontext():
            results.append(count_model(label, model, args.procs, args.batch, args.samples))
    procs = list(results[0]["operators"])
    print(f"operators dispatched per step (ratio to plain), B = {args.batch} per path, {args.samples} samples, "
          f"torch {torch.__version__}")
    print(f"{'model':<30} {'plain':>7} " + " ".join(f"{k:>16}" for k in procs[1:]))
    for r in results:
        cells = [f"{r['operators'][k]:>6} ({r['ratio_to_plain'][k]:.2f}x)" for k in procs[1:]]
        print(f"{r['model']:<30} {r['operators']['plain']:>7} " + " ".join(f"{c:>16}" for c in cells))
        for k, note in r["notes"].items():
            print(f"  {k}: {note}")
    print("targets (ratio to plain): " + ", ".join(f"{k} <= {v}" for k, v in TARGETS.items() if k in procs))
    if args.json_out:
        out = {"torch": torch.__version__, "ssl_size": args.ssl_size, "results": results}
        Path(args.json_out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
