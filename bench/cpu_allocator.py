"""Wall time and page faults of ``dpda demo --quick`` with and without dpda.allocator's setting (CPU).

Runs the demo in subprocesses, alternating ``DPDA_KEEP_FREED_MEMORY=1`` (the default) and ``=0``,
``--repeats`` times each, and prints the medians and the per-pair ratios (off / on): wall seconds,
user and system CPU seconds and minor page faults of the child. Ratios of interleaved pairs are what
to read on a shared machine; the page-fault ratio does not depend on the load.

Usage: ``python bench/cpu_allocator.py [--repeats 2] [--threads 2]`` (about 1 minute per run on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List


def run_demo(keep: bool, threads: int) -> Dict[str, float]:
    """One ``dpda demo --quick`` in a fresh process; its wall, CPU and page-fault figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(DPDA_KEEP_FREED_MEMORY="1" if keep else "0", OMP_NUM_THREADS=str(threads))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dpda", "demo", "--quick", "--json", "--out", out], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
            "minor_faults": float(after.ru_minflt - before.ru_minflt)}


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = p.parse_args(argv)
    runs: Dict[bool, List[Dict[str, float]]] = {True: [], False: []}
    for r in range(args.repeats):
        for keep in ((True, False) if r % 2 == 0 else (False, True)):
            runs[keep].append(run_demo(keep, args.threads))
            print(f"repeat {r + 1}, keep={keep}: {runs[keep][-1]}", file=sys.stderr)
    keys = ("wall_s", "user_s", "sys_s", "minor_faults")
    result = {
        "keep": {k: statistics.median(x[k] for x in runs[True]) for k in keys},
        "default_glibc": {k: statistics.median(x[k] for x in runs[False]) for k in keys},
        "ratio_default_over_keep": {k: statistics.median(b[k] / max(a[k], 1e-9) for a, b in zip(runs[True], runs[False]))
                                    for k in keys},
        "repeats": args.repeats, "threads": args.threads,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'':>16} {'keep (default)':>15} {'glibc default':>14} {'ratio':>7}")
        for k in keys:
            print(f"{k:>16} {result['keep'][k]:>15.1f} {result['default_glibc'][k]:>14.1f} "
                  f"{result['ratio_default_over_keep'][k]:>6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
