"""Why are path-gradient conflicts rare on minibench? Short runs that measure them against their likely causes.

The DPDA paper reports that about 25 % of training steps have conflicting path
gradients (negative dot product of the recorded path's and the augmented
path's gradients); the minibench grid saw 2-6 %. This script varies one thing
at a time around the minibench recipe (``configs/minibench/base.yaml``:
LFCC-LCNN, batch 16 per path, Adam 1e-3, RawBoost algo 4 in the step) and
measures the conflicts of every step of short dual-path runs (no alignment, so
the measurement does not change the trajectory):

* augmentation strength: RawBoost algos 1-8; codec / noise / reverb chains in
  the DataLoader (``augment.where: workers``), mild and harsh (the noise and
  room impulse responses are synthesised here: coloured noise and
  exponentially decaying noise tails, no corpus needed);
* batch size per path: 4, 8, 16, 32;
* learning rate: 1e-4, 1e-3, 1e-2;
* model family: LCNN, RawNet2, AASIST-L; and the forward layout (split mode);
* training stage: the weights of a finished minibench grid run (``--trained``,
  default ``runs/minibench/dual/seed{seed}/model.pt``, the dual run of the same
  seed, when it exists), measured without updating them (lr 0) and while
  training on.

Every step records the overall cosine and dot product, the per-module cosines
the engine computes (``DualPathEngine(module_stats=True)``: top-level
modules) and finer per-layer cosines (second-level modules, from a thin
wrapper around the aligner that reads the two gradients before it combines
them). A cell is a setting; each runs once per seed (``--seeds``, default 1 2 3)
as a short run (``--epochs`` x ``--steps`` steps, no dev split). Runs are
independent and the study is resumable: a finished run (``steps.jsonl`` +
``cell.json``) is skipped, an interrupted one starts again. A cell's row pools
the steps of its seeds (conflict rate with a Wilson interval over all its steps,
and the rate of each seed, since steps of one run are not independent draws).

Outputs: ``OUT/seed<k>/<cell>/`` (run directory, ``steps.jsonl``, ``cell.json``),
``OUT/study.json``; every finished run is also archived (tracked, as the
minibench cells are) in ``--archive`` (default ``docs/results/conflict_study``):
``seed<k>/<cell>.json`` (its summary) and ``seed<k>/<cell>.steps.jsonl.gz`` (its
per-step records, deterministic gzip), and an archived run counts as finished; with
``--report-only`` a cell found in neither place comes from the committed
``docs/conflict_study.json`` of an earlier study (summaries without step
records: the heat map then keeps its committed figure). With ``--report`` (default ``docs/RESULTS.md``) the
section between ``<!-- conflict_study:begin -->`` and ``<!-- conflict_study:end -->``,
the summary ``docs/conflict_study.json`` and the figures
``docs/figures/conflict_study_*.png``.

Usage (from the repository root, ``../shared/minibench`` beside it)::

    .venv/bin/python bench/conflict_study.py                 # every cell (see --list), seeds 1 2 3
    .venv/bin/python bench/conflict_study.py --cells base batch4 --seeds 1 --steps 10 --report -
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from dpda.fileio import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conflict_study_report import (  # noqa: E402,F401  (re-exported for callers)
    BEGIN, END, PAPER_RATE, combine_seeds, figures, heat_map, load_steps, log, markdown, summarize_cell, wilson,
    write_report,
)
from minibench_archive import gzip_bytes, write_bytes_atomic  # noqa: E402
from minibench_cells import MALLOC_ENV  # noqa: E402  (freed activation buffers stay in the process)

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- cells


def chain_config(assets: Path, harsh: bool) -> Dict[str, Any]:
    """A codec -> noise -> reverb chain (each step with probability p; harsh: always, louder noise, longer rooms)."""
    p = 1.0 if harsh else 0.5
    return {"series": [
        {"choice": [{"codec": {"name": "mp3"}}, {"codec": {"name": "opus"}}, {"codec": {"name": "gsm"}}], "p": p},
        {"noise": {"files": {"noise": sorted(str(f) for f in (assets / "noise").glob("*.wav"))},
                   "snr": [0, 5] if harsh else [5, 20], "p": p}},
        {"reverb": {"files": sorted(str(f) for f in (assets / ("rir_long" if harsh else "rir")).glob("*.wav")), "p": p}},
    ]}


def make_assets(assets: Path, sr: int = 16000) -> None:
    """Synthetic noise (white, pink, brown; 5 s each) and room impulse responses (decaying noise tails)."""
    import soundfile as sf

    if (assets / "done").exists():
        return
    rng = np.random.default_rng(12345)
    (assets / "noise").mkdir(parents=True, exist_ok=True)
    n = 5 * sr
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / sr), 1.0)
    for name, x in (("white", white), ("pink", np.fft.irfft(spectrum / np.sqrt(f), n)),
                    ("brown", np.fft.irfft(spectrum / f, n))):
        sf.write(assets / "noise" / f"{name}.wav", (0.3 * x / np.abs(x).max()).astype(np.float32), sr)
    for folder, rt60s in (("rir", (0.2, 0.35, 0.5)), ("rir_long", (0.8, 1.2, 1.6))):
        (assets / folder).mkdir(exist_ok=True)
        for rt60 in rt60s:
            t = np.arange(int(rt60 * sr)) / sr
            h = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
            h[0] = 1.0
            sf.write(assets / folder / f"rt{int(rt60 * 1000)}.wav", (h / np.abs(h).max()).astype(np.float32), sr)
    (assets / "done").write_text("")


def cells(trained: Optional[Path]) -> List[Dict[str, Any]]:
    """The study's cells, most informative first: name, factor, the setting in words, config overrides."""
    out: List[Dict[str, Any]] = [
        {"name": "base", "factor": "base", "value": "LCNN, RawBoost 4, batch 16, lr 1e-3", "set": {}},
        {"name": "batch4", "factor": "batch", "value": "4", "set": {"data.batch_size": 4}},
        {"name": "chain_harsh", "factor": "augmentation", "value": "codec+noise+reverb, harsh", "chain": "harsh"},
        {"name": "lr1e-2", "factor": "lr", "value": "1e-2", "set": {"train.optimizer.lr": 1.0e-2}},
    ]
    if trained is not None:  # run only once the file exists (see main)
        out += [
            {"name": "trained_probe", "factor": "stage", "value": "trained weights, lr 0 (measure only)",
             "set": {"model.init_from": str(trained), "train.optimizer.lr": 0.0, "train.optimizer.weight_decay": 0.0}},
            {"name": "trained_probe_b4", "factor": "stage", "value": "trained weights, lr 0, batch 4",
             "set": {"model.init_from": str(trained), "train.optimizer.lr": 0.0, "train.optimizer.weight_decay": 0.0,
                     "data.batch_size": 4}},
            {"name": "trained_train", "factor": "stage", "value": "trained weights, training on (lr 1e-3)",
             "set": {"model.init_from": str(trained)}},
        ]
    out += [{"name": "chain_mild", "factor": "augmentation", "value": "codec+noise+reverb, p 0.5", "chain": "mild"}]
    out += [{"name": f"rawboost{a}", "factor": "augmentation", "value": f"RawBoost {a}", "set": {"augment.rawboost_algo": a}}
            for a in (1, 2, 3, 5, 6, 7, 8)]
    out += [
        {"name": "split", "factor": "layout", "value": "split mode", "set": {"train.engine_mode": "split"}},
        {"name": "batch32", "factor": "batch", "value": "32", "set": {"data.batch_size": 32}},
        {"name": "batch8", "factor": "batch", "value": "8", "set": {"data.batch_size": 8}},
        {"name": "lr1e-4", "factor": "lr", "value": "1e-4", "set": {"train.optimizer.lr": 1.0e-4}},
        # the raw-waveform models cost several times LCNN's step, and AASIST-L's graph attention took more
        # than 12 GB at batch 16 per path on 2-s clips (killed for memory on the 23 GB machine): one epoch,
        # batch 4 per path (compare with LCNN's batch-4 cell)
        {"name": "aasist_l", "factor": "model", "value": "AASIST-L, batch 4", "epochs": 1,
         "set": {"model.name": "aasist-l", "model.config": {}, "data.batch_size": 4}},
        {"name": "rawnet2", "factor": "model", "value": "RawNet2, batch 4", "epochs": 1,
         "set": {"model.name": "rawnet2", "model.config": {}, "data.batch_size": 4}},
    ]
    return out


def cell_config(base: Dict[str, Any], cell: Dict[str, Any], minibench: Path, out: Path, seed: int, epochs: int,
                steps: int) -> Dict[str, Any]:
    from dpda.config import apply_overrides

    data = json.loads(json.dumps(base))
    data.setdefault("data", {})["dev"] = None  # no validation: the study measures training steps only
    overrides = {"train.mode": "dual", "train.engine_mode": "joint", "seed": seed, "name": f"conflict_{cell['name']}",
                 "train.epochs": cell.get("epochs", epochs), "train.steps_per_epoch": steps, "train.patience": 0, "train.top_k": 1,
                 "train.log_every": 1000, "train.final_model": "average",
                 "data.train.protocol": str(minibench / "protocols" / "minibench.train.txt"),
                 "data.train.root": str(minibench / "flac" / "train"), **cell.get("set", {})}
    if cell.get("chain"):
        chain_path = out / f"chain_{cell['chain']}.yaml"
        atomic_write_text(chain_path, yaml.safe_dump(chain_config(out / "assets", cell["chain"] == "harsh")))
        overrides.update({"augment.where": "workers", "augment.chain": str(chain_path)})
    apply_overrides(data, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    return data


# ----------------------------------------------------------------------------- one cell


class _Probe:
    """Wraps an aligner: records the cosine of the two path gradients per layer group before it combines them."""

    def __init__(self, inner, groups: List[Tuple[str, int, int]]) -> None:
        self.inner = inner
        self.groups = groups
        self.last: Dict[str, float] = {}

    def __call__(self, grads, has_grad=None, segments=None, inplace=False):
        import torch

        with torch.no_grad():
            g0, g1 = grads[0], grads[1]
            cos, dots = {}, {}
            for name, a, b in self.groups:
                d = float(g0[a:b] @ g1[a:b])
                n = float(g0[a:b].norm()) * float(g1[a:b].norm())
                cos[name] = d / n if n > 0 else 0.0
                dots[name] = d
        self.last, self.last_dots = cos, dots
        return self.inner(grads, has_grad=has_grad, segments=segments, inplace=inplace)

    def __getattr__(self, name):  # last_stats, state_dict, ... of the wrapped aligner
        return getattr(self.inner, name)


def _layer_groups(names: Sequence[str], offsets: Sequence[Tuple[int, int]], depth: int = 2) -> List[Tuple[str, int, int]]:
    groups: List[Tuple[str, int, int]] = []
    for name, (a, b) in zip(names, offsets):
        parts = name.split(".")
        key = ".".join(parts[:depth]) if len(parts) > depth else parts[0]
        if groups and groups[-1][0] == key and groups[-1][2] == a:
            groups[-1] = (key, groups[-1][1], b)
        else:
            groups.append((key, a, b))
    return groups


def run_cell(cell: Dict[str, Any], cfg_data: Dict[str, Any], cell_dir: Path) -> Dict[str, Any]:
    """Train one short dual-path run, recording every step's path-gradient statistics."""
    import shutil

    from dpda.config import from_dict
    from dpda.train.config import RunConfig, check_buildable, validate
    from dpda.train.trainer import Trainer

    if cell_dir.exists():
        shutil.rmtree(cell_dir)  # an interrupted cell starts again (cells are short)
    cell_dir.mkdir(parents=True)
    cfg = validate(from_dict(RunConfig, cfg_data))
    check_buildable(cfg)
    steps_path = cell_dir / "steps.jsonl"
    records: List[Dict[str, Any]] = []

    class StudyTrainer(Trainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            eng = self.step.engine  # a dual-path run's step (train.mode dual / dpda)
            eng.module_stats = True
            self.probe = _Probe(eng.aligner, _layer_groups(eng.names, eng.offsets))
            eng.aligner = self.probe

        def compute_gradients(self, x, x_aug, y):
            out = super().compute_gradients(x, x_aug, y)
            s = out.stats
            if "cos" in s:
                records.append({"step": len(records) + 1, "cos": s["cos"], "dot": s["dot"], "conflict": s["conflict"],
                                "norms": s["norms"], "loss_orig": out.loss_orig, "loss_aug": out.loss_aug,
                                "module_cos": s.get("module_cos", {}), "layer_cos": dict(self.probe.last),
                                "layer_dot": dict(self.probe.last_dots)})
            return out

    t0 = time.time()
    trainer = StudyTrainer(cfg, cell_dir / "run", progress=False, log=lambda m: None)
    trainer.fit()
    seconds = time.time() - t0
    if not records:
        raise RuntimeError(f"conflict study cell {cell['name']}: the run recorded no step statistics")
    atomic_write_text(steps_path, "".join(json.dumps(r) + "\n" for r in records))
    summary = summarize_cell(cell, records, seconds)
    atomic_write_text(cell_dir / "cell.json", json.dumps(summary, indent=1))
    return summary


# ----------------------------------------------------------------------------- summaries


def archive_cell(cell_dir: Path, archive: Path) -> None:
    """Copies a finished cell's summary and gzipped step records into the (tracked) archive."""
    archive.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(archive / f"{cell_dir.name}.steps.jsonl.gz", gzip_bytes((cell_dir / "steps.jsonl").read_bytes()))
    atomic_write_text(archive / f"{cell_dir.name}.json", (cell_dir / "cell.json").read_text())  # last: complete


def committed_summaries(report: Path) -> Dict[str, Dict[str, Any]]:
    """The cell summaries of the study committed beside ``report`` (``conflict_study.json``), by cell name."""
    path = report.parent / "conflict_study.json"
    if not path.is_file():
        return {}
    try:
        return {c["name"]: c for c in json.loads(path.read_text())["cells"]}
    except (ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"{path}: not a conflict-study summary ({type(e).__name__}: {e})")


def finished_summary(cell_dir: Path, archive: Optional[Path]) -> Optional[Tuple[Dict[str, Any], str]]:
    """``(summary, where)`` of a finished cell: its run folder, else the archive; None if unfinished."""
    if (cell_dir / "cell.json").is_file():
        return json.loads((cell_dir / "cell.json").read_text()), "run folder"
    if archive is not None and (archive / f"{cell_dir.name}.json").is_file():
        return json.loads((archive / f"{cell_dir.name}.json").read_text()), "archive"
    return None


# ----------------------------------------------------------------------------- figures and report


# ----------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Conflict rate and per-module cosines against their likely causes "
                                            "(short runs; resumable).")
    p.add_argument("--minibench", type=Path, default=REPO.parent / "shared" / "minibench")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "minibench" / "base.yaml")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "conflict_study")
    p.add_argument("--trained", default=str(REPO / "runs" / "minibench" / "dual" / "seed{seed}" / "model.pt"),
                   help="weights of a finished run for the training-stage cells, '{seed}' replaced by the run's seed "
                        "(a cell is skipped when its file is absent)")
    p.add_argument("--cells", nargs="+", help="only these cells (see --list)")
    p.add_argument("--list", action="store_true", help="list the cells and exit")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="one run per cell and seed")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=20, help="steps per epoch")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--report", type=Path, default=REPO / "docs" / "RESULTS.md", help="'-': no report")
    p.add_argument("--archive", type=Path, default=REPO / "docs" / "results" / "conflict_study", metavar="DIR",
                   help="tracked archive of finished cells (summary + gzipped step records); '-': none")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write the report from the cells finished so far (e.g. while a study runs)")
    args = p.parse_args(argv)
    if argv is None and any(k not in os.environ for k in MALLOC_ENV):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**MALLOC_ENV, **os.environ})

    def trained(seed: int) -> Path:
        return Path(args.trained.replace("{seed}", str(seed))).resolve()

    all_cells = cells(trained(args.seeds[0]))
    if args.list:
        for c in all_cells:
            log(f"{c['name']:18s} {c['factor']:13s} {c['value']}")
        return 0
    chosen = [c["name"] for c in all_cells if not args.cells or c["name"] in args.cells]
    unknown = set(args.cells or []) - {c["name"] for c in all_cells}
    if unknown:
        raise SystemExit(f"unknown cell(s) {sorted(unknown)}; see --list")
    import torch

    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    make_assets(out / "assets")
    base = yaml.safe_load(args.config.read_text())
    minibench = args.minibench.resolve()
    t0 = time.time()
    archive = None if str(args.archive) == "-" else args.archive.resolve()
    committed = committed_summaries(args.report) if args.report_only and str(args.report) != "-" else {}
    finished: Dict[str, Dict[int, Dict[str, Any]]] = {name: {} for name in chosen}  # cell -> seed -> summary
    total, times = len(chosen) * len(args.seeds), []
    i = 0
    for seed in args.seeds:  # seed-major: an interrupted study has whole seeds first
        by_name = {c["name"]: c for c in cells(trained(seed))}
        seed_out, seed_archive = out / f"seed{seed}", archive / f"seed{seed}" if archive else None
        for name in chosen:
            i += 1
            cell, cell_dir, tag = by_name[name], seed_out / name, f"[{i}/{total}] {name} seed {seed}"
            found = finished_summary(cell_dir, seed_archive)
            if found is not None:
                finished[name][seed] = found[0]
                if found[1] == "run folder" and seed_archive is not None and not (seed_archive / f"{name}.json").is_file():
                    archive_cell(cell_dir, seed_archive)
                log(f"{tag}: finished earlier, skipped ({found[1]})")
                continue
            if args.report_only:
                log(f"{tag}: not finished yet, left out (--report-only)")
                continue
            if cell["factor"] == "stage" and not trained(seed).is_file():
                log(f"{tag}: skipped, no trained weights at {trained(seed)} (yet)")
                continue
            eta = f"; about {np.mean(times) * (total - i + 1) / 60:.0f} min left at most" if times else ""
            log(f"{tag} ({cell['factor']}: {cell['value']}){eta}")
            try:
                s = run_cell(cell, cell_config(base, cell, minibench, out, seed, args.epochs, args.steps), cell_dir)
            except Exception as e:  # noqa: BLE001 - one failing cell must not lose the others; a rerun retries it
                log(f"    failed: {type(e).__name__}: {e}")
                continue
            if seed_archive is not None:
                archive_cell(cell_dir, seed_archive)
            log(f"    {s['steps']} steps, conflicts {100 * s['conflict_rate']:.1f} % "
                f"({100 * s['conflict_ci'][0]:.1f}–{100 * s['conflict_ci'][1]:.1f}), mean cos {s['mean_cos']:.2f}, "
                f"{s['seconds']:.0f} s")
            times.append(s["seconds"])
            finished[name][seed] = s
    summaries = []
    for name in chosen:
        runs = finished[name]
        if runs:
            cell = next(c for c in all_cells if c["name"] == name)
            summaries.append(combine_seeds(cell, {
                k: (sm, load_steps(out / f"seed{k}" / name, archive / f"seed{k}" if archive else None))
                for k, sm in runs.items()}))
        elif name in committed:
            summaries.append(committed[name])
            log(f"{name}: from the committed docs/conflict_study.json (--report-only)")
    args.planned = chosen
    args.missing_runs = [f"{name} seed {k}" for name in chosen for k in args.seeds if k not in finished[name]]
    study = {"seeds": args.seeds, "epochs": args.epochs, "steps_per_epoch": args.steps, "paper_rate": PAPER_RATE,
             "cells": summaries}  # each run's own summary is in the archive (seed<k>/<cell>.json)
    atomic_write_text(out / "study.json", json.dumps(study, indent=1))
    if str(args.report) != "-":
        fig_dir = args.report.parent / "figures"
        figs = figures(summaries, out, fig_dir, archive) if summaries else []
        atomic_write_text(args.report.parent / "conflict_study.json", json.dumps(study, indent=1))
        write_report(args.report, markdown(summaries, args, figs, os.path.relpath(fig_dir, args.report.parent)))
    log(f"conflict study: {len(summaries)} cells in {out}; this invocation took {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
