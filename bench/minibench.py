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
an interruption therefore finishes the grid without redoing finished work;
``--stop-after HOURS`` ends a sitting cleanly (no cell starts after it, cells in
training stop with their checkpoints kept, exit code 3).
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

Code: this file reads the grid and runs the command; ``minibench_cells.py`` trains, scores and
archives one cell and says what is left; ``minibench_stats.py`` computes the paired statistics;
``minibench_report.py`` writes the tables, plots and report sections; ``minibench_archive.py`` owns
the archive's layout.

Usage (from the repository root, ``../shared/minibench`` beside it)::

    .venv/bin/python bench/minibench.py                  # the main grid (about 1.5 hours, one thread per cell)
    .venv/bin/python bench/minibench.py --all --no-train # every section of docs/RESULTS.md from the archive
    .venv/bin/python bench/minibench.py --seeds 1 --methods dual pcgrad --set train.epochs=2
    .venv/bin/python bench/minibench.py --grid configs/minibench/grid_converge.yaml --status
    .venv/bin/python bench/minibench.py --retrain --seeds 1      # rerun seed 1, compare with the archive
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from dpda.fileio import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minibench_archive import CellStore, as_store  # noqa: E402
from minibench_report import (  # noqa: E402,F401  (BEGIN, END re-exported for callers)
    BEGIN, END, SPLITS, agreement_markdown, figure_prefix, markdown, markers, plot, plot_paired, summarize, write_report,
)
import minibench_cells  # noqa: E402
from minibench_cells import (  # noqa: E402,F401  (re-exported for callers)
    MALLOC_ENV, agreement, archive_cell, cell_config, cell_state, expected_left, in_order, log, pin_threads,
    TimeLimitReached, progress_line, run_cell,
)
from minibench_stats import paired_stats  # noqa: E402

REPO = Path(__file__).resolve().parent.parent





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
    p.add_argument("--stop-after", type=float, default=None, metavar="HOURS",
                   help="a time limit for this sitting: after HOURS no cell starts and the cells in training are "
                        f"stopped (their last checkpoint kept; the same command resumes them); exit code "
                        f"{EXIT_TIME_LIMIT} when the limit stopped the grid")
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)  # --all: one absolute limit
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
    if args.stop_after is not None and not args.stop_after > 0:
        p.error(f"--stop-after: expected a positive number of hours, got {args.stop_after}")
    if args.deadline is None and args.stop_after is not None:
        args.deadline = time.time() + 3600.0 * args.stop_after
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
    log(progress_line(grid_name, expected_left(store, cells), args.jobs))
    if args.status:
        for seed, name in cells:
            st = cell_state(store, name, seed)
            where = f" [{st['where']}]" if st["where"] else ""
            log(f"  {name} seed {seed}: {st['state']}{where}" + (f" ({st['seconds']:.0f} s)" if st["seconds"] else ""))
        return 0
    minibench_cells.CHECKPOINT_EVERY = args.checkpoint_every
    minibench_cells.DEADLINE = args.deadline
    if args.deadline is not None:
        minibench_cells.let_cells_be_interrupted()
    pin_threads(grid.get("threads"), grid_name)
    todo = [(k, seed, name) for k, (seed, name) in enumerate(cells, start=1)
            if not (args.no_train and store.source(name, seed) is None)]

    def one(k: int, seed: int, name: str) -> Dict[str, Any]:
        was_finished = store.source(name, seed) is not None
        result = run_cell(f"{k}/{len(cells)}", by_name[name], seed, base, minibench, store, args.overrides)
        if not was_finished:
            log(progress_line(grid_name, expected_left(store, cells), args.jobs))
        return result

    try:
        done = in_order(one, todo, args.jobs)
    except TimeLimitReached as stop:
        log(f"[{grid_name}] {stop}")
        log(progress_line(grid_name, expected_left(store, cells), args.jobs))
        log(f"[{grid_name}] stopped: the --stop-after time is up; the same command continues where this one stopped")
        return EXIT_TIME_LIMIT
    for (_, _, name), result in zip(todo, done):
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


#: exit code of a grid stopped by --stop-after (finished cells archived, the rest resumable)
EXIT_TIME_LIMIT = 3
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
    if args.deadline is not None:
        passed += ["--deadline", repr(args.deadline)]
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
