"""The minibench comparison grid: does gradient alignment help on real audio?

Runs every (method, seed) cell of ``configs/minibench/grid.yaml`` — each one is
``configs/minibench/base.yaml`` plus the method's overrides and the seed —
as a ``dpda train`` subprocess, scores the ``eval`` and ``ood_dev`` splits
with the final model (whole utterances: mean logit over 2-s windows), and
collects one table.

Resumable at every level: a cell with ``result.json`` is skipped; a cell whose
training was interrupted continues with ``dpda train --resume``; scoring
continues from its ``.partial`` file. Rerunning the same command after an
interruption therefore finishes the grid without redoing finished work.

Layout under ``--out`` (default ``runs/minibench``)::

    OUT/<method>/seed<k>.yaml          the cell's config (base + overrides)
    OUT/<method>/seed<k>/              the dpda run directory (config.yaml, metrics.jsonl, model.pt, ...)
    OUT/<method>/seed<k>/scores/eval.txt, ood_dev.txt   per-utterance scores (``dpda evaluate`` input)
    OUT/<method>/seed<k>/result.json   what the table is built from
    OUT/results.json, OUT/results.md   the collected table (results_<section>.* for --section)

With ``--report docs/RESULTS.md`` (the default) the generated part of that file
(between ``<!-- minibench:begin -->`` and ``<!-- minibench:end -->``) is
replaced by the table that this command also prints, and the plots are written
to ``docs/figures/``; the text around the markers is left alone. ``--section NAME``
writes a supplementary experiment (e.g. other ``--set`` values and ``--out``)
into its own ``<!-- minibench:NAME:begin/end -->`` part instead.

Usage (from the repository root, ``../shared/minibench`` beside it)::

    .venv/bin/python bench/minibench.py                  # the whole grid (about an hour on 2 CPU cores)
    .venv/bin/python bench/minibench.py --seeds 1 --methods dual pcgrad --set train.epochs=2
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

import yaml

from dpda.config import apply_overrides, dump_yaml
from dpda.fileio import atomic_write_text

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
    return grid


def cell_config(base: Dict[str, Any], method: Dict[str, Any], seed: int, minibench: Path,
                extra: Sequence[str]) -> Dict[str, Any]:
    """The resolved config data of one grid cell."""
    data = copy.deepcopy(base)
    overrides = [f"{k}={json.dumps(v)}" for k, v in method.get("set", {}).items()]
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


def train_cell(cfg_path: Path, run_dir: Path) -> None:
    if (run_dir / "summary.json").exists() and (run_dir / "model.pt").exists():
        return
    cmd = [sys.executable, "-m", "dpda", "train", "--no-progress"]
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


def score_cell(run_dir: Path, minibench: Path) -> Dict[str, Any]:
    from dpda.data import load_manifest
    from dpda.evaluation import evaluate_score_file
    from dpda.inference import score_manifest

    out: Dict[str, Any] = {}
    for split in SPLITS:
        manifest = load_manifest("asvspoof2019", minibench / "protocols" / f"minibench.{split}.txt",
                                 root=minibench / "flac" / split)
        path = run_dir / "scores" / f"{split}.txt"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            t0 = time.time()
            score_manifest(manifest, run_dir, path, num_workers=0, batch_size=128, mode="full", device="cpu",
                           progress=False)
            _add_wall(run_dir, "score", time.time() - t0)
        report, _ = evaluate_score_file(manifest, path, fmt="asvspoof2019", breakdown=())
        out[split] = {"eer": float(report["eer"]),
                      "per_attack": {k: float(v["eer"]) for k, v in report.get("per_attack", {}).items()}}
    return out


def epoch_records(run_dir: Path) -> List[Dict[str, Any]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    by_epoch: Dict[int, Dict[str, Any]] = {}
    for r in records:
        if r.get("type") == "epoch":
            by_epoch[r["epoch"]] = r  # a resumed run may repeat an epoch's record; the last one counts
    return [by_epoch[e] for e in sorted(by_epoch)]


def run_cell(grid_name: str, method: Dict[str, Any], seed: int, base: Dict[str, Any], minibench: Path, out: Path,
             extra: Sequence[str]) -> Dict[str, Any]:
    cell_dir = out / method["name"]
    run_dir = cell_dir / f"seed{seed}"
    result_path = run_dir / "result.json"
    if result_path.exists():
        log(f"[{grid_name}] {method['name']} seed {seed}: finished earlier, skipped")
        return json.loads(result_path.read_text())
    log(f"[{grid_name}] {method['name']} seed {seed}: training")
    cell_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(exist_ok=True)
    cfg_path = cell_dir / f"seed{seed}.yaml"
    cfg = cell_config(base, method, seed, minibench, extra)
    cfg_path.write_text(dump_yaml(cfg))
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
        "per_epoch": [{k: e.get(k) for k in ("epoch", "dev_loss", "dev_eer", "train_loss", "conflict_rate", "mean_cos",
                                             "mean_norm_orig", "mean_norm_aug", "seconds", "clips_per_s", "steps")}
                      for e in epochs],
        "train_wall_s": walls.get("train"), "score_wall_s": walls.get("score", 0.0),
    }
    atomic_write_text(result_path, json.dumps(result, indent=1))
    log(f"[{grid_name}] {method['name']} seed {seed}: EER eval {result['eer']['eval']:.2f}%  "
        f"ood_dev {result['eer']['ood_dev']:.2f}%  best epoch {result['best_epoch']}/{result['epochs_run']}  "
        f"train {result['train_wall_s']:.0f} s")
    return result


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


def markdown(summary: Dict[str, Any], figures: Optional[str], prefix: str = "minibench_") -> str:
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
    for s in SPLITS:
        attacks = sorted({a for r in rows for a in r.get(f"{s}_per_attack", {})})
        if not attacks:
            continue
        lines += ["", f"### {s}: EER (%) per attack, mean over seeds (all bona fide against that attack's spoofs)", "",
                  "| method | " + " | ".join(attacks) + " |", "|---|" + "---:|" * len(attacks)]
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


# ----------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Run the minibench grid (resumable) and collect the results table.")
    p.add_argument("--minibench", type=Path, default=REPO.parent / "shared" / "minibench", help="the minibench folder")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "minibench", help="where runs, scores and results go")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "minibench" / "base.yaml")
    p.add_argument("--grid", type=Path, default=REPO / "configs" / "minibench" / "grid.yaml")
    p.add_argument("--seeds", type=int, nargs="+", help="subset of the grid's seeds")
    p.add_argument("--methods", nargs="+", help="subset of the grid's methods")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every cell (repeatable)")
    p.add_argument("--report", type=Path, default=REPO / "docs" / "RESULTS.md",
                   help="markdown file whose generated section gets the table ('-': none)")
    p.add_argument("--section", default="main",
                   help="which generated section of REPORT to replace (default: main; another name adds or replaces "
                        "<!-- minibench:NAME:begin/end --> and prefixes the plots with minibench_NAME_)")
    p.add_argument("--figures", type=Path, default=None, help="where the PNG plots go (default: REPORT's folder/figures)")
    args = p.parse_args(argv)
    if argv is None and any(k not in os.environ for k in MALLOC_ENV):
        # the allocator settings must be in place before the process starts (scoring runs in this process)
        os.execve(sys.executable, [sys.executable, *sys.argv], {**MALLOC_ENV, **os.environ})

    minibench = args.minibench.resolve()
    for split in ("train", "dev", *SPLITS):
        if not (minibench / "protocols" / f"minibench.{split}.txt").is_file():
            raise SystemExit(f"{minibench}: no protocols/minibench.{split}.txt; give --minibench DIR")
    grid = load_grid(args.grid)
    base = yaml.safe_load(args.config.read_text())
    seeds = args.seeds or grid["seeds"]
    methods = [m for m in grid["methods"] if not args.methods or m["name"] in args.methods]
    unknown = set(args.methods or []) - {m["name"] for m in grid["methods"]}
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)}; the grid has {[m['name'] for m in grid['methods']]}")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results: Dict[str, List[Dict[str, Any]]] = {m["name"]: [] for m in methods}
    total = len(seeds) * len(methods)
    k = 0
    for seed in seeds:  # seed-major: an interrupted grid has complete seeds first
        for m in methods:
            k += 1
            results[m["name"]].append(run_cell(f"{k}/{total}", m, seed, base, minibench, out, args.overrides))
    sel_grid = {**grid, "methods": methods}
    summary = summarize(sel_grid, results)
    figures_dir = args.figures or (args.report.parent / "figures" if str(args.report) != "-" else out)
    plot(sel_grid, results, figures_dir, figure_prefix(args.section))
    rel_fig = os.path.relpath(figures_dir, args.report.parent) if str(args.report) != "-" else str(figures_dir)
    table = markdown(summary, rel_fig, figure_prefix(args.section))
    stem = "results" if args.section == "main" else f"results_{args.section}"
    atomic_write_text(out / f"{stem}.json", json.dumps({"summary": summary, "results": results}, indent=1))
    atomic_write_text(out / f"{stem}.md", table)
    if str(args.report) != "-":
        write_report(args.report, table, args.section)
    print()
    print(table)
    log(f"grid: {total} runs in {out}; this invocation took {time.time() - t0:.0f} s"
        + (f"; table written to {args.report}" if str(args.report) != "-" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
