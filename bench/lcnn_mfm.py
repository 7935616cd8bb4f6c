"""LCNN training step: dpda's Max-Feature-Map against the plain ``torch.maximum`` formulation.

The LCNN's Max-Feature-Map (``max(x[:, :C/2], x[:, C/2:])`` after each of its 9
convolutions) written as ``chunk`` + ``torch.maximum`` spends most of its backward
in ``torch.maximum``'s tie handling (an equality test, a division, a select and a
masked fill per half) and the ``cat`` of ``chunk``'s backward.  dpda's
``MaxFeatureMap`` saves one byte per output saying which half won (or a tie) and
computes the same gradient bit for bit with a multiply and a subtract
(``dpda.models.lcnn._MaxOfHalves``).  This benchmark measures both side by side
in one process, interleaved, on the same weights and batch:

* time of one forward + backward (median of ``--repeats`` interleaved rounds) and
  its ratio (plain / dpda: above 1 means dpda is faster);
* the device-independent proxy: ATen operators dispatched per step (counted as in
  ``bench/dpda_ops.py``), and whether the gradients are identical.

Usage::

    OMP_NUM_THREADS=1 python bench/lcnn_mfm.py                 # B = 32 clips of 2 s (a minibench dual step)
    python bench/lcnn_mfm.py --batch 16 --samples 64600 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dpda_ops import count_operators  # noqa: E402

from dpda.models import build_model  # noqa: E402
from dpda.models.lcnn import MaxFeatureMap  # noqa: E402


def plain_max_feature_map(self: MaxFeatureMap, x: torch.Tensor) -> torch.Tensor:
    """The textbook formulation: autograd's own ``torch.maximum`` backward."""
    first, second = x.chunk(2, dim=1)
    return torch.maximum(first, second)


def step(model: torch.nn.Module, batch: torch.Tensor) -> List[torch.Tensor]:
    """One forward + backward of a cross-entropy loss; returns the parameter gradients."""
    model.zero_grad(set_to_none=True)
    labels = torch.arange(batch.shape[0], device=batch.device) % 2
    torch.nn.functional.cross_entropy(model(batch), labels).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch", type=int, default=32, help="clips per step (default 32: 16 per path)")
    parser.add_argument("--samples", type=int, default=32000, help="samples per clip at 16 kHz (default 2 s)")
    parser.add_argument("--repeats", type=int, default=6, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dpda_forward = MaxFeatureMap.forward
    forms: Dict[str, Callable] = {"plain torch.maximum": plain_max_feature_map, "dpda": dpda_forward}

    torch.manual_seed(0)
    model = build_model("lcnn", dropout=0.0).to(device)  # no dropout: both forms see the same network
    g = torch.Generator().manual_seed(1)
    batch = (0.1 * torch.randn(args.batch, args.samples, generator=g)).to(device)

    grads, ops, times = {}, {}, {name: [] for name in forms}
    try:
        for name, form in forms.items():
            MaxFeatureMap.forward = form
            grads[name] = step(model, batch)  # warm-up
            ops[name] = sum(count_operators(lambda: step(model, batch)).values())
        for _ in range(args.repeats):
            for name, form in forms.items():
                MaxFeatureMap.forward = form
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                step(model, batch)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[name].append(time.perf_counter() - start)
    finally:
        MaxFeatureMap.forward = dpda_forward
    same = all(torch.equal(a, b) for a, b in zip(grads["plain torch.maximum"], grads["dpda"]))
    print(f"LCNN step, B = {args.batch} x {args.samples} samples, {args.threads} thread(s), {device}, "
          f"median of {args.repeats} interleaved rounds")
    print(f"{'Max-Feature-Map':<22}{'ms / step':>10}{'operators':>11}")
    for name in forms:
        print(f"{name:<22}{1000 * statistics.median(times[name]):>10.0f}{ops[name]:>11d}")
    ratio = statistics.median(times["plain torch.maximum"]) / statistics.median(times["dpda"])
    print(f"time ratio plain / dpda: {ratio:.2f}x; operators {ops['plain torch.maximum']} -> {ops['dpda']}; "
          f"gradients identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
