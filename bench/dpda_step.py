"""Cost of a dual-path (DPDA) training step, side by side in one run.

Procedures, interleaved (one step of each per repeat; medians of per-repeat ratios):

(a) plain: one forward/backward of the concatenated 2B batch with the mean loss;
(b) public: the paper code's procedure: forward of [x; x_aug], two backward
    passes with retain_graph, and after each a clone of every parameter's
    gradient (zeros + has-grad mask where there is none), flatten, PCGrad on
    deep copies of the flat vectors, unflatten back into ``param.grad``;
(c) dpda joint: :class:`dpda.train.DualPathEngine`, mode ``joint``, PCGrad;
(d) dpda split: the same, mode ``split``.

Peak memory on CPU is the peak of tensors saved for backward (activations)
plus the gradient bookkeeping, tracked with saved-tensor hooks and counted
allocations; on CUDA it is ``torch.cuda.max_memory_allocated``.

A second part times the gradient bookkeeping alone (no model) on a synthetic
parameter set (default 50M parameters in 200 tensors): the public procedure's
clone/mask/flatten/deepcopy/project/unflatten against dpda's Gram-coefficient
alignment written in place into the flat buffer.

Usage: ``python bench/dpda_step.py [--threads 1] [--repeats 5] [--json]``;
the defaults finish in a few minutes on 2 CPU cores. With ``--json`` the last
line is ``{"ratio_public": .., "ratio_joint": .., "ratio_split": .., "mem_split_over_plain": ..}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from typing import Callable, Dict, List

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


def public_pcgrad_step(model: nn.Module, x, x_aug, y, loss_fn, meter: SavedTensorMeter) -> None:
    """The public code's procedure (re-implemented from its description)."""
    params = [p for p in model.parameters()]
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


def plain_step(model: nn.Module, x, x_aug, y, loss_fn) -> None:
    for p in model.parameters():
        p.grad = None
    logits = model(torch.cat([x, x_aug]))
    logits = logits[0] if isinstance(logits, tuple) else logits
    loss = loss_fn(logits, torch.cat([y, y]))
    loss.backward()


def bench_model(name: str, model: nn.Module, batch: int, samples: int, repeats: int, device: torch.device) -> Dict:
    loss_fn = weighted_cross_entropy()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, samples, generator=g).to(device)
    x_aug = (x.cpu() + 0.1 * torch.randn(batch, samples, generator=g)).to(device)
    y = torch.tensor([i % 2 for i in range(batch)], device=device)
    models = {k: copy.deepcopy(model).to(device).train() for k in ("plain", "public", "joint", "split")}
    engines = {k: DualPathEngine(models[k], "pcgrad", loss_fn=loss_fn, mode=k) for k in ("joint", "split")}
    meter = SavedTensorMeter()
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    procs: Dict[str, Callable[[], None]] = {
        "plain": lambda: plain_step(models["plain"], x, x_aug, y, loss_fn),
        "public": lambda: public_pcgrad_step(models["public"], x, x_aug, y, loss_fn, meter),
        "joint": lambda: engines["joint"].compute_gradients(x, x_aug, y),
        "split": lambda: engines["split"].compute_gradients(x, x_aug, y),
    }
    # bookkeeping memory beyond the plain step's P gradients (bytes): dpda keeps one extra row
    extra_grad_bytes = {"plain": 0, "joint": 4 * n_params, "split": 4 * n_params, "public": 0}
    times: Dict[str, List[float]] = {k: [] for k in procs}
    peaks: Dict[str, int] = {}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for rep in range(repeats + 1):  # the first round is a warm-up
        for k, fn in procs.items():
            meter.reset()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            t0 = time.perf_counter()
            with meter.hooks():
                fn()
            sync()
            dt = time.perf_counter() - t0
            if rep > 0:
                times[k].append(dt)
            if device.type == "cuda":
                peaks[k] = torch.cuda.max_memory_allocated()
            else:
                peaks[k] = meter.peak + extra_grad_bytes[k]
    ratios = {k: statistics.median(t / p for t, p in zip(times[k], times["plain"])) for k in procs}
    return {
        "model": name,
        "parameters": n_params,
        "batch_per_path": batch,
        "samples": samples,
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4, help="utterances per path (B)")
    ap.add_argument("--samples", type=int, default=16000, help="samples per utterance")
    ap.add_argument("--bookkeeping-params", type=float, default=50e6)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", action="store_true", help="print the summary JSON as the last line")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    torch.manual_seed(0)
    results.append(bench_model("aasist-l", build_model("aasist-l"), args.batch, args.samples, args.repeats, device))
    try:
        ssl = build_model("xlsr_conformer_tcm", **tiny_ssl_config())
        results.append(bench_model("xlsr_conformer_tcm (tiny)", ssl, args.batch, args.samples, args.repeats, device))
    except Exception as e:  # the SSL models need transformers
        print(f"(skipping the SSL model: {e})", file=sys.stderr)
    book = bench_bookkeeping(int(args.bookkeeping_params), 200, max(2, args.repeats // 2))
    print(f"device {device}, threads {args.threads}, torch {torch.__version__}")
    print(f"{'model':<28} {'params':>9} {'plain s':>8} {'public':>7} {'joint':>7} {'split':>7} {'mem public':>10} {'mem joint':>9} {'mem split':>9}")
    for r in results:
        q, m = r["ratio_to_plain"], r["mem_over_plain"]
        print(f"{r['model']:<28} {r['parameters']:>9} {r['median_s']['plain']:>8.3f} {q['public']:>6.2f}x {q['joint']:>6.2f}x "
              f"{q['split']:>6.2f}x {m['public']:>9.2f}x {m['joint']:>8.2f}x {m['split']:>8.2f}x")
    print(f"bookkeeping at {book['parameters'] / 1e6:.0f}M parameters: public {book['public_s']:.3f} s, "
          f"dpda {book['dpda_s']:.4f} s ({book['speedup']:.0f}x faster); extra memory public "
          f"{book['public_extra_bytes'] / 2**20:.0f} MiB vs dpda {book['dpda_extra_bytes'] / 2**20:.0f} MiB")
    if args.json:
        main_r = results[0]
        print(json.dumps({
            "ratio_public": round(main_r["ratio_to_plain"]["public"], 3),
            "ratio_joint": round(main_r["ratio_to_plain"]["joint"], 3),
            "ratio_split": round(main_r["ratio_to_plain"]["split"], 3),
            "mem_split_over_plain": round(main_r["mem_over_plain"]["split"], 3),
            "bookkeeping_speedup": round(book["speedup"], 1),
            "details": results,
        }))
    return 0


def tiny_ssl_config() -> Dict:
    return {"ssl_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}}


if __name__ == "__main__":
    raise SystemExit(main())
