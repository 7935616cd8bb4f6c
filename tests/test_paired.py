"""dpda.evaluation.paired: paired multi-seed EER comparisons with hierarchical bootstrap intervals.

Known answers come from synthetic scores whose population EER is known in closed form: bona fide
scores ~ N(mu, 1) and spoof scores ~ N(0, 1) have EER = Phi(-mu / 2).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from dpda.evaluation.paired import (
    Trials,
    compare,
    compare_eers,
    eer_percent,
    eer_percent_rows,
    power_sentence,
)
from dpda.evaluation.power import seeds_needed, t_interval, trials_factor_needed
from dpda.metrics import compute_eer


def true_eer(mu: float) -> float:
    return 100.0 * NormalDist().cdf(-mu / 2.0)


def experiment(rng, mus, seeds=(1, 2, 3), n=150, shared=0.7, own_view=False):
    """Runs of each method (bona fide mean ``mus[name]``) over ``seeds``, all scored on one test set.

    A trial's score = class mean + sqrt(shared) * (the trial's own value, common to every run of
    every seed) + sqrt(1 - shared) * (run noise): unit variance, so every run's population EER is
    Phi(-mu / 2). With ``own_view`` each method sees its own, independent value of every trial
    (the methods find different trials hard), so the test set's draw moves the paired difference
    the same way for every seed, which averaging over seeds cannot remove.
    """
    a, e = math.sqrt(shared), math.sqrt(1.0 - shared)
    latent = [(rng.standard_normal(n), rng.standard_normal(n)) for _ in (mus if own_view else [0])]
    out = {}
    for i, (name, mu) in enumerate(mus.items()):
        zb, zs = latent[i if own_view else 0]
        out[name] = {s: Trials.of(mu + a * zb + e * rng.standard_normal(n), a * zs + e * rng.standard_normal(n))
                     for s in seeds}
    return out


def test_vectorised_eer_equals_compute_eer_row_by_row_with_ties():
    rng = np.random.default_rng(0)
    bona = rng.normal(1, 1, (7, 23)).round(1)  # coarse scores: many ties within and across classes
    spoof = rng.normal(0, 1, (7, 31)).round(1)
    got = eer_percent_rows(bona, spoof)
    want = [100 * compute_eer(bona[i], spoof[i])[0] for i in range(7)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert eer_percent(Trials.of(bona[0], spoof[0])) == pytest.approx(want[0], abs=1e-12)
    assert eer_percent_rows(np.array([[1.0, 2.0]]), np.array([[0.0]]))[0] == 0.0  # perfectly separated


def test_a_large_known_difference_is_resolved_and_the_interval_covers_it():
    rng = np.random.default_rng(1)
    runs = experiment(rng, {"m": 2.0, "b": 1.0}, seeds=(1, 2, 3, 4), n=600)
    c = compare(runs["m"], runs["b"], names=("m", "b"), n_boot=300, seed=0)
    truth = true_eer(2.0) - true_eer(1.0)  # -14.99 points
    assert c.ci[0] < truth < c.ci[1]
    assert c.resolved and c.direction == "better" and c.ci[1] < 0 and c.t_ci[1] < 0
    rel_truth = 100 * truth / true_eer(1.0)
    assert c.rel_ci[0] < rel_truth < c.rel_ci[1]
    assert c.sentence.startswith("better than b by ") and "same sign on 4 of 4 seeds" in c.sentence
    assert c.trial_counts == (600, 600) and c.seeds == [1, 2, 3, 4] and len(c.diff) == 4
    assert c.mean_diff == pytest.approx(np.mean(c.diff)) and c.diff[0] == pytest.approx(c.method_eer[0] - c.baseline_eer[0])
    # the same comparison the other way round is "worse", with the mirrored interval
    r = compare(runs["b"], runs["m"], names=("b", "m"), n_boot=300, seed=0)
    assert r.direction == "worse" and r.ci == pytest.approx((-c.ci[1], -c.ci[0]), abs=1e-9)


def test_interval_coverage_on_a_shared_test_set():
    """Nominal 90 % intervals cover the true difference in most of 40 independent experiments.

    Each method finds its own trials hard and the run noise is small, so most of the error of the
    paired difference is the test set's and is common to every seed: an interval that resampled
    only seeds would be far too narrow here, and one that drew the trials anew for every seed
    (nested) would be narrower than the shared draw.
    """
    rng = np.random.default_rng(2)
    truth = true_eer(1.6) - true_eer(1.2)
    covered, seed_only_covered, widths = 0, 0, {"shared": [], "per_seed": []}
    for k in range(40):
        runs = experiment(rng, {"m": 1.6, "b": 1.2}, n=120, shared=0.9, own_view=True)
        for mode in ("shared", "per_seed"):
            c = compare(runs["m"], runs["b"], n_boot=200, level=0.9, seed=k, trials=mode)
            widths[mode].append(c.ci[1] - c.ci[0])
            if mode == "shared":
                covered += c.ci[0] <= truth <= c.ci[1]
                seed_only = compare_eers(dict(zip(c.seeds, c.method_eer)), dict(zip(c.seeds, c.baseline_eer)),
                                         n_boot=200, level=0.9, seed=k)
                seed_only_covered += seed_only.ci[0] <= truth <= seed_only.ci[1]
    assert covered >= 32, f"coverage {covered}/40 for a nominal 90 % interval"
    assert seed_only_covered < 28, f"a seed-only bootstrap covered {seed_only_covered}/40: the test is not sensitive"
    assert np.mean(widths["shared"]) > 1.1 * np.mean(widths["per_seed"])


def test_no_true_difference_is_not_resolved():
    rng = np.random.default_rng(3)
    runs = experiment(rng, {"m": 1.0, "b": 1.0}, n=300)
    c = compare(runs["m"], runs["b"], names=("m", "b"), n_boot=300, seed=0)
    assert not c.resolved and c.direction == "unresolved" and c.ci[0] < 0 < c.ci[1]
    assert c.sentence.startswith("not resolved at this budget (3 seeds)")


def test_deterministic_given_the_seed():
    rng = np.random.default_rng(4)
    runs = experiment(rng, {"m": 1.5, "b": 1.0}, n=100)
    a = compare(runs["m"], runs["b"], n_boot=200, seed=7)
    b = compare(runs["m"], runs["b"], n_boot=200, seed=7)
    c = compare(runs["m"], runs["b"], n_boot=200, seed=8)
    assert a.as_dict() == b.as_dict()
    assert a.ci != c.ci and a.diff == c.diff  # the draws move the interval, never the point estimates


def test_degenerate_inputs_fail_with_clear_errors():
    rng = np.random.default_rng(5)
    runs = experiment(rng, {"m": 1.5, "b": 1.0}, n=50)
    with pytest.raises(ValueError, match=r"same seeds: only m has \[\], only b has \[3\]"):
        compare({s: runs["m"][s] for s in (1, 2)}, runs["b"], names=("m", "b"))
    with pytest.raises(ValueError, match="m: no seeds"):
        compare({}, runs["b"], names=("m", "b"))
    short = dict(runs["m"])
    short[2] = Trials.of(runs["m"][2].bonafide[:40], runs["m"][2].spoof)
    with pytest.raises(ValueError, match="seed 2: 40 bona fide / 50 spoof trials, but 50 / 50 elsewhere"):
        compare(short, runs["b"])
    with pytest.raises(ValueError, match="spoof: no scores"):
        Trials.of([1.0], [])
    with pytest.raises(ValueError, match="NaN or infinite"):
        Trials.of([1.0, float("nan")], [0.0])
    with pytest.raises(ValueError, match="n_boot"):
        compare(runs["m"], runs["b"], n_boot=50)
    with pytest.raises(ValueError, match="trials must be one of"):
        compare(runs["m"], runs["b"], trials="nested")
    with pytest.raises(ValueError, match="level"):
        compare(runs["m"], runs["b"], level=95)
    with pytest.raises(ValueError, match="finite"):
        compare_eers({1: 20.0, 2: float("nan")}, {1: 20.0, 2: 21.0})


def test_one_seed_is_never_resolved():
    rng = np.random.default_rng(6)
    runs = experiment(rng, {"m": 2.5, "b": 0.5}, seeds=(1,), n=400)
    c = compare(runs["m"], runs["b"], n_boot=200)
    assert c.ci[1] < 0  # the test set alone separates them ...
    assert not c.resolved and c.t_ci is None and c.seed_sd is None and c.seeds_needed is None
    assert c.sentence.startswith("not resolved (one seed")  # ... but the seed-to-seed spread is unknown
    assert "unknown" in power_sentence(c)


def test_seed_only_comparison_from_per_seed_eers():
    same = compare_eers({1: 18.0, 2: 19.0, 3: 20.0}, {1: 20.0, 2: 21.0, 3: 22.0}, names=("m", "b"), n_boot=500)
    assert same.diff == pytest.approx([-2.0, -2.0, -2.0]) and same.ci == pytest.approx((-2.0, -2.0))
    assert same.resolved and same.sentence.startswith("better than b by 2.00 ± 0.00 EER points")
    assert same.trials == "none" and same.trial_counts is None
    mixed = compare_eers({1: 18.0, 2: 23.0, 3: 20.0}, {1: 20.0, 2: 21.0, 3: 22.0}, n_boot=500)
    assert not mixed.resolved and "t interval" in mixed.sentence
    lo, hi = t_interval(mixed.diff, 0.95)
    assert (lo + hi) / 2 == pytest.approx(np.mean(mixed.diff))
    # 2 degrees of freedom: t_0.975 = 4.303
    assert hi - lo == pytest.approx(2 * 4.302653 * np.std(mixed.diff, ddof=1) / math.sqrt(3), rel=1e-5)


def test_seeds_needed_is_the_smallest_sufficient_number():
    from scipy.stats import t

    def enough(n, sd, se, delta):
        return (t.ppf(0.975, n - 1) + t.ppf(0.8, n - 1)) * math.sqrt(sd ** 2 / n + se ** 2) <= delta

    n, note = seeds_needed(1.0, 0.0, 1.0)
    assert enough(n, 1.0, 0.0, 1.0) and not enough(n - 1, 1.0, 0.0, 1.0)
    assert 8 <= n <= 12 and note == f"{n} seeds per method"  # the normal approximation gives 7.85
    m, _ = seeds_needed(1.0, 0.2, 1.0)
    assert m > n  # the test set's error adds to every seed count
    assert seeds_needed(1.0, 0.5, 1.0)[0] is None  # 2.8 * 0.5 > 1: more seeds cannot make up for the test set
    assert "larger test set" in seeds_needed(1.0, 0.5, 1.0)[1]
    assert "at least 2.0x as many trials even with unlimited seeds; 8 seeds are too few" in seeds_needed(1.0, 0.5, 1.0)[1]
    assert "with 8 seeds, about 4.0x larger" in seeds_needed(0.5, 0.5, 1.0)[1]
    c = compare_eers({1: 18.0, 2: 23.0, 3: 20.0, 4: 19.0}, {1: 20.0, 2: 21.0, 3: 22.0, 4: 20.0}, n_boot=300)
    assert c.seeds_needed == seeds_needed(c.seed_sd, 0.0, 0.05 * np.mean(c.baseline_eer))[0]
    assert f"about {c.seeds_needed} seeds per method" in power_sentence(c)


def test_trials_factor_needed_is_the_growth_that_makes_a_difference_detectable():
    from scipy.stats import t

    z = 1.959964 + 0.841621
    # unlimited seeds: SE / sqrt(k) must come down to delta / z
    assert trials_factor_needed(1.0, 0.5, 1.0) == pytest.approx((z * 0.5) ** 2, rel=1e-5)
    assert trials_factor_needed(1.0, 0.1, 1.0) == 1.0  # already large enough
    k = trials_factor_needed(0.5, 0.5, 1.0, n_seeds=8)
    q = t.ppf(0.975, 7) + t.ppf(0.8, 7)
    assert q * math.sqrt(0.5 ** 2 / 8 + 0.5 ** 2 / k) == pytest.approx(1.0, rel=1e-9)  # exactly enough
    assert k > trials_factor_needed(1.0, 0.5, 1.0)  # the seeds' share leaves less room for the test set
    assert trials_factor_needed(1.0, 0.5, 1.0, n_seeds=8) is None  # 3.26 * sqrt(1 / 8) > 1: 8 seeds cannot
    assert trials_factor_needed(None, 0.5, 1.0, n_seeds=8) is None
    with pytest.raises(ValueError, match="n_seeds"):
        trials_factor_needed(1.0, 0.5, 1.0, n_seeds=1)


def test_paired_reexports_the_power_statements():
    import dpda.evaluation.paired as paired
    import dpda.evaluation.power as power

    for name in power.__all__:
        assert getattr(paired, name) is getattr(power, name)
        assert name in paired.__all__


def test_loads_without_torch():
    from tests.test_architecture import loaded_after

    mods = loaded_after("from dpda.evaluation.paired import Trials, compare\n"
                        "c = compare({1: Trials.of([1.0, 2.0], [0.0]), 2: Trials.of([1.0, 0.5], [0.7])},\n"
                        "            {1: Trials.of([0.0, 2.0], [1.0]), 2: Trials.of([1.0, 0.2], [0.3])}, n_boot=200)\n"
                        "assert len(c.diff) == 2")
    assert "torch" not in mods
