"""The conflict study's summaries, figures and report section (``bench/conflict_study.py``).

:func:`summarize_cell` reduces one run's per-step records to its conflict rate (Wilson interval),
cosines and per-module statistics; :func:`combine_seeds` pools a cell's runs over seeds;
:func:`figures` draws the rate chart and the per-module heat map over training; :func:`markdown` and
:func:`write_report` write the section of ``docs/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from dpda.fileio import atomic_write_text

BEGIN, END = "<!-- conflict_study:begin -->", "<!-- conflict_study:end -->"
#: the share of conflicting steps the DPDA paper reports (with RawBoost)
PAPER_RATE = 0.25


def log(msg: str) -> None:
    print(msg, flush=True)


def wilson(k: int, n: int, z: float = 1.96) -> Tuple[float, float]:
    """Wilson score interval of a proportion k / n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def summarize_cell(cell: Dict[str, Any], records: List[Dict[str, Any]], seconds: float) -> Dict[str, Any]:
    n = len(records)
    k = sum(bool(r["conflict"]) for r in records)
    cos = np.array([r["cos"] for r in records]) if records else np.zeros(0)
    half = n // 2
    out = {"name": cell["name"], "factor": cell["factor"], "value": cell["value"], "steps": n, "conflicts": k,
           "conflict_rate": k / n if n else math.nan, "conflict_ci": wilson(k, n),
           "conflict_rate_first_half": float(np.mean([r["conflict"] for r in records[:half]])) if half else math.nan,
           "conflict_rate_second_half": float(np.mean([r["conflict"] for r in records[half:]])) if n - half else math.nan,
           "mean_cos": float(cos.mean()) if n else math.nan, "median_cos": float(np.median(cos)) if n else math.nan,
           "cos_quantiles": [float(q) for q in np.quantile(cos, [0.05, 0.25, 0.75, 0.95])] if n else [],
           "norm_ratio_aug_orig": float(np.median([r["norms"][1] / r["norms"][0] for r in records if r["norms"][0] > 0]))
           if n else math.nan,
           "seconds": seconds}
    for key in ("module_cos", "layer_cos"):
        names = list(records[0][key]) if records else []
        out[key.replace("_cos", "")] = {
            m: {"mean_cos": float(np.mean([r[key][m] for r in records])),
                "conflict_rate": float(np.mean([r[key][m] < 0 for r in records]))} for m in names}
    # which layers carry the whole-model dot product: each layer's share of the summed |dot| over all steps
    if records and "layer_dot" in records[0]:
        absdot = {m: float(np.sum([abs(r["layer_dot"][m]) for r in records])) for m in records[0]["layer_dot"]}
        total = sum(absdot.values()) or 1.0
        for m, v in absdot.items():
            out["layer"][m]["dot_share"] = v / total
    return out


def combine_seeds(cell: Dict[str, Any], runs: Dict[int, Tuple[Dict[str, Any], Optional[List[Dict[str, Any]]]]]
                  ) -> Dict[str, Any]:
    """One row for a cell run with several seeds: ``runs`` maps seed -> (its summary, its step records or None).

    With every seed's records, the statistics are those of the pooled steps (:func:`summarize_cell`), the
    first / second half rates the step-weighted mean of each run's halves; without them (summaries only) the
    row is the step-weighted mean of the seeds' rates and cosines, with no per-module breakdown. Either way
    ``per_seed`` keeps each seed's steps, conflicts, rate and mean cosine, and ``seconds`` is the mean per run.
    """
    seeds = sorted(runs)
    summaries = [runs[k][0] for k in seeds]
    steps = [s["steps"] for s in summaries]
    n = sum(steps)
    if all(runs[k][1] for k in seeds):
        out = summarize_cell(cell, [r for k in seeds for r in runs[k][1]], 0.0)
    else:
        k_all = sum(s["conflicts"] for s in summaries)
        out = {"name": cell["name"], "factor": cell["factor"], "value": cell["value"], "steps": n, "conflicts": k_all,
               "conflict_rate": k_all / n if n else math.nan, "conflict_ci": wilson(k_all, n),
               "mean_cos": float(np.average([s["mean_cos"] for s in summaries], weights=steps)),
               "cos_quantiles": [], "norm_ratio_aug_orig": float(np.median([s["norm_ratio_aug_orig"] for s in summaries])),
               "module": {}, "layer": {}}
    for half in ("conflict_rate_first_half", "conflict_rate_second_half"):
        out[half] = float(np.average([s[half] for s in summaries], weights=steps))
    out["seconds"] = float(np.mean([s["seconds"] for s in summaries]))
    out["seeds"] = seeds
    out["per_seed"] = [{"seed": k, "steps": s["steps"], "conflicts": s["conflicts"], "conflict_rate": s["conflict_rate"],
                        "mean_cos": s["mean_cos"]} for k, s in zip(seeds, summaries)]
    return out


def load_steps(cell_dir: Path, archive: Optional[Path] = None) -> Optional[List[Dict[str, Any]]]:
    """A cell's per-step records from its run folder, else from the archive; None where neither has them."""
    path = cell_dir / "steps.jsonl"
    if path.is_file():
        text = path.read_text()
    elif archive is not None and (archive / f"{cell_dir.name}.steps.jsonl.gz").is_file():
        text = gzip.decompress((archive / f"{cell_dir.name}.steps.jsonl.gz").read_bytes()).decode()
    else:
        return None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def heat_map(ax, runs: List[List[Dict[str, Any]]], key: str, bins: int, title: str) -> None:
    """Share of steps with a negative per-module cosine, per module and bin of training steps, pooled over
    ``runs`` (one list of step records per seed; bin j pools the j-th bin of every run)."""
    names = list(runs[0][0][key])
    n = min(len(r) for r in runs)
    edges = np.linspace(0, n, min(bins, n) + 1).astype(int)
    grid = np.array([[np.mean([rec[key][m] < 0 for recs in runs for rec in recs[a:b]]) if b > a else np.nan
                      for a, b in zip(edges[:-1], edges[1:])] for m in names])
    im = ax.imshow(100 * grid, aspect="auto", cmap="magma", vmin=0, vmax=60, interpolation="nearest")
    ax.set_yticks(range(len(names)), names, fontsize=6)
    ticks = range(0, len(edges) - 1, max(1, (len(edges) - 1) // 5))
    ax.set_xticks(list(ticks), [f"{edges[i] + 1}" for i in ticks], fontsize=7)
    ax.set_xlabel(f"step (bins of ~{n // max(len(edges) - 1, 1)})", fontsize=7)
    ax.set_title(title, fontsize=8)
    return im


def figures(summaries: List[Dict[str, Any]], out: Path, fig_dir: Path, archive: Optional[Path] = None) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    # 1. conflict rate per cell with Wilson intervals, grouped by factor
    order = ["base", "augmentation", "batch", "lr", "model", "layout", "stage"]
    rows = sorted(summaries, key=lambda s: (order.index(s["factor"]) if s["factor"] in order else 99, s["name"]))
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(rows) + 1.2))
    for i, s in enumerate(rows):
        y = len(rows) - 1 - i
        lo, hi = s["conflict_ci"]
        ax.plot([100 * lo, 100 * hi], [y, y], "-", color="tab:blue", lw=3, alpha=0.6)
        ax.plot([100 * s["conflict_rate"]], [y], "o", color="black", ms=4)
    ax.axvline(100 * PAPER_RATE, color="tab:red", ls="--", lw=1, label="paper: ~25 %")
    ax.set_yticks(range(len(rows)), [f"{s['factor']}: {s['value']}" for s in reversed(rows)], fontsize=7)
    ax.set_xlabel("conflicting steps (%), 95 % Wilson interval")
    ax.set_xlim(0, max(40, 100 * max(s["conflict_ci"][1] for s in rows) + 5))
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = fig_dir / "conflict_study_rates.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path.name)
    # 2. per-module conflict heat maps over training for a few cells
    show = [s for s in rows if s["name"] in ("base", "batch4", "chain_harsh", "rawnet2", "aasist_l", "trained_probe",
                                             "trained_probe_b4", "lr1e-2")]
    steps = {s["name"]: [load_steps(out / f"seed{k}" / s["name"], archive / f"seed{k}" if archive else None)
                         for k in s.get("seeds", [1])] for s in show}
    steps = {name: (None if any(r is None for r in runs) else runs) for name, runs in steps.items()}
    if any(r is None for r in steps.values()):
        missing = sorted(k for k, r in steps.items() if r is None)
        log(f"heat map: no step records of {', '.join(missing)} (run folder or archive); "
            f"{fig_dir / 'conflict_study_heatmap.png'} is left as it is")
        if (fig_dir / "conflict_study_heatmap.png").is_file():
            written.append("conflict_study_heatmap.png")
        show = []
    if show:
        cols = min(3, len(show))
        r = math.ceil(len(show) / cols)
        fig, axes = plt.subplots(r, cols, figsize=(4.4 * cols, 2.8 * r + 0.4), squeeze=False, layout="constrained")
        im = None
        for ax, s in zip(axes.flat, show):
            recs = steps[s["name"]]
            key = "layer_cos" if len(recs[0][0]["layer_cos"]) <= 24 else "module_cos"
            what = s["value"] if s["factor"] == "base" else f"{s['factor']}: {s['value']}"
            runs = f", {len(recs)} seeds" if len(recs) > 1 else ""
            im = heat_map(ax, recs, key, 10, f"{what} ({100 * s['conflict_rate']:.0f} % overall{runs})")
        for ax in list(axes.flat)[len(show):]:
            ax.axis("off")
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="steps with negative cosine (%)")
        fig.suptitle("Per-module conflicts over training: share of steps whose two path gradients point apart "
                     "in that module", fontsize=9)
        path = fig_dir / "conflict_study_heatmap.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)
    return written


def markdown(summaries: List[Dict[str, Any]], args: argparse.Namespace, figs: Sequence[str], rel_fig: str) -> str:
    order = ["base", "augmentation", "batch", "lr", "model", "layout", "stage"]
    rows = sorted(summaries, key=lambda s: (order.index(s["factor"]) if s["factor"] in order else 99, s["name"]))
    seeds = sorted({k for s in summaries for k in s.get("seeds", [])})
    lines = [f"### Conflict rate by setting ({len(seeds) or 1} seed(s), one short dual-path run each)", "",
             "| factor | setting | steps | conflict rate (95 % CI) | per seed | 1st half | 2nd half | mean cos "
             "| cos 5–95 % | most conflicting module (rate) | aug / rec grad norm | s / run |",
             "|---|---|---:|---|---|---:|---:|---:|---|---|---:|---:|"]
    for s in rows:
        mods = s.get("layer") or s.get("module") or {}
        worst = max(mods.items(), key=lambda kv: kv[1]["conflict_rate"]) if mods else None
        lo, hi = s["conflict_ci"]
        q = s["cos_quantiles"]
        lines.append("| " + " | ".join([
            s["factor"], s["value"], str(s["steps"]),
            f"{100 * s['conflict_rate']:.1f} % ({100 * lo:.1f}–{100 * hi:.1f})",
            " / ".join(f"{100 * p['conflict_rate']:.1f}" for p in s.get("per_seed", [])) or "–",
            f"{100 * s['conflict_rate_first_half']:.0f} %", f"{100 * s['conflict_rate_second_half']:.0f} %",
            f"{s['mean_cos']:.2f}", f"{q[0]:.2f} to {q[3]:.2f}" if q else "–",
            (f"`{worst[0]}` ({100 * worst[1]['conflict_rate']:.0f} %; {100 * worst[1].get('dot_share', math.nan):.0f} % "
             "of dot mass)") if worst else "–",
            f"{s['norm_ratio_aug_orig']:.2f}", f"{s['seconds']:.0f}"]) + " |")
    seed_words = f"seeds {', '.join(map(str, seeds))}" if seeds else f"seed {getattr(args, 'seed', 1)}"
    lines += ["", f"Each cell: {seed_words}, one run each of {args.epochs} epoch(s) × {args.steps} steps of dual-path "
              "training without alignment from the minibench recipe, one thing changed; no dev split. A row pools "
              "the steps of its seeds: the interval is a Wilson interval over all of them (optimistic, since "
              "the steps of one run are not independent draws; the per-seed rates show the spread between runs), "
              "the module columns and cosines are over the pooled steps. Conflict: the two "
              "path gradients (whole model) have a negative dot product. Module: the cosine restricted to one "
              "layer group's parameters (second-level modules); a module can conflict while the whole model does "
              "not; 'dot mass': that module's share of the summed absolute per-module dot products, i.e. how "
              "much it can move the whole-model sign. Wall times are on the shared 2-core machine (other jobs "
              "running)."]
    missing = [c for c in getattr(args, "planned", []) if c not in {s["name"] for s in summaries}]
    if missing:
        lines += ["", f"Not finished yet ({len(missing)} of {len(missing) + len(summaries)} cells): "
                  + ", ".join(f"`{m}`" for m in missing) + ". Rerunning `bench/conflict_study.py` runs them "
                  "(finished cells are skipped) and regenerates this section."]
    runs_left = [r for r in getattr(args, "missing_runs", []) if r.rsplit(" seed ", 1)[0] not in missing]
    if runs_left:
        lines += ["", f"Runs not finished yet in rows shown ({len(runs_left)}): " + ", ".join(runs_left)
                  + "; those rows pool the seeds they have."]
    lines += [""] + [f"![{f}]({rel_fig}/{f})" for f in figs]
    return "\n".join(lines) + "\n"


def write_report(report: Path, table: str) -> None:
    block = f"{BEGIN}\n<!-- generated by bench/conflict_study.py; do not edit by hand -->\n\n{table}\n{END}"
    text = report.read_text() if report.exists() else "# Results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write_text(report, text)
