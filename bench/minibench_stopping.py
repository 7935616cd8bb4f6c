"""Where training stopped: the halting epoch of each run, against its EER and against the baseline's.

Two paragraphs under every grid's training table (``minibench_report.markdown``):

* :func:`stopping_and_eer` / :func:`stopping_sentence`: how the number of epochs a run trained goes with
  its EER (early stopping on a noisy dev loss ends each seed's run somewhere else);
* :func:`best_epochs_paired` / :func:`best_epochs_sentence`: the epoch of the best dev loss, paired by seed
  against the baseline, which is how the paper's "fewer epochs to converge" is tested here.

Rows are the per-method rows of ``minibench_report.summarize`` (keys ``method``, ``label``, ``seeds``,
``epochs_run``, ``best_epoch``, ``<split>_eer``). Torch-free.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from dpda.evaluation.multiplicity import t_test_p
from dpda.evaluation.power import t_interval

#: the test splits every cell is scored on
SPLITS = ("eval", "ood_dev")


def _fmt(v: Optional[float], spec: str = ".1f", suffix: str = "") -> str:
    """A number for the report's prose and tables; "–" for a missing or NaN value."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:{spec}}{suffix}"


def stopping_and_eer(rows: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """How the number of epochs a run trained goes with its EER, over the runs of all methods.

    Per split: Pearson r over the pooled runs, and within methods (each method's mean epochs and mean EER
    removed first, so that a method that both trains longer and scores better does not make the
    association), with the within-method least-squares slope in EER points per epoch. None when fewer than
    4 runs or when every run trained the same number of epochs (no early stopping acted).
    """
    def pooled_and_centred(key: str):
        values = [np.asarray(r[key], dtype=np.float64) for r in rows]
        return np.concatenate(values), np.concatenate([v - v.mean() for v in values])

    x, xc = pooled_and_centred("epochs_run")
    if x.size < 4 or np.unique(x).size < 2:
        return None
    out: Dict[str, Any] = {"runs": int(x.size)}
    for s in SPLITS:
        y, yc = pooled_and_centred(f"{s}_eer")
        out[s] = {"r": float(np.corrcoef(x, y)[0, 1]) if y.std() > 0 else math.nan,
                  "r_within": float(np.corrcoef(xc, yc)[0, 1]) if xc.any() and yc.any() else math.nan,
                  "slope": float((xc @ yc) / (xc @ xc)) if xc.any() else math.nan}
    return out


def stopping_sentence(assoc: Dict[str, Any]) -> str:
    """The early-stopping paragraph under the training table."""
    parts = [f"{s} r {_fmt(assoc[s]['r'], '+.2f')} (within methods {_fmt(assoc[s]['r_within'], '+.2f')}, "
             f"{_fmt(assoc[s]['slope'], '+.2f')} EER points per epoch)" for s in SPLITS]
    return (f"Epochs trained and EER, over the {assoc['runs']} runs above: Pearson r between the number of epochs a "
            "run trained (until early stopping or the epoch limit ended it) and its EER: " + "; ".join(parts)
            + ". 'Within methods' removes each method's mean epochs and mean EER first, and the slope is over those "
            "centred values. "
            "Early stopping halts each run at a point set by its seed's noisy dev loss; a clearly non-zero r says "
            "that part of the seed-to-seed spread above goes with where training stopped (an association, not a "
            "cause: a run that learns well may also keep lowering its dev loss for longer).")


def best_epochs_paired(rows: Sequence[Dict[str, Any]], baseline: str, level: float = 0.95) -> List[Dict[str, Any]]:
    """Per method other than ``baseline``: its best dev-loss epoch minus the baseline's, paired by seed.

    Each entry: ``label``, ``seeds`` (the common ones, sorted), ``diffs`` (epochs), ``mean``, ``ci`` (Student-t
    interval at ``level`` over the seeds), ``p`` (two-sided one-sample t test), the counts ``earlier`` /
    ``same`` / ``later``, ``sign_p`` (two-sided exact sign test over the seeds that differ) and ``verdict``:
    "fewer" / "more" only when the t interval excludes 0 *and* ``sign_p < 1 - level`` (best epochs are small
    integers, often tied: three seeds that all differ by the same number of epochs have a t interval of one
    point, and the sign test keeps that from being called resolved), else "not resolved". Methods sharing
    fewer than 2 seeds with the baseline are left out; no baseline row gives an empty list.
    """
    by_method = {r["method"]: r for r in rows}
    if baseline not in by_method:
        return []
    base = dict(zip(by_method[baseline]["seeds"], by_method[baseline]["best_epoch"]))
    out = []
    for r in rows:
        if r["method"] == baseline:
            continue
        mine = dict(zip(r["seeds"], r["best_epoch"]))
        seeds = sorted(set(mine) & set(base))
        if len(seeds) < 2:
            continue
        diffs = [float(mine[s] - base[s]) for s in seeds]
        earlier, later = sum(d < 0 for d in diffs), sum(d > 0 for d in diffs)
        lo, hi = t_interval(diffs, level)
        sign_p = sign_test_p(earlier, later)
        resolved = (hi < 0 or lo > 0) and sign_p < 1.0 - level
        out.append({"label": r.get("label", r["method"]), "seeds": seeds, "diffs": diffs,
                    "mean": float(np.mean(diffs)), "ci": (lo, hi), "p": t_test_p(diffs), "sign_p": sign_p,
                    "earlier": earlier, "same": len(diffs) - earlier - later, "later": later,
                    "verdict": ("fewer" if hi < 0 else "more") if resolved else "not resolved"})
    return out


def sign_test_p(below: int, above: int) -> float:
    """Two-sided exact sign test: ``below`` differences under 0 and ``above`` over 0 (ties dropped)."""
    n = below + above
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(below, above) + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def best_epochs_sentence(paired: Sequence[Dict[str, Any]], baseline_label: str) -> str:
    """The paragraph on epochs to the best dev loss (empty when there is nothing to pair)."""
    if not paired:
        return ""
    parts = []
    for c in paired:
        lo, hi = c["ci"]
        spread = (f"{lo:+.1f} on every seed, no spread" if lo == hi
                  else f"t interval {lo:+.1f} to {hi:+.1f}, p {_fmt(c['p'], '.2f')}")
        parts.append(f"{c['label']} {c['mean']:+.1f} ({spread}; earlier on {c['earlier']}, same on {c['same']}, "
                     f"later on {c['later']} of {len(c['seeds'])} seeds, sign test p {c['sign_p']:.2f}; "
                     f"{c['verdict']})")
    return (f"Epochs to the best dev loss against {baseline_label}, paired by seed (method − baseline, epochs; "
            "95 % intervals): " + "; ".join(parts) + ". 'Fewer' or 'more' only when the t interval excludes 0 and "
            "the sign test's p is below 0.05 (best epochs are small integers with ties; with 3 seeds the sign test "
            "cannot go below 0.25), per comparison, without a multiplicity adjustment. The best epoch is the "
            "checkpoint early stopping keeps; with a noisy dev loss it moves by several epochs between seeds, "
            "and a run that stops sooner also has fewer epochs in which to find a later best.")
