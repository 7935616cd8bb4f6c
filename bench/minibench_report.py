"""The tables, plots and report sections of a minibench grid (``bench/minibench.py``).

:func:`summarize` reduces the per-cell results (``result.json`` / archived ``cell.json``) to one row per
method; :func:`markdown` and :func:`stats_markdown` render them (and the paired statistics of
``bench/minibench_stats.py``) as the markdown that :func:`write_report` puts between a section's markers
of ``docs/RESULTS.md``; :func:`plot` and :func:`plot_paired` draw the figures it links.
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from dpda.fileio import atomic_write_text
from minibench_stopping import (  # noqa: F401  (SPLITS, stopping_* re-exported for callers)
    SPLITS, _fmt, best_epochs_paired, best_epochs_sentence, stopping_and_eer, stopping_sentence)

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- minibench:begin -->", "<!-- minibench:end -->"


def markers(section: str) -> tuple:
    """The begin / end markers of a generated section of the report ("main": the grid's own)."""
    if section == "main":
        return BEGIN, END
    return f"<!-- minibench:{section}:begin -->", f"<!-- minibench:{section}:end -->"


def figure_prefix(section: str) -> str:
    return "minibench_" if section == "main" else f"minibench_{section}_"


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


def _p(p: Optional[float]) -> str:
    """A p-value in a table: 3 decimals, '<0.001' below that."""
    return "–" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


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
             "| method | split | per seed | mean | bootstrap CI | relative | seed-t CI | seed-t p (Holm) | verdict | "
             "seeds for ±5 % |",
             "|---|---|---|---:|---|---|---|---|---|---:|"]
    from dpda.evaluation.multiplicity import holm_adjust, t_test_p
    from dpda.evaluation.paired import PairedComparison, power_sentence

    rows = [(split, name, c["pooled"]) for split, entry in splits.items() for name, c in entry["methods"].items()]
    raw_p = [t_test_p(p["diff"]) for _, _, p in rows]
    holm_p = holm_adjust(raw_p)
    family = sum(1 for q in raw_p if q is not None)
    sentences = []
    for (split, name, p), q, q_holm in zip(rows, raw_p, holm_p):
        t_ci = _ci(*p["t_ci"]) if p["t_ci"] else "–"
        verdict = {"better": "**better**", "worse": "**worse**"}.get(p["direction"], "not resolved")
        judged_family_wise = p["direction"] in ("better", "worse") and q_holm is not None
        if judged_family_wise and q_holm >= 0.05:
            verdict += " (not family-wise)"
        lines.append("| " + " | ".join([
            labels.get(name, name), split, " / ".join(f"{d:+.2f}" for d in p["diff"]), f"{p['mean_diff']:+.2f}",
            _ci(*p["ci"]), f"{p['rel']:+.1f} % {_ci(*p['rel_ci'], '+.1f')}", t_ci,
            "–" if q is None else f"{_p(q)} ({_p(q_holm)})", verdict,
            str(p["seeds_needed"]) if p["seeds_needed"] is not None else "–"]) + " |")
        family_note = ""
        if judged_family_wise:
            family_note = (f" Family-wise (Holm over the {family} comparisons of this table): seed-t p {_p(q)}, "
                           f"adjusted {_p(q_holm)}: " + ("also resolved." if q_holm < 0.05 else
                                                         "not resolved family-wise, so it may be a chance finding."))
        sentences.append(f"* **{labels.get(name, name)}, {split}**: {p['sentence']}.{family_note} Power: "
                         f"{power_sentence(PairedComparison(**p))}.")
    trials = {p["trials"] for e in splits.values() for c in e["methods"].values() for p in [c["pooled"]]}
    lines += ["", f"Per seed: the method's EER minus the baseline's with the same seed, on the same test trials. "
              f"Bootstrap CI: percentile interval of {some['n_boot']} replicates (generator seed "
              f"{stats.get('boot_seed', 0)}); each replicate draws the seeds with replacement, then the bona fide and "
              "the spoof trials with replacement, separately (the EER is a rank statistic of the two classes), once "
              "for all seeds and both methods, since every run is scored on the same test set. Seed-t CI: Student-t "
              "interval of the per-seed differences (the seed-only view; with few seeds the bootstrap over seeds is "
              "optimistic). A difference is called better / worse only when both intervals exclude 0. Seed-t p: "
              "two-sided one-sample t test of the per-seed differences (p < 0.05 exactly when the seed-t CI excludes "
              f"0); in brackets Holm's adjustment over the {family} comparisons of this table, which keeps the "
              "chance of any false 'better' / 'worse' in the table at 5 % (unadjusted, it is about "
              f"{100 * (1 - 0.95 ** family):.0f} % for {family} independent tests); a verdict whose adjusted p is "
              "0.05 or more is marked 'not family-wise'. Seeds for "
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
    attack_cells = max((len(e["attack_spoofs"]) * len(e["methods"]) for e in splits.values()), default=0)
    if figures:
        lines += ["", "Bold: resolved (both intervals exclude 0; the seed-t interval is not shown here). Per attack "
                  f"there is no multiplicity adjustment: with up to {attack_cells} cells per table, about "
                  f"{0.05 * attack_cells:.1f} bold cells per table are expected by chance alone if no method "
                  "differed.", "",
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
    assoc = stopping_and_eer(rows)
    if assoc is not None:
        lines += ["", stopping_sentence(assoc)]
    labels = {r["method"]: r["label"] for r in rows}
    epochs = best_epochs_sentence(best_epochs_paired(rows, base), labels.get(base, base))
    if epochs:
        lines += ["", epochs]
    if figures:
        lines += ["", f"![conflict rate per epoch]({figures}/{prefix}conflict_rate.png)",
                  f"![dev loss per epoch]({figures}/{prefix}dev_loss.png)",
                  f"![per-path gradient norms]({figures}/{prefix}grad_norms.png)"]
    return "\n".join(lines) + "\n"


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

    for key, scale, skip_single, ylabel, title in (
            ("conflict_rate", 100.0, True, "conflicting steps (%)", "Conflict rate per epoch (one line per seed)"),
            ("dev_loss", 1.0, False, "dev loss (CE)", "Dev loss per epoch (one line per seed)")):
        fig, ax = plt.subplots(figsize=(7, 4))
        per_method(ax, key, scale, skip_single=skip_single)
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / f"{prefix}{key}.png", dpi=110)
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
