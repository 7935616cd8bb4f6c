"""Cost of a dual-path (DPDA) training step, side by side in one run.

Procedures, interleaved (one step of each per repeat; medians of per-repeat ratios):

(a) plain: one forward/backward of the concatenated 2B batch with the mean loss;
(b) public: the paper code's procedure: forward of [x; x_aug], two backward
    passes with retain_graph, and after each a clone of every parameter's
    gradient (zeros + has-grad mask where there is none), flatten, PCGrad on
    deep copies of the flat vectors, unflatten back into ``param.grad``;
(c) dpda joint: :class:`dpda.train.DualPathEngine`, mode ``joint``, PCGrad;
(d) dpda split: the same, mode ``split``;
(e) dual_joint / dual_split (only with ``--procs``): the engine with the
    ``none`` aligner (mean of the two path gradients, the paper's DPDA
    baseline, ``dpda train`` mode ``dual``), joint / split;
(f) split_1pass / dual_split_1pass (only with ``--procs``): split mode with
    both paths in one vmapped forward/backward (``one_pass=True``, the
    engine's default on CUDA); ``split`` / ``dual_split`` are the two-pass
    split (``one_pass=False``, the default on the CPU);
(g) joint_1pass / dual_joint_1pass (only with ``--procs``): joint mode with
    one vmapped forward/backward over two copies of the joint batch
    (``one_pass=True``, ``joint_one_pass="copies"``, the default on CUDA);
    joint_bbwd / dual_joint_bbwd: one joint forward and one backward batched
    over the two losses (``joint_one_pass="batched_backward"``); ``joint`` /
    ``dual_joint`` run two backward passes.

``bench/dpda_ops.py`` counts the operators each procedure dispatches (the
device-independent proxy of a launch-bound GPU step).

Peak memory on CPU is the peak of tensors saved for backward (activations)
plus the gradient bookkeeping, tracked with saved-tensor hooks and counted
allocations. On CUDA it is what the step allocates beyond the weights
(``torch.cuda.max_memory_allocated`` during the step minus the memory
allocated before it, gradients of plain/public released first), plus the
engine's resident ``(2, P)`` gradient buffer for the engine procedures, so
every procedure is charged for its own gradient storage.

A second part times the gradient bookkeeping alone (no model) on a synthetic
parameter set (default 50M parameters in 200 tensors): the public procedure's
clone/mask/flatten/deepcopy/project/unflatten against dpda's Gram-coefficient
alignment written in place into the flat buffer (``--bookkeeping-params 0``
skips it).

Usage: ``python bench/dpda_step.py [--threads 1] [--repeats 5] [--json]``;
the defaults (AASIST-L and a tiny XLS-R + Conformer-TCM, plain / public /
joint / split, float32) finish in a few minutes on 2 CPU cores. With
``--json`` the last line is ``{"ratio_public": .., "ratio_joint": ..,
"ratio_split": .., "mem_split_over_plain": .., ...}``.

Other set-ups (used by ``bench/gpu_check.py``)::

    python bench/dpda_step.py --device cuda --models xlsr_conformer_tcm,xlsr_aasist \
        --ssl-size full --batch 5 --samples 66800 --amp none,bf16 \
        --procs plain,public,dual_joint,dual_split,joint,split --bookkeeping-params 0 \
        --json-out bench.json

``--ssl-size full`` is XLS-R 300M with random weights (nothing is loaded);
``tiny`` is 2 layers of 64 dimensions; ``micro`` shrinks the XLS-R front-end
and the back-ends further, for smoke tests. ``--json-out`` writes every
number (each model at each precision) to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, ContextManager, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from dpda.models import build_model
from dpda.train import DualPathEngine, weighted_cross_entropy


class SavedTensorMeter:
    """Tracks the bytes of tensors saved for backward (peak over a step)."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0

    def reset(self) -> None:
        self.current = 0
        self.peak = 0

    def add(self, n: int) -> None:
        self.current += n
        self.peak = max(self.peak, self.current)

    def hooks(self):
        meter = self

        class Held:
            __slots__ = ("t", "n")

            def __init__(self, t: torch.Tensor) -> None:
                self.t = t
                self.n = t.numel() * t.element_size()
                meter.add(self.n)

            def __del__(self) -> None:
                meter.current -= self.n

        return torch.autograd.graph.saved_tensors_hooks(lambda t: Held(t), lambda h: h.t)


#: procedure name -> aligner of the engine (None: not an engine procedure); see :func:`make_engine`
PROCEDURES: Dict[str, Optional[str]] = {
    "plain": None, "public": None, "dual_joint": "none", "dual_split": "none", "joint": "pcgrad", "split": "pcgrad",
    "split_1pass": "pcgrad", "dual_split_1pass": "none", "joint_1pass": "pcgrad", "dual_joint_1pass": "none",
    "joint_bbwd": "pcgrad", "dual_joint_bbwd": "none",
}
DEFAULT_PROCS = ("plain", "public", "joint", "split")
AMP_DTYPES: Dict[str, Optional[torch.dtype]] = {"none": None, "bf16": torch.bfloat16}


def _autocast(device: torch.device, amp: Optional[torch.dtype]) -> ContextManager[Any]:
    return torch.autocast(device_type=device.type, dtype=amp) if amp is not None else contextlib.nullcontext()


def public_pcgrad_step(model: nn.Module, x, x_aug, y, loss_fn, meter: SavedTensorMeter,
                       amp: Optional[torch.dtype] = None) -> None:
    """The public code's procedure (re-implemented from its description)."""
    params = [p for p in model.parameters()]
    with _autocast(x.device, amp):
        logits = model(torch.cat([x, x_aug]))
    logits = logits[0] if isinstance(logits, tuple) else logits
    losses = [loss_fn(logits[: len(x)], y), loss_fn(logits[len(x):], y)]
    grads, shapes, has_grads = [], [], []
    for loss in losses:
        for p in params:
            p.grad = None
        loss.backward(retain_graph=True)
        g, s, h = [], [], []
        for p in params:
            s.append(p.shape)
            if p.grad is None:
                g.append(torch.zeros_like(p))
                h.append(torch.zeros_like(p))
            else:
                g.append(p.grad.clone())
                h.append(torch.ones_like(p))
        flat_g = torch.cat([t.flatten() for t in g])
        flat_h = torch.cat([t.flatten() for t in h])
        meter.add(2 * sum(t.numel() * 4 for t in g) + flat_g.numel() * 8)
        grads.append(flat_g)
        has_grads.append(flat_h)
        shapes = s
    shared = torch.stack(has_grads).prod(0).bool()
    pc_grad = copy.deepcopy(grads)
    meter.add(sum(t.numel() * 4 for t in pc_grad))
    for g_i in pc_grad:
        for g_j in grads:
            d = torch.dot(g_i, g_j)
            if d < 0:
                g_i -= d * g_j / (g_j.norm() ** 2)
    merged = torch.zeros_like(grads[0])
    merged[shared] = torch.stack([g[shared] for g in pc_grad]).mean(dim=0)
    merged[~shared] = torch.stack([g[~shared] for g in pc_grad]).sum(dim=0)
    idx = 0
    for p, shape in zip(params, shapes):
        n = p.numel()
        p.grad = merged[idx: idx + n].view(shape).clone()
        idx += n


def plain_step(model: nn.Module, x, x_aug, y, loss_fn, amp: Optional[torch.dtype] = None) -> None:
    for p in model.parameters():
        p.grad = None
    with _autocast(x.device, amp):
        logits = model(torch.cat([x, x_aug]))
    logits = logits[0] if isinstance(logits, tuple) else logits
    loss = loss_fn(logits, torch.cat([y, y]))
    loss.backward()


def make_engine(proc: str, model: nn.Module, loss_fn, amp: Optional[torch.dtype] = None) -> DualPathEngine:
    """The engine of an engine procedure: mode joint/split from the name, one batched pass only for
    ``*_1pass`` (one vmapped forward/backward; joint: over two copies of the joint batch) and ``*_bbwd`` (joint:
    one backward batched over the two losses)."""
    mode = "joint" if "joint" in proc else "split"
    return DualPathEngine(model, PROCEDURES[proc], loss_fn=loss_fn, mode=mode, amp_dtype=amp,
                          one_pass=proc.endswith(("_1pass", "_bbwd")),
                          joint_one_pass="batched_backward" if proc.endswith("_bbwd") else "copies")


def bench_model(name: str, model: nn.Module, batch: int, samples: int, repeats: int, device: torch.device,
                procs: Sequence[str] = DEFAULT_PROCS, amp: Optional[torch.dtype] = None) -> Dict:
    """Times and peak memory of ``procs`` (names of :data:`PROCEDURES`; "plain" is always run) on ``model``."""
    procs = ["plain"] + [k for k in procs if k != "plain"]
    unknown = [k for k in procs if k not in PROCEDURES]
    if unknown:
        raise ValueError(f"unknown procedure(s) {unknown}; available: {', '.join(PROCEDURES)}")
    loss_fn = weighted_cross_entropy()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, samples, generator=g).to(device)
    x_aug = (x.cpu() + 0.1 * torch.randn(batch, samples, generator=g)).to(device)
    y = torch.tensor([i % 2 for i in range(batch)], device=device)
    model = model.to(device).train()
    models = {k: (model if i == 0 else copy.deepcopy(model)) for i, k in enumerate(procs)}
    engines = {k: make_engine(k, models[k], loss_fn, amp) for k in procs if PROCEDURES[k] is not None}
    meter = SavedTensorMeter()
    n_params = sum(p.numel() for p in models["plain"].parameters() if p.requires_grad)

    def run(k: str) -> None:
        if k == "plain":
            plain_step(models[k], x, x_aug, y, loss_fn, amp)
        elif k == "public":
            public_pcgrad_step(models[k], x, x_aug, y, loss_fn, meter, amp)
        else:
            engines[k].compute_gradients(x, x_aug, y)

    # bookkeeping memory beyond the plain step's P gradients (bytes): dpda keeps one extra row
    extra_grad_bytes = {k: (4 * n_params if k in engines else 0) for k in procs}
    times: Dict[str, List[float]] = {k: [] for k in procs}
    peaks: Dict[str, int] = {}
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for rep in range(repeats + 1):  # the first round is a warm-up
        for k in procs:
            meter.reset()
            if cuda:
                if k not in engines:
                    for p in models[k].parameters():
                        p.grad = None
                sync()
                before = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            sync()
            t0 = time.perf_counter()
            with (contextlib.nullcontext() if cuda else meter.hooks()):
                run(k)
            sync()
            dt = time.perf_counter() - t0
            if rep > 0:
                times[k].append(dt)
            if cuda:
                buffer = engines[k]._buffer if k in engines else None
                resident = buffer.numel() * buffer.element_size() if buffer is not None else 0
                peaks[k] = torch.cuda.max_memory_allocated() - before + resident
            else:
                peaks[k] = meter.peak + extra_grad_bytes[k]
    for e in engines.values():
        e.close()
    ratios = {k: statistics.median(t / p for t, p in zip(times[k], times["plain"])) for k in procs}
    return {
        "model": name,
        "parameters": n_params,
        "batch_per_path": batch,
        "samples": samples,
        "amp": next((k for k, v in AMP_DTYPES.items() if v == amp), str(amp)),
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "ratio_to_plain": ratios,
        "peak_bytes": peaks,
        "mem_over_plain": {k: peaks[k] / peaks["plain"] for k in procs},
    }


def bench_bookkeeping(n_params: int, n_tensors: int, repeats: int) -> Dict:
    """Gradient bookkeeping alone on a synthetic parameter set (grads already computed)."""
    sizes = [n_params // n_tensors] * n_tensors
    params = [nn.Parameter(torch.zeros(s)) for s in sizes]
    g = torch.Generator().manual_seed(1)
    path_grads = [[torch.randn(s, generator=g) for s in sizes] for _ in range(2)]
    path_grads[1] = [-0.5 * a + b for a, b in zip(path_grads[0], path_grads[1])]  # conflicting
    buf = torch.empty(2, sum(sizes))
    from dpda.align import build_aligner

    aligner = build_aligner("pcgrad")

    def public():
        grads, has = [], []
        for r in range(2):
            grads.append(torch.cat([t.clone().flatten() for t in path_grads[r]]))
            has.append(torch.cat([torch.ones_like(t).flatten() for t in path_grads[r]]))
        shared = torch.stack(has).prod(0).bool()
        pc = copy.deepcopy(grads)
        for g_i in pc:
            for g_j in grads:
                d = torch.dot(g_i, g_j)
                if d < 0:
                    g_i -= d * g_j / (g_j.norm() ** 2)
        merged = torch.zeros_like(grads[0])
        merged[shared] = torch.stack([t[shared] for t in pc]).mean(0)
        merged[~shared] = torch.stack([t[~shared] for t in pc]).sum(0)
        i = 0
        for p in params:
            p.grad = merged[i: i + p.numel()].view_as(p).clone()
            i += p.numel()

    def dpda():
        # the engine's backward passes accumulate straight into these rows; refill them here
        for r in range(2):
            torch.cat([t.flatten() for t in path_grads[r]], out=buf[r])
        refill = time.perf_counter()
        aligner(buf, inplace=True)
        return time.perf_counter() - refill

    t_pub, t_dpda = [], []
    for rep in range(repeats + 1):
        t0 = time.perf_counter()
        public()
        dt = time.perf_counter() - t0
        dt2 = dpda()
        if rep > 0:
            t_pub.append(dt)
            t_dpda.append(dt2)
    p = sum(sizes)
    # bytes held beyond the autograd gradients: public: clones (2P) + masks (2P) + flats (2P) + deepcopy (2P)
    # + merged (P) + per-parameter clones (P) = 10P floats plus bool masks; dpda: one extra row (P)
    return {
        "parameters": p,
        "public_s": statistics.median(t_pub),
        "dpda_s": statistics.median(t_dpda),
        "speedup": statistics.median(t_pub) / statistics.median(t_dpda),
        "public_extra_bytes": 10 * 4 * p,
        "dpda_extra_bytes": 4 * p,
    }


SSL_MODELS = ("xlsr_conformer_tcm", "xlsr_aasist", "xlsr_mamba")
DEFAULT_MODELS = ("aasist-l", "xlsr_conformer_tcm")


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4, help="utterances per path (B)")
    ap.add_argument("--samples", type=int, default=16000, help="samples per utterance")
    ap.add_argument("--bookkeeping-params", type=float, default=50e6, help="0 skips the bookkeeping part")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", type=_csv, default=None, metavar="LIST",
                    help=f"comma-separated model names (default {','.join(DEFAULT_MODELS)}; an SSL model "
                         "that cannot be built is then skipped, while a listed one that fails is an error)")
    ap.add_argument("--ssl-size", choices=("tiny", "full", "micro"), default="tiny",
                    help="size of the XLS-R models: tiny (2 layers, 64 dims; default), full (XLS-R 300M, "
                         "random weights), micro (smoke tests)")
    ap.add_argument("--procs", type=_csv, default=list(DEFAULT_PROCS), metavar="LIST",
                    help=f"procedures, comma-separated, from {','.join(PROCEDURES)} "
                         f"(default {','.join(DEFAULT_PROCS)})")
    ap.add_argument("--amp", type=_csv, default=["none"], metavar="LIST",
                    help="precisions, comma-separated: none (float32, default), bf16 (autocast), or both")
    ap.add_argument("--json", action="store_true", help="print the summary JSON as the last line")
    ap.add_argument("--json-out", metavar="PATH", help="write every result (all models and precisions) to PATH")
    args = ap.parse_args(argv)
    bad = [k for k in args.procs if k not in PROCEDURES] + [a for a in args.amp if a not in AMP_DTYPES]
    if bad:
        ap.error(f"unknown procedure or precision: {', '.join(bad)}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = args.models or list(DEFAULT_MODELS)
    results: List[Dict] = []
    errors: Dict[str, str] = {}
    for name in names:
        label = name if name not in SSL_MODELS else f"{name} ({args.ssl_size})"
        try:
            torch.manual_seed(0)
            built: Optional[nn.Module] = build_model(name, **model_config(name, args.ssl_size))
        except Exception as e:  # the SSL models need transformers
            if args.models is None and name in SSL_MODELS:
                print(f"(skipping the SSL model: {e})", file=sys.stderr)
            else:
                errors[label] = f"{type(e).__name__}: {e}"
                print(f"error: {label}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        for i, amp in enumerate(args.amp):
            # the same initial weights at every precision; the last precision takes the built model itself
            model = built if i == len(args.amp) - 1 else copy.deepcopy(built)
            try:
                results.append(bench_model(label, model, args.batch, args.samples, args.repeats, device,
                                           args.procs, AMP_DTYPES[amp]))
            except Exception as e:  # a GPU may run out of memory
                errors[f"{label} {amp}"] = f"{type(e).__name__}: {e}"
                print(f"error: {label}, amp {amp}: {type(e).__name__}: {e}", file=sys.stderr)
            finally:
                dump(args, device, procs_of(args), results, errors, None, done=False)
                model = None
                if i == len(args.amp) - 1:
                    built = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    book = None
    if args.bookkeeping_params:
        book = bench_bookkeeping(int(args.bookkeeping_params), 200, max(2, args.repeats // 2))
    print(f"device {device}, threads {args.threads}, torch {torch.__version__}")
    others = procs_of(args)[1:]
    print(f"{'model':<32} {'amp':>4} {'params':>11} {'plain s':>8} " + " ".join(f"{k:>10}" for k in others)
          + "  " + " ".join(f"{'mem ' + k:>15}" for k in others))
    for r in results:
        q, m = r["ratio_to_plain"], r["mem_over_plain"]
        print(f"{r['model']:<32} {r['amp']:>4} {r['parameters']:>11} {r['median_s']['plain']:>8.3f} "
              + " ".join(f"{q[k]:>9.2f}x" for k in others) + "  " + " ".join(f"{m[k]:>14.2f}x" for k in others))
    if book is not None:
        print(f"bookkeeping at {book['parameters'] / 1e6:.0f}M parameters: public {book['public_s']:.3f} s, "
              f"dpda {book['dpda_s']:.4f} s ({book['speedup']:.0f}x faster); extra memory public "
              f"{book['public_extra_bytes'] / 2**20:.0f} MiB vs dpda {book['dpda_extra_bytes'] / 2**20:.0f} MiB")
    dump(args, device, procs_of(args), results, errors, book, done=True)
    if args.json and results:
        main_r = results[0]
        summary: Dict[str, Any] = {f"ratio_{k}": round(main_r["ratio_to_plain"][k], 3) for k in others}
        if "split" in main_r["mem_over_plain"]:
            summary["mem_split_over_plain"] = round(main_r["mem_over_plain"]["split"], 3)
        if book is not None:
            summary["bookkeeping_speedup"] = round(book["speedup"], 1)
        summary["details"] = results
        print(json.dumps(summary))
    return 1 if errors else 0


def procs_of(args: argparse.Namespace) -> List[str]:
    """The procedures that run: "plain" first, then the requested ones."""
    return ["plain"] + [k for k in args.procs if k != "plain"]


def dump(args: argparse.Namespace, device: torch.device, procs: List[str], results: List[Dict], errors: Dict[str, str],
         book: Optional[Dict], done: bool) -> None:
    """Write everything measured so far to ``--json-out`` (after every model and precision, so a run
    stopped by a time limit still leaves its finished rows; ``complete`` tells whether it ended)."""
    if not args.json_out:
        return
    out = {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__, "threads": args.threads, "repeats": args.repeats, "batch_per_path": args.batch,
        "samples": args.samples, "ssl_size": args.ssl_size, "procs": procs, "amp": args.amp, "complete": done,
        "results": results, "bookkeeping": book, "errors": errors,
    }
    path = Path(args.json_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def tiny_ssl_config() -> Dict:
    return {"ssl_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}}


def model_config(name: str, ssl_size: str = "tiny") -> Dict[str, Any]:
    """``build_model`` keyword arguments of ``name`` at an XLS-R size (tiny / full / micro); {} for other models.

    ``full`` is XLS-R 300M with random weights (``ssl_pretrained`` None). ``micro``
    (smoke tests) also shrinks the feature encoder and the back-end.
    """
    if name not in SSL_MODELS or ssl_size == "full":
        return {}
    if ssl_size == "tiny":
        return tiny_ssl_config()
    if ssl_size != "micro":
        raise ValueError(f"unknown XLS-R size {ssl_size!r}; expected tiny, full or micro")
    cfg: Dict[str, Any] = {"ssl_config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                          "intermediate_size": 64, "conv_dim": [32] * 7}}
    if name == "xlsr_conformer_tcm":
        cfg.update(dim=32, n_blocks=1)
    elif name == "xlsr_aasist":
        cfg.update(proj_dim=24, filts=[[1, 8], [8, 8], [8, 16], [16, 16]], attention_dim=16, gat_dims=[16, 8])
    else:
        cfg.update(d_model=32, n_layers=1)
    return cfg


if __name__ == "__main__":
    raise SystemExit(main())
