"""The minibench comparison grid: does gradient alignment help on real audio?

Runs every (method, seed) cell of ``configs/minibench/grid.yaml`` — each one is
``configs/minibench/base.yaml`` plus the method's overrides and the seed —
as a ``dpda train`` subprocess, scores the ``eval`` and ``ood_dev`` splits
with the final model (whole utterances: mean logit over 2-s windows), and
collects one table.

Resumable at every level, and across checkouts: a cell that is archived (see
below) or has ``result.json`` in its run folder is finished and skipped; a cell whose
training was interrupted continues with ``dpda train --resume`` from its last
checkpoint (``--checkpoint-every`` steps, default 100, and every epoch end);
scoring continues from its ``.partial`` file. Rerunning the same command after
an interruption therefore finishes the grid without redoing finished work.
Before the first cell and after every cell it trains, it prints how many cells
are finished, partly done and left, and the time the rest should take (each
cell left: the mean measured wall time of its method's finished cells, or of
all finished cells); ``--status`` prints only that, per cell.

Statistics (:mod:`dpda.evaluation.paired`): every method against the grid's
baseline, paired by seed, per split and per attack: the difference per seed,
its mean with a hierarchical bootstrap interval (seeds, then bona fide and
spoof test trials drawn from the score files), a Student-t interval over the
seeds, a verdict sentence, and the number of seeds a 5 % relative difference
would need. The forest plot ``<prefix>paired.png`` shows the intervals.

A grid file (``configs/minibench/grid*.yaml``) names the ``seeds``, the ``baseline`` and the
``methods`` (``{name, label, set: {KEY: VALUE}}``); optionally ``set`` (overrides for every method,
under each method's own), ``out`` (its run folder, relative to the repository, when ``--out`` is not
given) and ``tuned`` (rows chosen on dev among candidate methods: ``{name, label, candidates: [...],
by: final_dev_eer}``; the candidate with the lowest mean dev metric over seeds is reported under
that name; the test splits play no part in the choice).

Layout under ``--out`` (default: the grid's ``out``, else ``runs/minibench``; not tracked)::

    OUT/<method>/seed<k>.yaml          the cell's config (base + overrides)
    OUT/<method>/seed<k>/              the dpda run directory (config.yaml, metrics.jsonl, model.pt, ...)
    OUT/<method>/seed<k>/scores/eval.txt, ood_dev.txt   per-utterance scores (``dpda evaluate`` input)
    OUT/<method>/seed<k>/result.json   what the table is built from
    OUT/results.json, OUT/results.md   the collected table (results_<section>.* for --section)

The results archive (``--archive``, default ``docs/results``; tracked): every cell is archived as
soon as it finishes, into ``ARCHIVE/<name of OUT>/<method>/seed<k>/`` (``cell.json`` and the gzipped
score files; the layout is in ``bench/minibench_archive.py``). The tables, plots and paired
statistics read an archived cell from there, so a fresh clone rebuilds them without ``runs/`` and
without training. An archived cell whose config (base + overrides + ``--set``) differs from the
command's stops the command, naming the settings. ``--retrain`` ignores the archive: the cells are
trained again into OUT, the tables are built from those runs, and every cell that has both says
whether the rerun agrees with the archived run (EERs, best epoch; the CPU of each); the report file
is then left alone unless ``--report`` is given. ``--archive-only`` archives the finished runs of
OUT that are not archived yet and trains nothing.

With ``--report docs/RESULTS.md`` (the default) the generated part of that file
(between ``<!-- minibench:begin -->`` and ``<!-- minibench:end -->``) is
replaced by the table that this command also prints, and the plots are written
to ``docs/figures/``; the text around the markers is left alone. A grid file's
``section`` (or ``--section NAME``) writes it into its own
``<!-- minibench:NAME:begin/end -->`` part instead. ``--all`` runs every grid of
:data:`ALL_GRIDS` into its section, then the conflict study's section;
``--no-train`` trains nothing and builds the tables over the seeds that every
method has finished. A grid's ``threads`` pins the torch threads of its cells.

Usage (from the repository root, ``../shared/minibench`` beside it)::

    .venv/bin/python bench/minibench.py                  # the main grid (about 1.5 hours, one thread per cell)
    .venv/bin/python bench/minibench.py --all --no-train # every section of docs/RESULTS.md from the archive
    .venv/bin/python bench/minibench.py --seeds 1 --methods dual pcgrad --set train.epochs=2
    .venv/bin/python bench/minibench.py --grid configs/minibench/grid_converge.yaml --status
    .venv/bin/python bench/minibench.py --retrain --seeds 1      # rerun seed 1, compare with the archive
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import yaml

from dpda.config import apply_overrides, dump_yaml
from dpda.fileio import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minibench_archive import ArchiveError, CellStore, epoch_records, record_provenance  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SPLITS = ("eval", "ood_dev")
BEGIN, END = "<!-- minibench:begin -->", "<!-- minibench:end -->"


def markers(section: str) -> tuple:
    """The begin / end markers of a generated section of the report ("main": the grid's own)."""
    if section == "main":
        return BEGIN, END
    return f"<!-- minibench:{section}:begin -->", f"<!-- minibench:{section}:end -->"


def figure_prefix(section: str) -> str:
    return "minibench_" if section == "main" else f"minibench_{section}_"

# glibc returns every freed buffer above 128 KiB to the kernel and page-faults it back
# in on the next step; for a CPU training loop that reallocates the same activations
# every step this cost more system time than the convolutions (measured: epoch 25 s ->
# 16 s, sys time 26 s -> 1.4 s). Keeping freed memory in the process avoids it.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- grid


def load_grid(path: Path) -> Dict[str, Any]:
    grid = yaml.safe_load(path.read_text())
    if not isinstance(grid, dict) or not isinstance(grid.get("methods"), list) or not grid["methods"]:
        raise SystemExit(f"{path}: expected a mapping with a non-empty 'methods' list")
    names = set()
    for i, m in enumerate(grid["methods"]):
        if not isinstance(m, dict) or "name" not in m or not isinstance(m.get("set", {}), dict):
            raise SystemExit(f"{path}: methods[{i}]: expected {{name, label, set: {{KEY: VALUE}}}}")
        if m["name"] in names:
            raise SystemExit(f"{path}: methods[{i}]: duplicate name {m['name']!r}")
        names.add(m["name"])
    if grid.get("baseline") not in names:
        raise SystemExit(f"{path}: baseline {grid.get('baseline')!r} is not one of the methods")
    if not isinstance(grid.get("set", {}), dict):
        raise SystemExit(f"{path}: 'set' (overrides for every method) must be a mapping KEY: VALUE")
    if not isinstance(grid.get("section", "main"), str) or not grid.get("section", "main"):
        raise SystemExit(f"{path}: section: expected the name of its section of the report, got {grid.get('section')!r}")
    threads = grid.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise SystemExit(f"{path}: threads: expected a positive integer (torch CPU threads of every cell), "
                         f"got {threads!r}")
    for m in grid["methods"]:  # the grid's own overrides come first, each method's on top
        m["grid_set"] = dict(grid.get("set") or {})
    for i, t in enumerate(grid.get("tuned") or []):
        where = f"{path}: tuned[{i}]"
        if not isinstance(t, dict) or "name" not in t or not isinstance(t.get("candidates"), list) or not t["candidates"]:
            raise SystemExit(f"{where}: expected {{name, label, candidates: [METHOD, ...], by: final_dev_eer}}")
        if t["name"] in names:
            raise SystemExit(f"{where}: name {t['name']!r} is already taken")
        missing = [c for c in t["candidates"] if c not in names]
        if missing:
            raise SystemExit(f"{where}: candidates {missing} are not methods of the grid")
        if t.get("by", "final_dev_eer") not in TUNE_BY:
            raise SystemExit(f"{where}: by must be one of {TUNE_BY}, got {t.get('by')!r}")
        names.add(t["name"])
    return grid


#: what a tuned row is chosen by (lower is better; the mean over seeds; dev split only, never the test splits)
TUNE_BY = ("final_dev_eer", "final_dev_loss")


def as_store(out: Any) -> CellStore:
    """``out`` itself when it is a :class:`CellStore`, else a store of the run folder ``out`` alone (no archive)."""
    return out if isinstance(out, CellStore) else CellStore(Path(out))


def add_tuned(grid: Dict[str, Any], results: Dict[str, List[Dict[str, Any]]], out: Any) -> List[Dict[str, Any]]:
    """Rows chosen on dev among candidate methods (``tuned:`` in the grid): added to ``results``; returns their methods.

    A tuned row is the candidate with the lowest mean dev metric over the seeds that every
    candidate has finished; its test numbers are that candidate's, on those seeds. ``out``: the
    :class:`CellStore` (or run folder) the results came from.
    """
    store = as_store(out)
    added = []
    for t in grid.get("tuned") or []:
        by = t.get("by", "final_dev_eer")
        runs = {c: {r["seed"]: r for r in results.get(c, [])} for c in t["candidates"]}
        seeds = sorted(set.intersection(*(set(v) for v in runs.values())))
        if not seeds:
            continue
        score = {}
        for c in t["candidates"]:
            values = [store.dev_metric(runs[c][s], by) for s in seeds]
            if any(v is None for v in values):
                break
            score[c] = statistics.fmean(values)
        else:
            best = min(score, key=lambda c: (score[c], t["candidates"].index(c)))
            results[t["name"]] = [{**runs[best][s], "method": t["name"], "tuned_from": best} for s in seeds]
            label = next((m.get("label", m["name"]) for m in grid["methods"] if m["name"] == best), best)
            added.append({"name": t["name"], "label": f"{t.get('label', t['name'])}: {label}", "tuned_from": best,
                          "tuned_by": {c: score[c] for c in t["candidates"]}, "by": by})
            log(f"tuned {t['name']}: {best} (mean {by} over seeds {seeds}: "
                + ", ".join(f"{c} {v:.3f}" for c, v in score.items()) + ")")
    return added


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


# ----------------------------------------------------------------------------- one cell


def _add_wall(run_dir: Path, key: str, seconds: float) -> None:
    path = run_dir / "bench_wall.json"
    walls = json.loads(path.read_text()) if path.exists() else {}
    walls[key] = walls.get(key, 0.0) + seconds
    atomic_write_text(path, json.dumps(walls))


#: ``dpda train --checkpoint-every`` of the cells (set by ``--checkpoint-every``)
CHECKPOINT_EVERY = 100


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


def in_order(fn: Any, tasks: Sequence[tuple], jobs: int = 1) -> List[Any]:
    """``[fn(*t) for t in tasks]``, with up to ``jobs`` calls at a time (threads: each cell's training is its own
    ``dpda train`` process); results in the order of ``tasks``, the first failure raised."""
    if jobs <= 1:
        return [fn(*t) for t in tasks]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda t: fn(*t), tasks))


def train_cell(cfg_path: Path, run_dir: Path) -> None:
    if (run_dir / "summary.json").exists() and (run_dir / "model.pt").exists():
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
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    _add_wall(run_dir, "train", time.time() - t0)
    if proc.returncode != 0:
        raise SystemExit(f"training failed (exit {proc.returncode}); see {run_dir.parent / (run_dir.name + '.log')}")


def split_manifest(minibench: Path, split: str):
    from dpda.data import load_manifest

    return load_manifest("asvspoof2019", minibench / "protocols" / f"minibench.{split}.txt",
                         root=minibench / "flac" / split)


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


# ----------------------------------------------------------------------------- paired statistics


def _split_key(minibench: Path, split: str) -> Dict[str, Any]:
    """The split's trials in key order: the manifest, labels and attacks (for aligning score files)."""
    manifest = split_manifest(minibench, split)
    labels = np.array([u.label for u in manifest.utterances], dtype=object)
    attacks = np.array([u.attack or "" for u in manifest.utterances], dtype=object)
    return {"manifest": manifest, "bona": labels == "bonafide", "spoof": labels == "spoof", "attacks": attacks}


def _run_scores(out: Any, method: str, seed: int, split: str, key: Dict[str, Any]) -> Optional[np.ndarray]:
    """A run's scores of ``split`` (archived, else its score file) aligned with the key (None when it has none)."""
    from dpda.evaluation import join_scores

    got = as_store(out).scores(method, seed, split)
    if got is None:
        return None
    scores, path = got
    return join_scores(key["manifest"], scores, scores_path=path).scores


def paired_stats(grid: Dict[str, Any], results: Dict[str, List[Dict[str, Any]]], out: Any, minibench: Path,
                 n_boot: int = 2000, n_boot_attack: int = 1000, boot_seed: int = 0) -> Dict[str, Any]:
    """Every method against the baseline, per split and per attack: :func:`dpda.evaluation.paired.compare`.

    Paired over the seeds both have; from the score files (hierarchical bootstrap over seeds and test
    trials) when every run has them, else from the per-seed EERs (a bootstrap over seeds only, flagged).
    ``out``: the :class:`CellStore` (or run folder) the score files are read from.
    """
    from dpda.evaluation.paired import Trials, compare, compare_eers

    base = grid["baseline"]
    by_seed = {m: {r["seed"]: r for r in rs} for m, rs in results.items()}
    stats: Dict[str, Any] = {"baseline": base, "n_boot": n_boot, "n_boot_attack": n_boot_attack, "boot_seed": boot_seed,
                             "splits": {}}
    if not by_seed.get(base):
        return stats
    for split in SPLITS:
        key = _split_key(minibench, split)
        attacks = sorted({a for a in key["attacks"][key["spoof"]] if a})
        entry: Dict[str, Any] = {"n_bona": int(key["bona"].sum()), "n_spoof": int(key["spoof"].sum()),
                                 "attack_spoofs": {a: int(((key["attacks"] == a) & key["spoof"]).sum()) for a in attacks},
                                 "methods": {}}
        for m in grid["methods"]:
            name = m["name"]
            if name == base or not by_seed.get(name):
                continue
            seeds = sorted(set(by_seed[name]) & set(by_seed[base]))
            if not seeds:
                continue
            names = (name, base)
            # a tuned row's runs live in the folder of the candidate it was tuned to
            scores = {(who, s): _run_scores(out, by_seed[who][s].get("tuned_from", who), s, split, key)
                      for who in names for s in seeds}
            if all(v is not None for v in scores.values()):
                def trials(who, mask):
                    return {s: Trials.of(scores[(who, s)][key["bona"]], scores[(who, s)][mask]) for s in seeds}

                pooled = compare(trials(name, key["spoof"]), trials(base, key["spoof"]), names=names, n_boot=n_boot,
                                 seed=boot_seed)
                per_attack = {}
                for a in attacks:
                    mask = key["spoof"] & (key["attacks"] == a)
                    per_attack[a] = compare(trials(name, mask), trials(base, mask), names=names,
                                            n_boot=n_boot_attack, seed=boot_seed).as_dict()
            else:
                pooled = compare_eers({s: by_seed[name][s]["eer"][split] for s in seeds},
                                      {s: by_seed[base][s]["eer"][split] for s in seeds}, names=names, n_boot=n_boot,
                                      seed=boot_seed)
                per_attack = {}
            entry["methods"][name] = {"pooled": pooled.as_dict(), "per_attack": per_attack}
        stats["splits"][split] = entry
    return stats


# ----------------------------------------------------------------------------- table


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "–"
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.2f} ± {s:.2f}"


def _conflict(results: List[Dict[str, Any]], which: str) -> Optional[float]:
    """Mean over seeds of the conflict rate over all steps / in the first / in the last epoch (percent)."""
    vals = []
    for r in results:
        eps = [e for e in r["per_epoch"] if e.get("conflict_rate") is not None]
        if r.get("mode") == "single" or not eps:  # one path: nothing to conflict with
            return None
        if which == "overall":
            steps = [e.get("steps") or 1 for e in eps]
            vals.append(sum(e["conflict_rate"] * n for e, n in zip(eps, steps)) / sum(steps))
        else:
            vals.append((eps[0] if which == "first" else eps[-1])["conflict_rate"])
    return 100.0 * statistics.fmean(vals)


def summarize(grid: Dict[str, Any], results: Dict[str, List[Dict[str, Any]]]) -> Dict[str, Any]:
    base = results.get(grid["baseline"], [])
    rows = []
    for m in grid["methods"]:
        rs = results.get(m["name"], [])
        if not rs:
            continue
        row: Dict[str, Any] = {"method": m["name"], "label": m.get("label", m["name"]), "seeds": [r["seed"] for r in rs]}
        for s in SPLITS:
            vals = [r["eer"][s] for r in rs]
            row[f"{s}_eer"] = vals
            row[f"{s}_mean"] = statistics.fmean(vals)
            row[f"{s}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
            attacks = sorted({a for r in rs for a in r.get("per_attack", {}).get(s, {})})
            row[f"{s}_per_attack"] = {a: statistics.fmean(r["per_attack"][s][a] for r in rs) for a in attacks
                                      if all(a in r.get("per_attack", {}).get(s, {}) for r in rs)}
            if base:
                b = statistics.fmean(r["eer"][s] for r in base)
                row[f"{s}_rel"] = 100.0 * (row[f"{s}_mean"] - b) / b if b else math.nan
        row["best_epoch"] = [r["best_epoch"] for r in rs]
        row["epochs_run"] = [r["epochs_run"] for r in rs]
        for which in ("overall", "first", "last"):
            row[f"conflict_{which}"] = _conflict(rs, which)
        row["s_per_epoch"] = statistics.fmean(e["seconds"] for r in rs for e in r["per_epoch"])
        row["total_s"] = statistics.fmean(r["train_wall_s"] + r["score_wall_s"] for r in rs)
        row["clips_per_s"] = statistics.fmean(e["clips_per_s"] for r in rs for e in r["per_epoch"])
        rows.append(row)
    return {"baseline": grid["baseline"], "rows": rows}


def _fmt(v: Optional[float], spec: str = ".1f", suffix: str = "") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:{spec}}{suffix}"


def _ci(lo: float, hi: float, spec: str = "+.2f") -> str:
    return f"[{lo:{spec}}, {hi:{spec}}]"


def stats_markdown(stats: Dict[str, Any], labels: Dict[str, str], figures: Optional[str],
                   prefix: str = "minibench_") -> List[str]:
    """The paired-comparison tables: per split and method, then per attack."""
    base = stats["baseline"]
    splits = stats.get("splits", {})
    if not any(e["methods"] for e in splits.values()):
        return []
    some = next(c["pooled"] for e in splits.values() for c in e["methods"].values())
    pct = f"{round(100 * some['level'])} %"
    lines = ["", f"### Paired differences against {labels.get(base, base)} (method − baseline, EER points; "
             f"{pct} intervals)", "",
             "| method | split | per seed | mean | bootstrap CI | relative | seed-t CI | verdict | seeds for ±5 % |",
             "|---|---|---|---:|---|---|---|---|---:|"]
    sentences = []
    for split, entry in splits.items():
        for name, c in entry["methods"].items():
            p = c["pooled"]
            t_ci = _ci(*p["t_ci"]) if p["t_ci"] else "–"
            verdict = {"better": "**better**", "worse": "**worse**"}.get(p["direction"], "not resolved")
            lines.append("| " + " | ".join([
                labels.get(name, name), split, " / ".join(f"{d:+.2f}" for d in p["diff"]), f"{p['mean_diff']:+.2f}",
                _ci(*p["ci"]), f"{p['rel']:+.1f} % {_ci(*p['rel_ci'], '+.1f')}", t_ci, verdict,
                str(p["seeds_needed"]) if p["seeds_needed"] is not None else "–"]) + " |")
            from dpda.evaluation.paired import PairedComparison, power_sentence

            sentences.append(f"* **{labels.get(name, name)}, {split}**: {p['sentence']}. Power: "
                             f"{power_sentence(PairedComparison(**p))}.")
    trials = {p["trials"] for e in splits.values() for c in e["methods"].values() for p in [c["pooled"]]}
    lines += ["", f"Per seed: the method's EER minus the baseline's with the same seed, on the same test trials. "
              f"Bootstrap CI: percentile interval of {some['n_boot']} replicates (generator seed "
              f"{stats.get('boot_seed', 0)}); each replicate draws the seeds with replacement, then the bona fide and "
              "the spoof trials with replacement, separately (the EER is a rank statistic of the two classes), once "
              "for all seeds and both methods, since every run is scored on the same test set. Seed-t CI: Student-t "
              "interval of the per-seed differences (the seed-only view; with few seeds the bootstrap over seeds is "
              "optimistic). A difference is called better / worse only when both intervals exclude 0. Seeds for "
              "±5 %: seeds per method for a two-sided test at 5 % with 80 % power to detect a 5 % relative "
              "difference, from the observed seed-to-seed SD of the paired differences plus the test set's own "
              "sampling error (– : not reachable by adding seeds, or unknown)."]
    if "none" in trials:
        lines.append("Rows without score files were compared on their per-seed EERs only (a bootstrap over seeds; "
                     "the test set's sampling error is then not in the interval).")
    lines += [""] + sentences
    for split, entry in splits.items():
        attacks = list(entry["attack_spoofs"])
        if not attacks or not any(c["per_attack"] for c in entry["methods"].values()):
            continue
        lines += ["", f"### {split}: paired difference per attack against {labels.get(base, base)} (EER points, "
                  f"{pct} bootstrap interval; all {entry['n_bona']} bona fide trials against each attack's spoofs, "
                  "spoof trials in brackets)", "",
                  "| method | " + " | ".join(f"{a} ({entry['attack_spoofs'][a]})" for a in attacks) + " |",
                  "|---|" + "---|" * len(attacks)]
        for name, c in entry["methods"].items():
            cells = []
            for a in attacks:
                q = c["per_attack"].get(a)
                if q is None:
                    cells.append("–")
                    continue
                text = f"{q['mean_diff']:+.2f} {_ci(*q['ci'], '+.1f')}"
                cells.append(f"**{text}**" if q["resolved"] else text)
            lines.append("| " + " | ".join([labels.get(name, name)] + cells) + " |")
    if figures:
        lines += ["", "Bold: resolved (both intervals exclude 0; the seed-t interval is not shown here).", "",
                  f"![paired differences with intervals]({figures}/{prefix}paired.png)"]
    return lines


def markdown(summary: Dict[str, Any], figures: Optional[str], prefix: str = "minibench_",
             stats: Optional[Dict[str, Any]] = None) -> str:
    rows, base = summary["rows"], summary["baseline"]
    lines = ["### EER (%) — mean ± std over seeds, then per seed", "",
             f"| method | eval EER | eval per seed | rel. vs {base} | ood_dev EER | ood_dev per seed | rel. vs {base} |",
             "|---|---:|---|---:|---:|---|---:|"]
    for r in rows:
        cells = [r["label"]]
        for s in SPLITS:
            cells += [f"{r[f'{s}_mean']:.2f} ± {r[f'{s}_std']:.2f}", " / ".join(f"{v:.2f}" for v in r[f"{s}_eer"]),
                      "–" if r["method"] == base else _fmt(r.get(f"{s}_rel"), "+.1f", " %")]
        lines.append("| " + " | ".join(cells) + " |")
    if stats:
        lines += stats_markdown(stats, {r["method"]: r["label"] for r in rows}, figures, prefix)
    for s in SPLITS:
        attacks = sorted({a for r in rows for a in r.get(f"{s}_per_attack", {})})
        if not attacks:
            continue
        counts = (stats or {}).get("splits", {}).get(s, {}).get("attack_spoofs", {})
        n_bona = (stats or {}).get("splits", {}).get(s, {}).get("n_bona")
        what = f"all {n_bona} bona fide" if n_bona else "all bona fide"
        lines += ["", f"### {s}: EER (%) per attack, mean over seeds ({what} against that attack's spoofs"
                  + (", spoof trials in brackets)" if counts else ")"), "",
                  "| method | " + " | ".join(f"{a} ({counts[a]})" if a in counts else a for a in attacks) + " |",
                  "|---|" + "---:|" * len(attacks)]
        for r in rows:
            lines.append("| " + " | ".join([r["label"]] + [_fmt(r[f"{s}_per_attack"].get(a), ".2f") for a in attacks]) + " |")
    lines += ["", "### Training: convergence, conflicts, cost", "",
              "| method | best dev-loss epoch (per seed) | epochs run | conflict rate overall | first epoch | last epoch "
              "| s / epoch | clips / s | total s / run |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append("| " + " | ".join([
            r["label"], " / ".join(str(e) for e in r["best_epoch"]), " / ".join(str(e) for e in r["epochs_run"]),
            _fmt(r["conflict_overall"], ".1f", " %"), _fmt(r["conflict_first"], ".1f", " %"),
            _fmt(r["conflict_last"], ".1f", " %"), f"{r['s_per_epoch']:.1f}", f"{r['clips_per_s']:.1f}",
            f"{r['total_s']:.0f}"]) + " |")
    lines += ["", "Seeds: " + ", ".join(str(s) for s in rows[0]["seeds"]) + ". Conflict rate: share of steps whose two "
              "path gradients have a negative dot product (mean over seeds; `single` has one path). s / epoch: "
              "training time of an epoch (validation excluded). clips / s: training utterances per second (each is "
              "processed once per path). Total: training + scoring wall time of one run."]
    if figures:
        lines += ["", f"![conflict rate per epoch]({figures}/{prefix}conflict_rate.png)",
                  f"![dev loss per epoch]({figures}/{prefix}dev_loss.png)",
                  f"![per-path gradient norms]({figures}/{prefix}grad_norms.png)"]
    return "\n".join(lines) + "\n"


def agreement(store: CellStore, cells: Sequence[tuple]) -> List[Dict[str, Any]]:
    """The cells of ``cells`` ((seed, method) pairs) with an archived run and one in the run folder, side by side."""
    return [a for seed, m in cells for a in [store.agreement(m, seed)] if a is not None]


def _eers(r: Dict[str, Any]) -> str:
    return (f"{r['eer']['eval']:.2f} / {r['eer']['ood_dev']:.2f}, best epoch {r['best_epoch']} of "
            f"{r['epochs_run']}")


def agreement_markdown(rows: Sequence[Dict[str, Any]], archive: Path) -> str:
    """The rerun-against-archive table: eval / ood_dev EER and best epoch of each, and the CPUs they ran on."""
    same = sum(r["identical"] for r in rows)
    shown = os.path.relpath(archive, REPO) if archive.is_relative_to(REPO) else str(archive)
    lines = [f"### Reruns against the archive (`{shown}`)", "",
             f"{len(rows)} cell(s) have both; {same} identical (EERs, best epoch, epochs run), "
             f"{len(rows) - same} differ.", "",
             "| cell | archived: eval / ood_dev EER (%) | rerun: eval / ood_dev EER (%) | eval difference | agree "
             "| archived on | rerun on |",
             "|---|---|---|---:|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join([
            f"{r['method']} seed {r['seed']}", _eers(r["archived"]), _eers(r["runs"]), f"{r['eval_diff']:+.2f}",
            "identical" if r["identical"] else "**differs**", r["archived_cpu"] or "?", r["runs_cpu"] or "?"]) + " |")
    return "\n".join(lines) + "\n"


def plot(grid: Dict[str, Any], results: Dict[str, List[Dict[str, Any]]], out_dir: Path, prefix: str = "minibench_") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out_dir.mkdir(parents=True, exist_ok=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = [m for m in grid["methods"] if results.get(m["name"])]

    def per_method(ax, key, scale=1.0, skip_single=False):
        for i, m in enumerate(methods):
            rs = results[m["name"]]
            if skip_single and all(r.get("mode") == "single" for r in rs):
                continue
            for j, r in enumerate(rs):
                xs = [e["epoch"] for e in r["per_epoch"] if e.get(key) is not None]
                ys = [scale * e[key] for e in r["per_epoch"] if e.get(key) is not None]
                ax.plot(xs, ys, "-", color=colors[i % len(colors)], alpha=0.85, marker=".",
                        label=m.get("label", m["name"]) if j == 0 else None)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    fig, ax = plt.subplots(figsize=(7, 4))
    per_method(ax, "conflict_rate", 100.0, skip_single=True)
    ax.set(xlabel="epoch", ylabel="conflicting steps (%)", title="Conflict rate per epoch (one line per seed)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / f"{prefix}conflict_rate.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    per_method(ax, "dev_loss")
    ax.set(xlabel="epoch", ylabel="dev loss (CE)", title="Dev loss per epoch (one line per seed)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / f"{prefix}dev_loss.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, name in ((axes[0], "mean_norm_orig", "recorded path"), (axes[1], "mean_norm_aug", "augmented path")):
        per_method(ax, key, skip_single=True)
        ax.set(xlabel="epoch", title=f"Gradient norm, {name}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean L2 norm of the path's gradient")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / f"{prefix}grad_norms.png", dpi=110)
    plt.close(fig)


def plot_paired(stats: Dict[str, Any], labels: Dict[str, str], out_dir: Path, prefix: str = "minibench_") -> Optional[Path]:
    """Forest plot: per split, each method's mean paired difference with its bootstrap and seed-t intervals."""
    splits = {k: e for k, e in stats.get("splits", {}).items() if e["methods"]}
    if not splits:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(next(iter(splits.values()))["methods"])
    fig, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 0.7 * len(names) + 1.8), sharey=True,
                             squeeze=False)
    for ax, (split, entry) in zip(axes[0], splits.items()):
        for i, name in enumerate(names):
            p = entry["methods"].get(name, {}).get("pooled")
            if p is None:
                continue
            y = len(names) - 1 - i
            color = {"better": "tab:green", "worse": "tab:red"}.get(p["direction"], "tab:gray")
            if p["t_ci"]:
                ax.plot(p["t_ci"], [y - 0.18] * 2, "-", color=color, lw=1, alpha=0.7)
            ax.plot(p["ci"], [y, y], "-", color=color, lw=4, alpha=0.8, solid_capstyle="butt")
            ax.plot([p["mean_diff"]], [y], "o", color="black", ms=6, zorder=3)
            ax.plot(p["diff"], [y + 0.2] * len(p["diff"]), "x", color=color, ms=5)
            band = p["target_rel"] * float(np.mean(p["baseline_eer"]))
        ax.axvline(0, color="black", lw=0.8)
        ax.axvspan(-band, band, color="gold", alpha=0.2, lw=0)
        ax.set_yticks(range(len(names)), [labels.get(n, n) for n in reversed(names)])
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.set(xlabel=f"EER difference against {labels.get(stats['baseline'], stats['baseline'])} (points)",
               title=f"{split}")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Paired differences: mean (dot), bootstrap CI (thick), seed-t CI (thin), seeds (x); "
                 "band: ±5 % relative", fontsize=9)
    fig.tight_layout()
    path = out_dir / f"{prefix}paired.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(report: Path, table: str, section: str = "main") -> None:
    begin, end = markers(section)
    block = f"{begin}\n<!-- generated by bench/minibench.py; do not edit by hand -->\n\n{table}\n{end}"
    if report.exists():
        text = report.read_text()
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = head + block + rest.split(end, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = "# Results\n\n" + block + "\n"
    atomic_write_text(report, text)


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


def progress_line(grid_name: str, todo: Dict[str, Any]) -> str:
    eta = ("unknown until a cell has finished" if todo["seconds"] is None
           else f"expected about {_fmt_duration(todo['seconds'])} more (from the measured times of finished cells)")
    partial = f", {len(todo['partial'])} partly done" if todo["partial"] else ""
    return f"[{grid_name}] {todo['finished']}/{todo['total']} cells finished, {len(todo['left'])} left{partial}; {eta}"


# ----------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Run the minibench grid (resumable) and collect the results table.")
    p.add_argument("--minibench", type=Path, default=REPO.parent / "shared" / "minibench", help="the minibench folder")
    p.add_argument("--out", type=Path, default=None,
                   help="where runs, scores and results go (default: the grid's 'out', else runs/minibench)")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "minibench" / "base.yaml")
    p.add_argument("--grid", type=Path, default=REPO / "configs" / "minibench" / "grid.yaml")
    p.add_argument("--seeds", type=int, nargs="+", help="subset of the grid's seeds")
    p.add_argument("--methods", nargs="+", help="subset of the grid's methods")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every cell (repeatable)")
    p.add_argument("--report", type=Path, default=None,
                   help="markdown file whose generated section gets the table ('-': none; default docs/RESULTS.md, "
                        "with --retrain none)")
    p.add_argument("--section", default=None,
                   help="which generated section of REPORT to replace (default: the grid's 'section', else main; another "
                        "name adds or replaces <!-- minibench:NAME:begin/end --> and prefixes the plots with "
                        "minibench_NAME_)")
    p.add_argument("--all", action="store_true",
                   help=f"every grid ({', '.join(ALL_GRIDS)}) in turn, each into its section, then the conflict "
                        "study's section (bench/conflict_study.py --report-only): what docs/RESULTS.md is built from")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train up to N cells at the same time (each a dpda train process with the grid's threads; "
                        "default 1)")
    p.add_argument("--no-train", action="store_true",
                   help="train nothing: build the tables from the finished cells, over the seeds that every method "
                        "has finished")
    p.add_argument("--figures", type=Path, default=None, help="where the PNG plots go (default: REPORT's folder/figures)")
    p.add_argument("--status", action="store_true",
                   help="only say which cells are finished, partly done or to do, and the time expected; run nothing")
    p.add_argument("--boot", type=int, default=2000, metavar="N",
                   help="bootstrap replicates of the paired intervals (per-attack intervals use half; default 2000)")
    p.add_argument("--no-stats", action="store_true", help="leave out the paired statistics (faster tables)")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="STEPS",
                   help="checkpoint training every STEPS steps inside an epoch, so that an interrupted cell "
                        "resumes close to where it stopped (default 100)")
    p.add_argument("--archive", type=Path, default=REPO / "docs" / "results", metavar="DIR",
                   help="the results archive (tracked): finished cells go to DIR/<name of OUT>/<method>/seed<k>/ and "
                        "are read from there (default docs/results; '-': none, the run folder alone)")
    p.add_argument("--retrain", action="store_true",
                   help="train every cell into OUT even if archived (reproduction), build the tables from those runs "
                        "and say for each cell whether the rerun agrees with the archived run; the archive is kept")
    p.add_argument("--archive-only", action="store_true",
                   help="archive the finished runs in OUT that are not archived yet; train nothing")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs: expected a positive number of cells at a time, got {args.jobs}")
    if args.all:
        return run_all(args, argv)
    if args.report is None:
        args.report = Path("-") if args.retrain else REPO / "docs" / "RESULTS.md"
    if argv is None and any(k not in os.environ for k in MALLOC_ENV):
        # the allocator settings must be in place before the process starts (scoring runs in this process)
        os.execve(sys.executable, [sys.executable, *sys.argv], {**MALLOC_ENV, **os.environ})

    minibench = args.minibench.resolve()
    for split in ("train", "dev", *SPLITS):
        if not (minibench / "protocols" / f"minibench.{split}.txt").is_file():
            raise SystemExit(f"{minibench}: no protocols/minibench.{split}.txt; give --minibench DIR")
    grid = load_grid(args.grid)
    args.section = args.section or grid.get("section", "main")
    base = yaml.safe_load(args.config.read_text())
    seeds = args.seeds or grid["seeds"]
    methods = [m for m in grid["methods"] if not args.methods or m["name"] in args.methods]
    unknown = set(args.methods or []) - {m["name"] for m in grid["methods"]}
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)}; the grid has {[m['name'] for m in grid['methods']]}")
    out = (args.out or REPO / grid.get("out", "runs/minibench")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    archive_root = None if str(args.archive) == "-" else args.archive.resolve()
    if (args.retrain or args.archive_only) and archive_root is None:
        raise SystemExit("--retrain and --archive-only need the archive (--archive DIR, not '-')")
    store = CellStore(out, archive_root, prefer="runs" if args.retrain else "archive")
    t0 = time.time()
    results: Dict[str, List[Dict[str, Any]]] = {m["name"]: [] for m in methods}
    cells = [(seed, m["name"]) for seed in seeds for m in methods]  # seed-major: an interrupted grid has complete seeds first
    grid_name = args.grid.stem
    by_name = {m["name"]: m for m in methods}
    if args.archive_only:
        done = [archive_cell(store, name, seed, cell_config(base, by_name[name], seed, minibench, args.overrides),
                             minibench) for seed, name in cells if store.in_runs(name, seed)]
        log(f"[{grid_name}] archived {sum(d is not None for d in done)} run(s) of {out} in {store.archive}; "
            f"{sum(d is None for d in done)} were archived already, "
            f"{sum(not store.in_runs(n, s) for s, n in cells)} cell(s) have no finished run")
        return 0
    log(progress_line(grid_name, expected_left(store, cells)))
    if args.status:
        for seed, name in cells:
            st = cell_state(store, name, seed)
            where = f" [{st['where']}]" if st["where"] else ""
            log(f"  {name} seed {seed}: {st['state']}{where}" + (f" ({st['seconds']:.0f} s)" if st["seconds"] else ""))
        return 0
    global CHECKPOINT_EVERY
    CHECKPOINT_EVERY = args.checkpoint_every
    pin_threads(grid.get("threads"), grid_name)
    todo = [(k, seed, name) for k, (seed, name) in enumerate(cells, start=1)
            if not (args.no_train and store.source(name, seed) is None)]

    def one(k: int, seed: int, name: str) -> Dict[str, Any]:
        was_finished = store.source(name, seed) is not None
        result = run_cell(f"{k}/{len(cells)}", by_name[name], seed, base, minibench, store, args.overrides)
        if not was_finished:
            log(progress_line(grid_name, expected_left(store, cells)))
        return result

    for (_, _, name), result in zip(todo, in_order(one, todo, args.jobs)):
        results[name].append(result)
    if args.no_train:  # the tables over the seeds that every method has finished
        complete = [s for s in seeds if all(store.source(m["name"], s) is not None for m in methods)]
        if not complete:
            finished = sum(store.source(n, s) is not None for s, n in cells)
            note = (f"Not finished: {finished} of {len(cells)} cells, no seed finished by every method; "
                    f"`bench/minibench.py --grid {os.path.relpath(args.grid, REPO)} --status` lists them.\n")
            log(f"[{grid_name}] {note.strip()}")
            begin, _ = markers(args.section)
            if str(args.report) != "-" and args.report.exists() and begin in args.report.read_text():
                log(f"[{grid_name}] kept its section of {args.report} as it is (built from runs that are not archived)")
            elif str(args.report) != "-":
                write_report(args.report, note, args.section)
            return 0
        results = {name: [r for r in rs if r["seed"] in complete] for name, rs in results.items()}
        cells = [(s, n) for s, n in cells if s in complete]
        seeds = complete
    reruns = agreement(store, cells)
    if reruns:
        differ = [f"{r['method']} seed {r['seed']} (eval {r['archived']['eer']['eval']:.2f} archived, "
                  f"{r['runs']['eer']['eval']:.2f} in {out})" for r in reruns if not r["identical"]]
        log(f"run folder against archive: {len(reruns)} cell(s) in both, {len(reruns) - len(differ)} identical"
            + (f"; differ: {', '.join(differ)}" if differ else "")
            + ("" if args.retrain or not differ else "; the tables use the archived runs"))
    sel_grid = {**grid, "methods": methods}
    sel_grid["methods"] = methods + add_tuned(sel_grid, results, store)
    summary = summarize(sel_grid, results)
    stats = None
    if not args.no_stats and sel_grid["baseline"] in by_name:
        t_stats = time.time()
        stats = paired_stats(sel_grid, results, store, minibench, n_boot=args.boot,
                             n_boot_attack=max(args.boot // 2, 200))
        log(f"paired statistics: {time.time() - t_stats:.0f} s")
    figures_dir = args.figures or (args.report.parent / "figures" if str(args.report) != "-" else out)
    plot(sel_grid, results, figures_dir, figure_prefix(args.section))
    if stats:
        plot_paired(stats, {m["name"]: m.get("label", m["name"]) for m in sel_grid["methods"]}, figures_dir, figure_prefix(args.section))
    rel_fig = os.path.relpath(figures_dir, args.report.parent) if str(args.report) != "-" else str(figures_dir)
    table = markdown(summary, rel_fig, figure_prefix(args.section), stats)
    if args.retrain and reruns:
        table += "\n" + agreement_markdown(reruns, store.archive)
    stem = "results" if args.section == "main" else f"results_{args.section}"
    sources = {name: {seed: store.source(name, seed) for seed in seeds} for name in by_name}
    atomic_write_text(out / f"{stem}.json", json.dumps({"summary": summary, "results": results, "paired": stats,
                                                        "sources": sources, "reruns": reruns},
                                                       indent=1, default=list))
    atomic_write_text(out / f"{stem}.md", table)
    if str(args.report) != "-":
        write_report(args.report, table, args.section)
    print()
    print(table)
    log(f"grid: {len(cells)} runs in {out}; this invocation took {time.time() - t0:.0f} s"
        + (f"; table written to {args.report}" if str(args.report) != "-" else ""))
    return 0


#: the grids of docs/RESULTS.md, in the order --all runs them (configs/minibench/)
ALL_GRIDS = ("grid.yaml", "grid_split_control.yaml", "grid_batch4.yaml", "grid_equal_compute.yaml", "grid_converge.yaml")
#: options that --all passes on to each grid
_PASSED_ON = ("--minibench", "--config", "--report", "--figures", "--boot", "--archive", "--checkpoint-every", "--set")


def run_all(args: argparse.Namespace, argv: Optional[List[str]]) -> int:
    """``--all``: every grid of :data:`ALL_GRIDS` into its own section (cells trained unless ``--no-train`` or
    ``--status``), then the conflict study's section from its committed results."""
    raw = list(sys.argv[1:] if argv is None else argv)
    if any(a in raw for a in ("--grid", "--section", "--seeds", "--methods", "--out", "--retrain", "--archive-only")):
        raise SystemExit("--all runs every grid with its own seeds, methods and run folder: leave out --grid, --section, "
                         "--seeds, --methods, --out, --retrain and --archive-only")
    passed: List[str] = []
    for i, a in enumerate(raw):
        if a in _PASSED_ON and i + 1 < len(raw):
            passed += [a, raw[i + 1]]
    passed += [a for a in ("--no-stats", "--no-train", "--status") if getattr(args, a[2:].replace("-", "_"))]
    passed += ["--jobs", str(args.jobs)]
    for name in ALL_GRIDS:
        log(f"== {name}")
        code = main(["--grid", str(REPO / "configs" / "minibench" / name), *passed])
        if code:
            return code
    if args.status:
        return 0
    report = args.report or REPO / "docs" / "RESULTS.md"
    log("== conflict study (bench/conflict_study.py --report-only)")
    return subprocess.run([sys.executable, str(REPO / "bench" / "conflict_study.py"), "--report-only",
                           "--report", str(report)]).returncode


if __name__ == "__main__":
    sys.exit(main())
