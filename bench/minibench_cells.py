"""Running one minibench cell (train, score, archive) and the grid's progress (``bench/minibench.py``).

A cell is ``configs/minibench/base.yaml`` + a method's overrides + a seed, trained as a ``dpda train``
subprocess (resumed from its last checkpoint when interrupted), scored on ``eval`` and ``ood_dev``, and
archived into ``docs/results/`` (:mod:`minibench_archive`). :func:`expected_left` and
:func:`progress_line` say what is left of a grid and the time it should take.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from dpda.config import apply_overrides, dump_yaml
from dpda.fileio import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minibench_archive import ArchiveError, CellStore, as_store, epoch_records, record_provenance  # noqa: E402
from minibench_report import SPLITS  # noqa: E402
from minibench_stats import split_manifest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


# glibc returns every freed buffer above 128 KiB to the kernel and page-faults it back
# in on the next step; for a CPU training loop that reallocates the same activations
# every step this cost more system time than the convolutions (measured: epoch 25 s ->
# 16 s, sys time 26 s -> 1.4 s). Keeping freed memory in the process avoids it.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}


def log(msg: str) -> None:
    """One line to stdout, written whole (cells running side by side log from their threads)."""
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------- one cell


def cell_config(base: Dict[str, Any], method: Dict[str, Any], seed: int, minibench: Path,
                extra: Sequence[str]) -> Dict[str, Any]:
    """The resolved config data of one grid cell."""
    data = copy.deepcopy(base)
    overrides = [f"{k}={json.dumps(v)}" for k, v in {**method.get("grid_set", {}), **method.get("set", {})}.items()]
    overrides += [f"seed={seed}", f"name=minibench_{method['name']}_seed{seed}"]
    for split in ("train", "dev"):
        overrides += [f"data.{split}.protocol={minibench / 'protocols' / f'minibench.{split}.txt'}",
                      f"data.{split}.root={minibench / 'flac' / split}"]
    apply_overrides(data, overrides + list(extra))
    return data


def _add_wall(run_dir: Path, key: str, seconds: float) -> None:
    path = run_dir / "bench_wall.json"
    walls = json.loads(path.read_text()) if path.exists() else {}
    walls[key] = walls.get(key, 0.0) + seconds
    atomic_write_text(path, json.dumps(walls))


#: ``dpda train --checkpoint-every`` of the cells (set by ``--checkpoint-every``)
CHECKPOINT_EVERY = 100

#: ``time.time()`` after which no cell starts training and a cell in training is stopped (its last checkpoint
#: kept, so the next sitting resumes it); None: no limit (set by ``--stop-after``)
DEADLINE: Optional[float] = None


class TimeLimitReached(RuntimeError):
    """The grid's ``--stop-after`` time is up; cells not finished resume from their checkpoints next time."""


def let_cells_be_interrupted() -> None:
    """Make the ``dpda train`` subprocesses started from now on stop at SIGINT (``KeyboardInterrupt``).

    A command started in the background by a non-interactive shell (``cmd &``) ignores SIGINT, and so
    would every process it starts: the grid's time limit could then only kill its cells. A Python
    handler instead of the ignore disposition becomes the default at ``exec``, so the cells take SIGINT
    again. Call from the main thread.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def wait_or_interrupt(proc: "subprocess.Popen[Any]", deadline: Optional[float], grace_s: float = 60.0) -> bool:
    """Wait for ``proc``; at ``deadline`` (``time.time()``) send it SIGINT (``dpda train`` finishes its step,
    writes a checkpoint there and exits with code 130) and kill it if it is still running ``grace_s`` seconds
    later. Returns whether it was interrupted (a process that ends by itself before the deadline was not)."""
    if deadline is None:
        proc.wait()
        return False
    try:
        proc.wait(timeout=max(deadline - time.time(), 0.0))
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return True


def pin_threads(threads: Optional[int], grid_name: str) -> None:
    """A grid's ``threads``: every cell trains (a ``dpda train`` subprocess, through the environment) and is
    scored with that many torch CPU threads. The thread count is part of the floating-point path (the same
    cell gives other numbers with 1 and 2 threads), so a grid that accumulates over sittings pins it."""
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, str(threads)) != str(threads):
            log(f"[{grid_name}] {var}={os.environ[var]} overridden by the grid's threads: {threads}")
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


class _NotStarted(Exception):
    """A task left out because an earlier one failed."""


def in_order(fn: Any, tasks: Sequence[tuple], jobs: int = 1) -> List[Any]:
    """``[fn(*t) for t in tasks]``, with up to ``jobs`` calls at a time (threads: each cell's training is its own
    ``dpda train`` process); results in the order of ``tasks``.

    As with one at a time, a failure ends the grid: once a call has failed no further call starts; the
    calls already running finish (a cell in training is not thrown away), then the failure of the earliest
    task (in the order of ``tasks``) is raised.
    """
    if jobs <= 1:
        return [fn(*t) for t in tasks]
    import threading
    from concurrent.futures import ThreadPoolExecutor, wait

    failed = threading.Event()

    def call(t: tuple) -> Any:
        if failed.is_set():
            raise _NotStarted()
        try:
            return fn(*t)
        except BaseException:
            failed.set()  # in this worker, before it takes the next task
            raise

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(call, t) for t in tasks]
        wait(futures)
    for f in futures:
        err = f.exception()
        if err is not None and not isinstance(err, _NotStarted):
            raise err
    return [f.result() for f in futures]


def is_trained(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` was trained to the end (its summary and final model are written)."""
    return (run_dir / "summary.json").exists() and (run_dir / "model.pt").exists()


def train_cell(cfg_path: Path, run_dir: Path) -> None:
    if is_trained(run_dir):
        return
    cmd = [sys.executable, "-m", "dpda", "train", "--no-progress", "--checkpoint-every", str(CHECKPOINT_EVERY)]
    if (run_dir / "checkpoints" / "last.pt").exists():
        log(f"  resuming {run_dir}")
        cmd += ["--resume", str(run_dir)]
    else:
        cmd += [str(cfg_path), "--run-dir", str(run_dir)]
    env = {**os.environ, **{k: v for k, v in MALLOC_ENV.items() if k not in os.environ}}
    t0 = time.time()
    with open(run_dir.parent / f"{run_dir.name}.log", "a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        interrupted = wait_or_interrupt(proc, DEADLINE)
    spent = time.time() - t0
    _add_wall(run_dir, "train", spent)
    if interrupted:
        raise TimeLimitReached(f"{run_dir}: training stopped at the time limit after {spent:.0f} s; "
                               f"it resumes from its last checkpoint")
    if proc.returncode != 0:
        raise SystemExit(f"training failed (exit {proc.returncode}); see {run_dir.parent / (run_dir.name + '.log')}")




def score_cell(run_dir: Path, minibench: Path) -> Dict[str, Any]:
    """Score ``eval`` and ``ood_dev`` with the run's model and evaluate them (a split already scored is only evaluated)."""
    from dpda.evaluation import evaluate_score_file
    from dpda.inference import score_and_evaluate

    out: Dict[str, Any] = {}
    for split in SPLITS:
        manifest = split_manifest(minibench, split)
        path = run_dir / "scores" / f"{split}.txt"
        if path.exists():
            report, _ = evaluate_score_file(manifest, path, fmt="asvspoof2019", breakdown=())
        else:  # scoring continues from its .partial file if an earlier attempt was interrupted
            path.parent.mkdir(exist_ok=True)
            t0 = time.time()
            _, report = score_and_evaluate(manifest, run_dir, path, fmt="asvspoof2019", breakdown=(), num_workers=0,
                                           batch_size=128, mode="full", device="cpu", progress=False)
            _add_wall(run_dir, "score", time.time() - t0)
        out[split] = {"eer": float(report["eer"]),
                      "per_attack": {k: float(v["eer"]) for k, v in report.get("per_attack", {}).items()}}
    return out


def _trained_config(store: CellStore, name: str, seed: int, cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The config the cell's run was trained with (its ``seed<k>.yaml``), else ``cfg``."""
    path = store.out / name / f"seed{seed}.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else cfg


def archive_cell(store: CellStore, name: str, seed: int, cfg: Dict[str, Any], minibench: Path) -> Optional[Path]:
    """Archive the finished run of a cell unless it is archived already (or there is no archive); returns where."""
    if store.archive is None or store.in_archive(name, seed):
        return None
    dest = store.archive_run(name, seed, cell_config=_trained_config(store, name, seed, cfg), minibench=minibench,
                             repo=REPO)
    log(f"  archived {name} seed {seed} in {dest}")
    return dest


def check_archived_config(store: CellStore, name: str, seed: int, cfg: Dict[str, Any], minibench: Path) -> None:
    """Stop when the archived cell was made with another config than this command would use."""
    diff = store.config_difference(name, seed, yaml.safe_load(dump_yaml(cfg)), minibench, REPO)
    if diff:
        shown = "; ".join(diff[:8]) + (f"; ... ({len(diff) - 8} more)" if len(diff) > 8 else "")
        raise ArchiveError(
            f"{store.archive_dir(name, seed)}: archived with another config than this command's ({shown}); for a "
            f"variant give another --out, or --retrain to train it into {store.out} and compare with the archive")


def run_cell(grid_name: str, method: Dict[str, Any], seed: int, base: Dict[str, Any], minibench: Path, out: Any,
             extra: Sequence[str]) -> Dict[str, Any]:
    """One finished cell's result: read (archived or in the run folder), else trained, scored and archived.

    ``out``: the :class:`CellStore` of the grid (or its run folder, without an archive).
    """
    store = as_store(out)
    name = method["name"]
    cell_dir = store.out / name
    run_dir = cell_dir / f"seed{seed}"
    result_path = run_dir / "result.json"
    cfg = cell_config(base, method, seed, minibench, extra)
    where = store.source(name, seed)
    if where == "archive":
        check_archived_config(store, name, seed, cfg, minibench)
        log(f"[{grid_name}] {name} seed {seed}: finished earlier, skipped (archived: {store.archive_dir(name, seed)})")
        return store.result(name, seed)
    if where == "runs":
        log(f"[{grid_name}] {name} seed {seed}: finished earlier, skipped")
        archive_cell(store, name, seed, cfg, minibench)
        return store.result(name, seed)
    if DEADLINE is not None and time.time() >= DEADLINE and not is_trained(run_dir):  # a trained cell is only scored
        raise TimeLimitReached(f"{name} seed {seed}: not started, the time limit is reached")
    log(f"[{grid_name}] {name} seed {seed}: training")
    cell_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(exist_ok=True)
    cfg_path = cell_dir / f"seed{seed}.yaml"
    cfg_path.write_text(dump_yaml(cfg))
    record_provenance(run_dir, REPO)  # commit and CPU when the cell starts (kept across resumes)
    train_cell(cfg_path, run_dir)
    log(f"[{grid_name}] {method['name']} seed {seed}: scoring eval and ood_dev")
    scores = score_cell(run_dir, minibench)
    summary = json.loads((run_dir / "summary.json").read_text())
    epochs = epoch_records(run_dir)
    walls = json.loads((run_dir / "bench_wall.json").read_text())
    if walls.get("train") is None:  # trained to the end by a run whose runner was stopped: no runner timing
        walls["train"] = sum(e.get("seconds") or 0.0 for e in epochs)
        log(f"  {run_dir}: its runner stopped before timing the training; train time = the sum of its epochs")
        atomic_write_text(run_dir / "bench_wall.json", json.dumps(walls))
    result = {
        "method": method["name"], "seed": seed, "mode": cfg["train"]["mode"],
        "eer": {s: scores[s]["eer"] for s in SPLITS},
        "per_attack": {s: scores[s]["per_attack"] for s in SPLITS},
        "epochs_run": len(epochs), "best_epoch": summary.get("best_epoch"), "stopped_early": summary.get("stopped_early"),
        "averaged_epochs": summary.get("averaged_epochs"),
        "final_dev_eer": summary.get("final_dev_eer"), "final_dev_loss": summary.get("final_dev_loss"),
        "per_epoch": [{k: e.get(k) for k in ("epoch", "dev_loss", "dev_eer", "train_loss", "conflict_rate", "mean_cos",
                                             "mean_norm_orig", "mean_norm_aug", "seconds", "clips_per_s", "steps")}
                      for e in epochs],
        "train_wall_s": walls.get("train"), "score_wall_s": walls.get("score", 0.0),
    }
    atomic_write_text(result_path, json.dumps(result, indent=1))
    log(f"[{grid_name}] {method['name']} seed {seed}: EER eval {result['eer']['eval']:.2f}%  "
        f"ood_dev {result['eer']['ood_dev']:.2f}%  best epoch {result['best_epoch']}/{result['epochs_run']}  "
        f"train {result['train_wall_s']:.0f} s")
    archive_cell(store, name, seed, cfg, minibench)
    return result


# ----------------------------------------------------------------------------- rerun against the archive


def agreement(store: CellStore, cells: Sequence[tuple]) -> List[Dict[str, Any]]:
    """The cells of ``cells`` ((seed, method) pairs) with an archived run and one in the run folder, side by side."""
    return [a for seed, m in cells for a in [store.agreement(m, seed)] if a is not None]












# ----------------------------------------------------------------------------- progress


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def cell_state(out: Any, method: str, seed: int) -> Dict[str, Any]:
    """``{"state": finished | partial | todo, "seconds": wall time measured so far, "where": ...}`` of one cell.

    ``where``: what holds the cell, ``archived``, ``runs`` (its run folder) or both; ``out`` is the
    :class:`CellStore` (or a run folder alone).
    """
    store = as_store(out)
    spent = store.seconds(method, seed)
    where = " + ".join(w for w, held in (("archived", store.in_archive(method, seed)),
                                          ("runs", store.in_runs(method, seed))) if held)
    if store.source(method, seed) is not None:
        return {"state": "finished", "seconds": spent, "where": where}
    return {"state": "partial" if store.started(method, seed) or spent > 0 else "todo", "seconds": spent,
            "where": where}


def expected_left(out: Any, cells: Sequence[tuple]) -> Dict[str, Any]:
    """What is left of ``cells`` ((seed, method name) pairs) and the time it should take.

    A cell left is expected to take the mean measured wall time (training + scoring) of the
    finished cells of its method, or of all finished cells when its method has none yet, minus
    what a partial cell has already spent (at least a tenth of the mean stays). ``seconds`` is None
    until some cell has finished. Archived cells count as finished, with their archived wall times.
    """
    store = as_store(out)
    states = {(seed, m): cell_state(store, m, seed) for seed, m in cells}
    per_method: Dict[str, List[float]] = {}
    for (seed, m), st in states.items():
        if st["state"] == "finished" and st["seconds"] > 0:
            per_method.setdefault(m, []).append(st["seconds"])
    every = [t for ts in per_method.values() for t in ts]
    left = [(seed, m) for (seed, m), st in states.items() if st["state"] != "finished"]
    seconds: Optional[float] = None
    if every:
        seconds = 0.0
        for seed, m in left:
            mean = statistics.fmean(per_method.get(m) or every)
            seconds += max(mean - states[(seed, m)]["seconds"], 0.1 * mean)
    return {"total": len(cells), "finished": len(cells) - len(left), "left": left,
            "partial": [c for c in left if states[c]["state"] == "partial"], "seconds": seconds,
            "per_method": {m: statistics.fmean(ts) for m, ts in per_method.items()}}


def progress_line(grid_name: str, todo: Dict[str, Any], jobs: int = 1) -> str:
    """One line: cells finished and left, and the time left. ``todo['seconds']`` is cell time (the sum
    over the cells left); with ``jobs`` cells at a time the wall time is about that divided by ``jobs``
    (the measured cell times already include the slowdown of sharing the machine, if they shared it)."""
    if todo["seconds"] is None:
        eta = "unknown until a cell has finished"
    elif jobs > 1:
        wall = todo["seconds"] / min(jobs, max(len(todo["left"]), 1))
        eta = (f"expected about {_fmt_duration(wall)} more with {jobs} cells at a time "
               f"({_fmt_duration(todo['seconds'])} of cell time, from the measured times of finished cells)")
    else:
        eta = f"expected about {_fmt_duration(todo['seconds'])} more (from the measured times of finished cells)"
    partial = f", {len(todo['partial'])} partly done" if todo["partial"] else ""
    return f"[{grid_name}] {todo['finished']}/{todo['total']} cells finished, {len(todo['left'])} left{partial}; {eta}"
