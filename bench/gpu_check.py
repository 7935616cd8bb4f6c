"""One command that checks dpda on a GPU machine and writes one JSON summary (see docs/benchmarks.md).

Stages, in order (each one's failure is recorded, with the tail of its stderr, and the
next stage runs anyway):

1. ``wheels``: soundfile / soxr importable, else the wheels of ``.whl/`` (made here by
   ``bench/gpu_wheels.sh``) are installed with ``pip install --no-index --no-deps --target``;
   ``src/`` goes on ``sys.path`` and ``PYTHONPATH``, so dpda runs uninstalled (``python -m dpda``).
2. ``environment``: Python, torch, CUDA, GPU, library versions, dpda commit and source digest.
3. ``pytest``: the test suite restricted to ``-k cuda`` (device-parametrized tests), JUnit counts.
4. ``bench``: ``bench/dpda_step.py`` at full XLS-R size (random weights), Conformer-TCM and
   AASIST back-ends, B = 5 per path, 66800 samples, bf16 and float32: plain step against
   public / dual joint / dual split / dpda (PCGrad) joint / split, time and peak memory.
5. ``corpus``: the synthetic corpus of ``dpda demo`` (200 train, 20 dev, 20 test utterances, 4.2 s).
6. ``train_single`` / ``train_dual`` / ``train_dpda_joint`` / ``train_dpda_split``: ``dpda train``
   with ``configs/xlsr_conformer_tcm_dpda.yaml`` (random-init XLS-R, the corpus above, 40 steps,
   ``train.amp=bf16``): seconds per step, conflict rate.
7. ``score`` and ``detect`` with the ``train_dpda_joint`` model.

``--smoke`` shrinks everything (micro models, a tiny corpus, 3 steps) so that the plumbing runs on a
CPU in about a minute: ``python bench/gpu_check.py --smoke --device cpu``. The summary is written
after every stage to ``--out`` (default ``$OUT/gpu_check.json`` when ``$OUT`` is set, else
``runs/gpu_check/summary.json``), every command's full output to the same path with ``.log``.
Exit code 0 when every stage passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from gpu_check_lib import (REPO, Deadline, ensure_modules, format_table, git_commit, overrides, parse_junit,
                           run_command, source_digest, stage_record, tail, train_metrics, write_json)

SRC = REPO / "src"
CONFIG = "configs/xlsr_conformer_tcm_dpda.yaml"
BENCH_MODELS = "xlsr_conformer_tcm,xlsr_aasist"
BENCH_PROCS = ("plain,public,dual_joint,dual_joint_1pass,dual_joint_bbwd,dual_split,dual_split_1pass,joint,"
               "joint_1pass,joint_bbwd,split,split_1pass")
#: stage name -> ``dpda train`` overrides of that mode
TRAIN_MODES: Dict[str, Dict[str, str]] = {
    "single": {"train.mode": "single"},
    "dual": {"train.mode": "dual", "train.engine_mode": "joint"},
    "dpda_joint": {"train.mode": "dpda", "train.engine_mode": "joint"},
    "dpda_split": {"train.mode": "dpda", "train.engine_mode": "split"},
}
SCORED_RUN = "dpda_joint"
GROUPS = ("pytest", "bench", "train", "score", "detect")


@dataclass(frozen=True)
class Profile:
    """Sizes and per-stage time limits (seconds) of one kind of check."""

    n_train: int
    n_dev: int
    n_test: int
    seconds: float  # corpus utterance length
    batch: int  # per path
    crop: int  # training crop (samples)
    steps: int  # training steps per mode
    workers: int  # DataLoader workers
    ssl_size: str  # full | micro (see bench/dpda_step.py model_config)
    bench_repeats: int
    pytest_s: float
    bench_s: float
    train_s: float
    infer_s: float


FULL = Profile(200, 20, 20, 4.2, 5, 66800, 40, 4, "full", 3, 150, 240, 150, 90)
SMOKE = Profile(8, 4, 4, 0.5, 2, 4000, 3, 0, "micro", 1, 120, 120, 90, 60)


class Check:
    """State shared by the stages: options, paths, deadline, subprocess environment, summary."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device: str = args.device
        self.profile = SMOKE if args.smoke else FULL
        self.deadline = Deadline(args.time_limit)
        self.out = Path(args.out) if args.out else default_out()
        self.log = self.out.with_suffix(".log")
        self.work = Path(args.work).resolve()
        self.corpus = self.work / "corpus"
        self.runs = self.work / "runs"
        self.summary: Dict[str, Any] = {
            "check": "bench/gpu_check.py", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": self.device,
            "smoke": bool(args.smoke), "profile": asdict(self.profile), "argv": sys.argv[1:], "stages": {}, "ok": False,
        }

    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        if self.device == "cpu":  # on a small shared CPU, OpenMP threads that wait for each other cost more
            env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def run(self, cmd: List[Any], stage_s: float) -> Dict[str, Any]:
        return run_command([str(c) for c in cmd], self.deadline.timeout(stage_s), self.log, self.env())

    def record(self, name: str, rec: Dict[str, Any]) -> None:
        rec.setdefault("brief", "")
        self.summary["stages"][name] = rec
        self.summary["seconds_total"] = round(self.deadline.elapsed(), 1)
        write_json(self.out, self.summary)
        print(f"[{self.deadline.elapsed():7.1f} s] {name}: {rec['status']} {rec['brief']}", flush=True)


def default_out() -> Path:
    """``$OUT/gpu_check.json`` on the device machine, else ``runs/gpu_check/summary.json``."""
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_check.json"
    return REPO / "runs" / "gpu_check" / "summary.json"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


# --------------------------------------------------------------------------- stages
def stage_wheels(c: Check) -> Dict[str, Any]:
    rec = ensure_modules(["soundfile", "soxr"], REPO / ".whl", c.work / "site")
    done = f"installed {len(rec['installed'])} wheel(s) into {rec['target']}" if rec["installed"] else "importable"
    return {**rec, "status": "ok" if rec["ok"] else "failed", "brief": rec.get("error", done)}


def stage_environment(c: Check) -> Dict[str, Any]:
    import torch

    import dpda

    info: Dict[str, Any] = {
        "python": platform.python_version(), "executable": sys.executable, "platform": platform.platform(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(), "dpda": dpda.__version__,
        "dpda_commit": git_commit(REPO) or os.environ.get("DPDA_COMMIT"),
        "dpda_src_digest": source_digest(SRC / "dpda"),
    }
    info.update({name: _version(name) for name in ("numpy", "scipy", "transformers", "soundfile", "soxr", "PyYAML",
                                                   "matplotlib", "pytest")})
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), gpu_capability=f"{p.major}.{p.minor}",
                    gpu_sms=p.multi_processor_count)
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = q.stdout.strip() or tail(q.stderr, 3)
    ok = c.device == "cpu" or bool(info["cuda_available"])
    gpu = f", {info['gpu']} ({info['gpu_memory_gib']} GiB)" if "gpu" in info else ", no GPU"
    return {"status": "ok" if ok else "failed", "ok": ok, **info,
            "brief": f"torch {info['torch']}, CUDA {info['cuda_build']}{gpu}, commit {str(info['dpda_commit'])[:12]}"}


def stage_pytest(c: Check) -> Dict[str, Any]:
    junit = c.work / "pytest.xml"
    junit.unlink(missing_ok=True)
    res = c.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", c.args.pytest_k,
                 f"--junitxml={junit}", *c.args.tests], c.profile.pytest_s)
    counts = parse_junit(junit) if junit.is_file() else {}
    # exit 5 = nothing selected: expected on a CPU, a failure on a GPU (no CUDA test ran)
    ok = res["rc"] == 0 or (res["rc"] == 5 and c.device == "cpu")
    brief = ", ".join(f"{k} {counts[k]}" for k in ("passed", "failed", "errors", "skipped")) if counts else "no report"
    if res["rc"] == 5:
        brief = f"no test matched -k {c.args.pytest_k!r}"
    return stage_record(res, ok, brief=brief, **counts)


def stage_bench(c: Check) -> Dict[str, Any]:
    out = c.work / "bench.json"
    out.unlink(missing_ok=True)
    p = c.profile
    threads = min(8, os.cpu_count() or 1) if c.device.startswith("cuda") else 1
    res = c.run([sys.executable, REPO / "bench" / "dpda_step.py", "--device", c.device, "--models", BENCH_MODELS,
                 "--ssl-size", p.ssl_size, "--batch", p.batch, "--samples", p.crop, "--amp", "bf16,none",
                 "--procs", BENCH_PROCS, "--repeats", p.bench_repeats, "--bookkeeping-params", 0,
                 "--threads", threads, "--json-out", out], p.bench_s)
    data = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    results, errors = data.get("results", []), data.get("errors", {})
    ok = res["rc"] == 0 and bool(data.get("complete")) and len(results) == 4 and not errors
    brief = f"{len(results)} model/precision rows" + (f", errors: {errors}" if errors else "")
    settings = {k: v for k, v in data.items() if k not in ("results", "errors")}
    return stage_record(res, ok, brief=brief, results=results, errors=errors, settings=settings)


def stage_corpus(c: Check) -> Dict[str, Any]:
    from dpda.data.synthetic import make_synthetic_corpus

    p = c.profile
    t0 = time.monotonic()
    info = make_synthetic_corpus(c.corpus, n_train=p.n_train, n_dev=p.n_dev, n_test=p.n_test, n_test_shifted=0,
                                 seconds=p.seconds, seed=0, workers=min(8, os.cpu_count() or 1))
    return {"status": "ok", "ok": True, "seconds": round(time.monotonic() - t0, 2), "path": str(c.corpus),
            "counts": info["counts"], "reused": info["reused"],
            "brief": f"{p.n_train}/{p.n_dev}/{p.n_test} utterances of {p.seconds} s"
                     f" ({'reused' if info['reused'] else 'new'})"}


def train_overrides(c: Check, mode: str) -> List[str]:
    """``--set`` arguments that turn the paper's config into this check's run of ``mode``."""
    from dpda_step import model_config

    p = c.profile
    values: Dict[str, Any] = {
        "name": f"gpu_check_{mode}", "device": c.device, "model.config.ssl_pretrained": None,
        **{f"model.config.{k}": v for k, v in model_config("xlsr_conformer_tcm", p.ssl_size).items()},
        "data.format": "generic", "data.train": {"protocol": str(c.corpus / "train.csv")},
        "data.dev": {"protocol": str(c.corpus / "dev.csv")}, "data.crop_samples": p.crop, "data.batch_size": p.batch,
        "data.eval_batch_size": 10, "data.num_workers": p.workers, "train.epochs": 1, "train.steps_per_epoch": p.steps,
        "train.amp": "bf16", "train.log_every": 1, "train.patience": 0, "train.top_k": 1, **TRAIN_MODES[mode],
    }
    return overrides(values)


def stage_train(c: Check, mode: str) -> Dict[str, Any]:
    run_dir = c.runs / mode
    shutil.rmtree(run_dir, ignore_errors=True)
    res = c.run([sys.executable, "-m", "dpda", "train", CONFIG, "--run-dir", run_dir, "--no-progress", "--json",
                 "--checkpoint-every", 0, *train_overrides(c, mode)], c.profile.train_s)
    metrics_path = run_dir / "metrics.jsonl"
    m = train_metrics(metrics_path, c.profile.batch) if metrics_path.is_file() else {}
    ok = res["rc"] == 0 and (run_dir / "model.pt").is_file() and m.get("steps_logged") == c.profile.steps
    # a full-size run writes gigabytes of checkpoints: keep only what score / detect use
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    if mode != SCORED_RUN:
        (run_dir / "model.pt").unlink(missing_ok=True)
    conflicts = "-" if m.get("conflict_rate") is None or mode == "single" else f"{100 * m['conflict_rate']:.0f}%"
    brief = (f"{m['s_per_step_median']} s/step (first {m['first_step_s']} s), {m['steps_logged']} steps, "
             f"conflicts {conflicts}" if m.get("s_per_step_median") is not None else "no step records")
    if res["rc"] == 0 and m.get("steps_logged") != c.profile.steps:
        brief += f" (expected {c.profile.steps} steps)"
    return stage_record(res, ok, brief=brief, run_dir=str(run_dir), **m)


def _scored_model(c: Check) -> Optional[Path]:
    path = c.runs / SCORED_RUN
    return path if (path / "model.pt").is_file() else None


def _not_run(why: str) -> Dict[str, Any]:
    return {"status": "skipped", "ok": False, "seconds": 0.0, "brief": why}


def stage_score(c: Check) -> Dict[str, Any]:
    model = _scored_model(c)
    if model is None:
        return _not_run(f"no model: train_{SCORED_RUN} did not finish")
    out = c.work / "scores" / "test.txt"
    for path in (out, out.with_name(out.name + ".partial"), out.with_name(out.name + ".errors")):
        path.unlink(missing_ok=True)
    res = c.run([sys.executable, "-m", "dpda", "score", "--model", model, "--format", "generic", "--protocol",
                 c.corpus / "test.csv", "--out", out, "--device", c.device, "--workers", min(2, c.profile.workers),
                 "--batch-size", 10, "--no-progress", "--evaluate"], c.profile.infer_s)
    n = len(out.read_text(encoding="utf-8").splitlines()) if out.is_file() else 0
    ok = res["rc"] == 0 and n == c.profile.n_test
    return stage_record(res, ok, brief=f"{n} of {c.profile.n_test} utterances scored", n_scores=n,
                        stdout_tail=tail(res["stdout"], 12))


def stage_detect(c: Check) -> Dict[str, Any]:
    model = _scored_model(c)
    if model is None:
        return _not_run(f"no model: train_{SCORED_RUN} did not finish")
    with open(c.corpus / "test.csv", newline="", encoding="utf-8") as f:
        files = [str(c.corpus / row["path"]) for row in csv.DictReader(f)][:4]
    res = c.run([sys.executable, "-m", "dpda", "detect", "--model", model, "--device", c.device, "--json", *files],
                c.profile.infer_s)
    try:
        results = json.loads(res["stdout"])["results"]
    except (ValueError, KeyError, TypeError):
        results = []
    decided = [r for r in results if "decision" in r]
    ok = res["rc"] == 0 and len(decided) == len(files)
    return stage_record(res, ok, brief=f"{len(decided)} of {len(files)} files decided", results=results)


# --------------------------------------------------------------------------- main
def stages(c: Check) -> List[Tuple[str, str, Callable[[Check], Dict[str, Any]]]]:
    """(name, group for --skip, function) in running order."""
    out: List[Tuple[str, str, Callable[[Check], Dict[str, Any]]]] = [
        ("wheels", "", stage_wheels), ("environment", "", stage_environment),
        ("pytest", "pytest", stage_pytest), ("bench", "bench", stage_bench),
        ("corpus", "train score detect", stage_corpus),
    ]
    out += [(f"train_{mode}", "train", (lambda m: lambda ch: stage_train(ch, m))(mode)) for mode in TRAIN_MODES]
    return out + [("score", "score", stage_score), ("detect", "detect", stage_detect)]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--smoke", action="store_true", help="micro models, a tiny corpus and few steps (runs on a CPU)")
    ap.add_argument("--out", help="summary JSON (default $OUT/gpu_check.json, else runs/gpu_check/summary.json)")
    ap.add_argument("--work", default=str(REPO / "runs" / "gpu_check" / "work"), help="corpus, runs and scratch files")
    ap.add_argument("--skip", default="", metavar="LIST",
                    help=f"comma-separated stage groups to leave out: {', '.join(GROUPS)}")
    ap.add_argument("--pytest-k", default="cuda", metavar="EXPR", help="pytest -k expression (default: cuda)")
    ap.add_argument("--tests", nargs="+", default=["tests"], metavar="PATH",
                    help="what pytest collects (default: tests)")
    ap.add_argument("--time-limit", type=float, default=560.0, metavar="S",
                    help="stop starting stages so that the summary is written within S seconds (default 560; 0: none)")
    args = ap.parse_args(argv)
    unknown = set(filter(None, args.skip.split(","))) - set(GROUPS)
    if unknown:
        ap.error(f"--skip: unknown group(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    c = Check(parse_args(argv))
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))  # this tree's dpda, uninstalled (subprocesses get it via PYTHONPATH)
    c.work.mkdir(parents=True, exist_ok=True)
    c.log.parent.mkdir(parents=True, exist_ok=True)
    c.log.unlink(missing_ok=True)
    skip = set(filter(None, c.args.skip.split(",")))
    print(f"gpu_check: device {c.device}{' (smoke)' if c.args.smoke else ''}; summary {c.out}; log {c.log}", flush=True)
    for name, group, fn in stages(c):
        if group and set(group.split()) <= skip:
            continue
        t0 = time.monotonic()
        try:
            rec = fn(c)
        except Exception as e:  # a broken stage must not stop the others
            rec = {"status": "error", "ok": False, "brief": f"{type(e).__name__}: {e}",
                   "traceback": tail(traceback.format_exc(), 30)}
        rec.setdefault("seconds", round(time.monotonic() - t0, 2))
        c.record(name, rec)
    c.summary["ok"] = all(st.get("ok") for st in c.summary["stages"].values())
    c.summary["seconds_total"] = round(c.deadline.elapsed(), 1)
    write_json(c.out, c.summary)
    print()
    print(format_table(c.summary), flush=True)
    return 0 if c.summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
