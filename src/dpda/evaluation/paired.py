"""Paired multi-seed comparisons of EERs with bootstrap confidence intervals (torch-free).

A comparison asks whether a method's EER differs from a baseline's when both
are trained with the same seeds and scored on the same test trials. The
question has two sources of noise: the training seed (initial weights, data
order, augmentation draws) and the test set (a finite sample of bona fide and
spoof trials). Both are resampled:

* **seeds**: a replicate draws ``n`` seeds with replacement from the ``n``
  seeds run;
* **trials**: bona fide and spoof trials are drawn with replacement,
  separately (the EER is a rank statistic of the two classes, whose sizes are
  fixed by the protocol), and the EER of every drawn seed is recomputed on the
  drawn trials (:func:`eer_percent_rows`, identical to
  :func:`dpda.metrics.compute_eer` row by row).

``trials="shared"`` (the default) draws the trials once per replicate and uses
them for every seed and for both methods: the test set is one fixed sample
that every run is scored on, so its sampling error is common to all seeds and
does not average out over them. ``trials="per_seed"`` draws them anew for
every seed (a nested design: it treats each seed as scored on its own test
set, and gives narrower intervals on a shared test set). Method and baseline
always see the same drawn trials (that is the pairing).

What a comparison reports (:class:`PairedComparison`): the paired difference
per seed (method minus baseline, EER points; negative = the method is
better), its mean with the percentile interval of the hierarchical bootstrap,
the relative change of the mean EER with its interval, a Student-t interval of
the per-seed differences (the seed-only view: with 3 seeds the bootstrap over
seeds has only 10 distinct draws and is optimistic, the t interval is not),
and a sentence. A difference is called *resolved* only when both intervals
exclude zero. ``seeds_needed`` (:mod:`dpda.evaluation.power`) is the power
statement: from the observed seed-to-seed spread of the paired differences and
the test set's own sampling error, how many seeds a two-sided test at
``1 - level`` needs for the given ``power`` to detect a relative difference of
``target_rel`` (5 % by default); ``None`` with a reason when the test set's
sampling error alone is too large.

Everything is deterministic given ``seed`` (the bootstrap's random generator):
the same inputs and seed give the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

from dpda.evaluation.power import seeds_needed, t_interval, trials_factor_needed

TRIAL_MODES = ("shared", "per_seed")
#: rows of the bootstrap evaluated at once (bounds the memory of the vectorised EER)
CHUNK = 256


@dataclass(frozen=True)
class Trials:
    """The scores of one run on one test split: bona fide and spoof, each in a fixed trial order.

    Two :class:`Trials` that are compared must list the same trials in the same
    order (a paired comparison); only the counts can be checked here.
    """

    bonafide: np.ndarray
    spoof: np.ndarray

    @classmethod
    def of(cls, bonafide: ArrayLike, spoof: ArrayLike, what: str = "trials") -> "Trials":
        b = _scores(bonafide, f"{what}: bona fide")
        s = _scores(spoof, f"{what}: spoof")
        return cls(b, s)

    @property
    def counts(self) -> Tuple[int, int]:
        return int(self.bonafide.size), int(self.spoof.size)


def _scores(values: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{what}: no scores (both classes need at least one trial)")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: {int((~np.isfinite(arr)).sum())} score(s) are NaN or infinite")
    return arr


def eer_percent_rows(bonafide: np.ndarray, spoof: np.ndarray) -> np.ndarray:
    """EER (percent) of every row: ``bonafide`` (R, Nb) and ``spoof`` (R, Ns) scores, higher = bona fide.

    Row ``r`` gives ``100 * compute_eer(bonafide[r], spoof[r])[0]`` exactly (the
    ASVspoof convention: stable sort with bona fide first among ties, the first
    minimum of ``|frr - far|``), without a Python loop over rows.
    """
    bonafide, spoof = np.atleast_2d(bonafide), np.atleast_2d(spoof)
    rows, n_b = bonafide.shape
    n_s = spoof.shape[1]
    if spoof.shape[0] != rows:
        raise ValueError(f"bonafide has {rows} rows, spoof {spoof.shape[0]}")
    if n_b == 0 or n_s == 0:
        raise ValueError("both classes need at least one trial")
    scores = np.concatenate([bonafide, spoof], axis=1)
    is_bona = np.concatenate([np.ones(n_b), np.zeros(n_s)])
    order = np.argsort(scores, axis=1, kind="stable")
    bona_rejected = np.cumsum(is_bona[order], axis=1)
    rank = np.arange(1, n_b + n_s + 1)
    frr = np.concatenate([np.zeros((rows, 1)), bona_rejected / n_b], axis=1)
    far = np.concatenate([np.ones((rows, 1)), (n_s - (rank - bona_rejected)) / n_s], axis=1)
    k = np.argmin(np.abs(frr - far), axis=1)
    idx = np.arange(rows)
    return 100.0 * (frr[idx, k] + far[idx, k]) / 2.0


def eer_percent(trials: Trials) -> float:
    """EER (percent) of one run's trials."""
    return float(eer_percent_rows(trials.bonafide[None, :], trials.spoof[None, :])[0])


@dataclass
class PairedComparison:
    """A method against the baseline on one split (EER points; negative differences favour the method)."""

    method: str
    baseline: str
    seeds: List[int]
    method_eer: List[float]                  # per seed, percent
    baseline_eer: List[float]
    diff: List[float]                        # per seed, method - baseline, EER points
    mean_diff: float
    ci: Tuple[float, float]                  # hierarchical bootstrap, EER points
    rel: float                               # 100 * mean_diff / mean baseline EER, percent
    rel_ci: Tuple[float, float]
    t_ci: Optional[Tuple[float, float]]      # Student t over the per-seed differences (None: one seed)
    level: float
    n_boot: int
    trials: str                              # "shared", "per_seed" or "none" (per-seed EERs only)
    trial_counts: Optional[Tuple[int, int]]  # (bona fide, spoof) trials per run, None without trial scores
    seed_sd: Optional[float]                 # SD of the per-seed differences (None: one seed)
    trial_se: Optional[float]                # SE of the mean difference from the test set alone (seeds fixed)
    resolved: bool
    direction: str                           # "better", "worse" or "unresolved"
    target_rel: float
    power: float
    seeds_needed: Optional[int]
    seeds_needed_note: str
    sentence: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def half_width(self) -> float:
        return (self.ci[1] - self.ci[0]) / 2.0

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _check_options(n_boot: int, level: float, trials: str, target_rel: float, power: float) -> None:
    if not isinstance(n_boot, int) or n_boot < 200:
        raise ValueError(f"n_boot must be an integer >= 200 (percentile intervals need enough replicates), got {n_boot!r}")
    if not 0.5 <= level < 1.0:
        raise ValueError(f"level must be in [0.5, 1), got {level!r}")
    if trials not in TRIAL_MODES:
        raise ValueError(f"trials must be one of {TRIAL_MODES}, got {trials!r}")
    if not target_rel > 0:
        raise ValueError(f"target_rel must be > 0, got {target_rel!r}")
    if not 0.5 <= power < 1.0:
        raise ValueError(f"power must be in [0.5, 1), got {power!r}")


def _common_seeds(method: Mapping[int, Any], baseline: Mapping[int, Any], names: Tuple[str, str]) -> List[int]:
    if not method or not baseline:
        empty = names[0] if not method else names[1]
        raise ValueError(f"{empty}: no seeds to compare")
    if set(method) != set(baseline):
        only_m = sorted(set(method) - set(baseline))
        only_b = sorted(set(baseline) - set(method))
        raise ValueError(f"a paired comparison needs the same seeds: only {names[0]} has {only_m}, "
                         f"only {names[1]} has {only_b}")
    return sorted(method)


def _percentile_ci(values: np.ndarray, level: float) -> Tuple[float, float]:
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [a, 1.0 - a])
    return float(lo), float(hi)


def _draw_trials(rng: np.random.Generator, counts: Tuple[int, int], n_boot: int) -> Tuple[np.ndarray, np.ndarray]:
    n_b, n_s = counts
    return rng.integers(0, n_b, size=(n_boot, n_b)), rng.integers(0, n_s, size=(n_boot, n_s))


def _eer_matrix(runs: Sequence[Trials], draws: Sequence[Tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(n_seeds, n_boot) EERs: run ``i`` on its trial draws ``draws[i]`` (index arrays (n_boot, Nb), (n_boot, Ns))."""
    n_boot = draws[0][0].shape[0]
    out = np.empty((len(runs), n_boot))
    for i, (run, (ib, is_)) in enumerate(zip(runs, draws)):
        for a in range(0, n_boot, CHUNK):
            out[i, a:a + CHUNK] = eer_percent_rows(run.bonafide[ib[a:a + CHUNK]], run.spoof[is_[a:a + CHUNK]])
    return out


def compare(
    method: Mapping[int, Trials],
    baseline: Mapping[int, Trials],
    *,
    names: Tuple[str, str] = ("method", "baseline"),
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    trials: str = "shared",
    target_rel: float = 0.05,
    power: float = 0.8,
) -> PairedComparison:
    """Paired comparison from trial scores: ``{seed: Trials}`` of the method and of the baseline.

    For each seed both runs must have been scored on the same trials (same
    counts and order). See the module docstring for what is resampled.
    """
    _check_options(n_boot, level, trials, target_rel, power)
    seeds = _common_seeds(method, baseline, names)
    counts = None
    for s in seeds:
        for who, run in ((names[0], method[s]), (names[1], baseline[s])):
            if not isinstance(run, Trials):
                raise TypeError(f"{who} seed {s}: expected Trials, got {type(run).__name__}")
            if counts is None:
                counts = run.counts
            elif run.counts != counts:
                raise ValueError(f"{who} seed {s}: {run.counts[0]} bona fide / {run.counts[1]} spoof trials, but "
                                 f"{counts[0]} / {counts[1]} elsewhere: a paired comparison needs every run scored "
                                 "on the same trials")
    assert counts is not None
    rng = np.random.default_rng(seed)
    n = len(seeds)
    seed_draw = rng.integers(0, n, size=(n_boot, n))
    if trials == "shared":
        one = _draw_trials(rng, counts, n_boot)
        draws = [one] * n
    else:
        draws = [_draw_trials(rng, counts, n_boot) for _ in seeds]
    e_m = _eer_matrix([method[s] for s in seeds], draws)
    e_b = _eer_matrix([baseline[s] for s in seeds], draws)
    cols = np.arange(n_boot)[:, None]
    boot_m = e_m.T[cols, seed_draw].mean(axis=1)  # (n_boot,): mean over the drawn seeds, each on its drawn trials
    boot_b = e_b.T[cols, seed_draw].mean(axis=1)
    trial_only = (e_m - e_b).mean(axis=0)          # seeds fixed, trials drawn
    point_m = [eer_percent(method[s]) for s in seeds]
    point_b = [eer_percent(baseline[s]) for s in seeds]
    return _finish(names, seeds, point_m, point_b, boot_m, boot_b, float(trial_only.std(ddof=1)), level, n_boot,
                   trials, counts, target_rel, power)


def compare_eers(
    method: Mapping[int, float],
    baseline: Mapping[int, float],
    *,
    names: Tuple[str, str] = ("method", "baseline"),
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    target_rel: float = 0.05,
    power: float = 0.8,
    trial_se: float = 0.0,
) -> PairedComparison:
    """Paired comparison from per-seed EERs (percent) alone: a bootstrap over seeds only.

    Without trial scores the test set's sampling error cannot be resampled;
    ``trial_se`` (EER points, e.g. a binomial approximation) is then only used
    by the power statement. Prefer :func:`compare` when score files exist.
    """
    _check_options(n_boot, level, "shared", target_rel, power)
    seeds = _common_seeds(method, baseline, names)
    point_m = [float(method[s]) for s in seeds]
    point_b = [float(baseline[s]) for s in seeds]
    for who, values in ((names[0], point_m), (names[1], point_b)):
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{who}: per-seed EERs must be finite numbers, got {values}")
    rng = np.random.default_rng(seed)
    n = len(seeds)
    seed_draw = rng.integers(0, n, size=(n_boot, n))
    boot_m = np.asarray(point_m)[seed_draw].mean(axis=1)
    boot_b = np.asarray(point_b)[seed_draw].mean(axis=1)
    return _finish(names, seeds, point_m, point_b, boot_m, boot_b, float(trial_se), level, n_boot, "none", None,
                   target_rel, power)


def _finish(names, seeds, point_m, point_b, boot_m, boot_b, trial_se, level, n_boot, trials, counts, target_rel,
            power) -> PairedComparison:
    diff = [m - b for m, b in zip(point_m, point_b)]
    mean_b = float(np.mean(point_b))
    mean_diff = float(np.mean(diff))
    ci = _percentile_ci(boot_m - boot_b, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_boot = 100.0 * (boot_m - boot_b) / boot_b
    rel_boot = rel_boot[np.isfinite(rel_boot)]
    rel = 100.0 * mean_diff / mean_b if mean_b > 0 else math.nan
    rel_ci = _percentile_ci(rel_boot, level) if rel_boot.size else (math.nan, math.nan)
    t_ci = t_interval(diff, level)
    seed_sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else None
    excludes = ci[0] > 0 or ci[1] < 0
    t_excludes = t_ci is not None and (t_ci[0] > 0 or t_ci[1] < 0)
    resolved = excludes and t_excludes and (ci[1] < 0) == (t_ci[1] < 0)
    direction = "unresolved" if not resolved else ("better" if mean_diff < 0 else "worse")
    delta = target_rel * mean_b
    if delta > 0:
        needed, note = seeds_needed(seed_sd, trial_se, delta, level, power)
    else:
        needed, note = None, "the baseline's EER is 0: a relative difference is undefined"
    out = PairedComparison(
        method=names[0], baseline=names[1], seeds=list(seeds), method_eer=list(point_m), baseline_eer=list(point_b),
        diff=diff, mean_diff=mean_diff, ci=ci, rel=rel, rel_ci=rel_ci, t_ci=t_ci, level=level, n_boot=n_boot,
        trials=trials, trial_counts=counts, seed_sd=seed_sd, trial_se=trial_se, resolved=resolved,
        direction=direction, target_rel=target_rel, power=power, seeds_needed=needed, seeds_needed_note=note)
    out.sentence = sentence(out)
    return out


def _pts(v: float) -> str:
    return f"{v:+.2f}"


def sentence(c: PairedComparison) -> str:
    """The plain-language verdict of a comparison."""
    pct = f"{round(100 * c.level)} %"
    n = len(c.seeds)
    same_sign = sum(1 for d in c.diff if (d < 0) == (c.mean_diff < 0) and d != 0)
    interval = f"{pct} CI {_pts(c.ci[0])} to {_pts(c.ci[1])}"
    rel = f"{c.rel:+.1f} % relative, CI {c.rel_ci[0]:+.1f} to {c.rel_ci[1]:+.1f} %"
    if n == 1:
        return (f"not resolved (one seed: the seed-to-seed spread is unknown): {_pts(c.mean_diff)} EER points "
                f"({interval} over test trials only; {rel})")
    if c.resolved:
        word = "better" if c.direction == "better" else "worse"
        return (f"{word} than {c.baseline} by {abs(c.mean_diff):.2f} ± {c.half_width:.2f} EER points "
                f"({interval}; {rel}); same sign on {same_sign} of {n} seeds")
    why = []
    if not (c.ci[0] > 0 or c.ci[1] < 0):
        why.append("the bootstrap interval contains 0")
    if c.t_ci is not None and not (c.t_ci[0] > 0 or c.t_ci[1] < 0):
        why.append(f"the seed-level t interval ({_pts(c.t_ci[0])} to {_pts(c.t_ci[1])}) contains 0")
    return (f"not resolved at this budget ({n} seeds): {_pts(c.mean_diff)} EER points ({interval}; {rel}); "
            + "; ".join(why))


def power_sentence(c: PairedComparison) -> str:
    """How many seeds would resolve a ``target_rel`` relative difference, in words."""
    delta = c.target_rel * float(np.mean(c.baseline_eer))
    what = (f"a {100 * c.target_rel:.0f} % relative difference ({delta:.2f} EER points) at "
            f"{100 * (1 - c.level):.0f} % significance with {100 * c.power:.0f} % power")
    if c.seeds_needed is None:
        return f"{what}: {c.seeds_needed_note}"
    sd = f"{c.seed_sd:.2f}" if c.seed_sd is not None else "?"
    return (f"{what} needs about {c.seeds_needed} seeds per method (seed-to-seed SD of the paired difference "
            f"{sd} points, test-set SE {c.trial_se:.2f} points; the SD is itself uncertain with {len(c.seeds)} seeds)")


__all__ = [
    "CHUNK", "PairedComparison", "TRIAL_MODES", "Trials", "compare", "compare_eers", "eer_percent", "eer_percent_rows",
    "power_sentence", "seeds_needed", "sentence", "t_interval", "trials_factor_needed",
]
