"""RawBoost throughput: reference-exact NumPy path vs batched PyTorch path (CPU and CUDA).

Measures utterances per second on 4-second 16 kHz inputs (by default) for
algo 4 (LnL -> ISD -> SSI) and algo 3 (SSI):

* ``reference``: :func:`dpda.augment.rawboost.reference.rawboost`, one
  utterance at a time (NumPy/SciPy, single-threaded: this is the original
  RawBoost's cost in a DataLoader worker);
* ``batched-cpu-1t``: :func:`dpda.augment.rawboost.batched.rawboost_batched`
  on CPU, batch 32, ``torch.set_num_threads(1)`` (the per-core comparison);
* ``batched-cpu-Nt``: the same with all threads;
* ``batched-cuda``: on CUDA (batch 32 and 256, timed with
  ``torch.cuda.synchronize``), when a GPU is available.

Every configuration is warmed up, then the repetitions are *interleaved*
(rep 1 of every configuration, then rep 2, ...) so that a load change on a
shared machine hits all configurations alike; the table reports the median
over repetitions and the ratio to the reference path of the same algo.

Usage::

    python bench/rawboost_throughput.py                 # full run
    python bench/rawboost_throughput.py --quick         # short run
    python bench/rawboost_throughput.py --json out.json # also save results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from dpda.augment.rawboost.batched import rawboost_batched
from dpda.augment.rawboost.reference import rawboost  # the reference-exact path


@dataclass
class Config:
    name: str
    algo: int
    batch: int  # utterances per call (1 for the reference path)
    threads: Optional[int]  # torch threads (None: not applicable)
    device: str
    calls_per_rep: int
    run: Callable[[], None] = field(repr=False, default=lambda: None)
    times: List[float] = field(default_factory=list)  # seconds per repetition

    def utt_per_s(self) -> List[float]:
        return [self.batch * self.calls_per_rep / t for t in self.times]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _machine() -> Dict[str, object]:
    info: Dict[str, object] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_default_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        info["load_average"] = os.getloadavg()
    except OSError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _make_configs(args: argparse.Namespace, x_np: np.ndarray, all_threads: int) -> List[Config]:
    sr = args.sr
    configs: List[Config] = []
    for algo in args.algos:
        # (a) reference-exact path, one utterance at a time
        rng = np.random.RandomState(0)

        def run_ref(algo: int = algo, rng: np.random.RandomState = rng) -> None:
            for _ in range(args.ref_utts):
                rawboost(x_np, sr, algo, rng)

        configs.append(Config("reference", algo, 1, None, "cpu", args.ref_utts, run_ref))

        # (b) batched on CPU, 1 thread and all threads
        xb = torch.from_numpy(np.tile(x_np, (args.batch, 1)))
        for threads in sorted({1, all_threads}):
            gen = torch.Generator().manual_seed(0)

            def run_cpu(algo: int = algo, gen: torch.Generator = gen, threads: int = threads,
                        xb: torch.Tensor = xb) -> None:
                torch.set_num_threads(threads)
                for _ in range(args.cpu_calls):
                    rawboost_batched(xb, algo, gen, sr=sr)

            configs.append(Config(f"batched-cpu-{threads}t", algo, args.batch, threads, "cpu", args.cpu_calls,
                                  run_cpu))

        # (c) batched on CUDA
        if torch.cuda.is_available() and not args.no_cuda:
            for batch in args.gpu_batches:
                xg = torch.from_numpy(np.tile(x_np, (batch, 1))).cuda()
                gen_g = torch.Generator(device="cuda").manual_seed(0)

                def run_gpu(algo: int = algo, gen: torch.Generator = gen_g, xg: torch.Tensor = xg) -> None:
                    for _ in range(args.gpu_calls):
                        rawboost_batched(xg, algo, gen, sr=sr)
                    torch.cuda.synchronize()

                configs.append(Config("batched-cuda", algo, batch, None, "cuda", args.gpu_calls, run_gpu))
    return configs


def _time(cfg: Config) -> float:
    if cfg.device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    cfg.run()
    return time.perf_counter() - t0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="utterance length in seconds (default 4)")
    ap.add_argument("--sr", type=int, default=16000, help="sample rate in Hz (default 16000)")
    ap.add_argument("--algos", type=int, nargs="+", default=[4, 3], help="RawBoost algos (default 4 3)")
    ap.add_argument("--batch", type=int, default=32, help="CPU batch size (default 32)")
    ap.add_argument("--gpu-batches", type=int, nargs="+", default=[32, 256], help="CUDA batch sizes")
    ap.add_argument("--repeats", type=int, default=7, help="timed repetitions per configuration (median)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up repetitions per configuration")
    ap.add_argument("--ref-utts", type=int, default=16, help="reference utterances per repetition")
    ap.add_argument("--cpu-calls", type=int, default=1, help="batched CPU calls per repetition")
    ap.add_argument("--gpu-calls", type=int, default=10, help="batched CUDA calls per repetition")
    ap.add_argument("--threads", type=int, default=None,
                    help="'all threads' setting for the CPU path (default: torch's default at start-up)")
    ap.add_argument("--no-cuda", action="store_true", help="skip CUDA even when available")
    ap.add_argument("--quick", action="store_true", help="short run: 3 repetitions, fewer utterances")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.ref_utts, args.gpu_calls = 3, 4, 3

    all_threads = args.threads or torch.get_num_threads()
    n = int(round(args.seconds * args.sr))
    x_np = (0.1 * np.random.default_rng(2).standard_normal(n)).astype(np.float32)  # content does not matter

    configs = _make_configs(args, x_np, all_threads)
    for cfg in configs:
        for _ in range(args.warmup):
            cfg.run()
    for _ in range(args.repeats):
        for cfg in configs:  # interleaved: a load change hits every configuration alike
            cfg.times.append(_time(cfg))
    torch.set_num_threads(all_threads)

    ref_rate = {c.algo: statistics.median(c.utt_per_s()) for c in configs if c.name == "reference"}
    rows = []
    for c in configs:
        rates = c.utt_per_s()
        med = statistics.median(rates)
        rows.append({
            "path": c.name, "algo": c.algo, "device": c.device, "batch": c.batch, "threads": c.threads,
            "utt_per_s_median": med, "utt_per_s_min": min(rates), "utt_per_s_max": max(rates),
            "ms_per_utt_median": 1e3 / med, "ratio_vs_reference": med / ref_rate[c.algo],
            "repeats": len(rates),
        })

    machine = _machine()
    print(f"RawBoost throughput: {args.seconds:g} s @ {args.sr} Hz ({n} samples), median of {args.repeats} "
          f"interleaved repetitions")
    print(f"machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, torch {machine['torch']}, "
          f"numpy {machine['numpy']}, scipy {machine.get('scipy')}, "
          f"GPU: {machine.get('gpu', 'none')}")
    head = f"{'path':<16} {'algo':>4} {'device':>6} {'batch':>5} {'thr':>4} {'utt/s':>10} {'(min..max)':>20} " \
           f"{'ms/utt':>8} {'x ref':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        thr = "-" if r["threads"] is None else str(r["threads"])
        span = f"({r['utt_per_s_min']:.1f}..{r['utt_per_s_max']:.1f})"
        print(f"{r['path']:<16} {r['algo']:>4} {r['device']:>6} {r['batch']:>5} {thr:>4} "
              f"{r['utt_per_s_median']:>10.1f} {span:>20} {r['ms_per_utt_median']:>8.2f} "
              f"{r['ratio_vs_reference']:>7.2f}")
    if not machine["cuda"]:
        print("CUDA: not available, GPU rows not measured")

    if args.json:
        out = {
            "benchmark": "rawboost_throughput",
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "settings": {k: v for k, v in vars(args).items() if k != "json"} | {"samples": n,
                                                                                   "all_threads": all_threads},
            "machine": machine,
            "results": rows,
            "raw_seconds": [dict(asdict(c), run=None) for c in configs],
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2, default=str)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
