"""Parity of dpda.metrics with the official ASVspoof / AASIST implementations.

Reference values: ``$DPDA_REFERENCE_DIR/metrics`` (see its README): EER and
DET curves (AASIST / 2021 / ASVspoof 5 packages), min t-DCF legacy and 2021,
ASVspoof 5 minDCF / actDCF / Cllr. Counts-based metrics match to 1e-12
relative; thresholds are input scores and match exactly.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dpda.metrics import (
    act_dcf,
    asv_operating_point,
    cllr,
    compute_eer,
    det_curve,
    min_dcf,
    min_tdcf_2021,
    min_tdcf_legacy,
    tdcf_2021_weights,
)

CM_CASES = [
    "small_distinct", "ties_rounded", "extreme", "llr_overflow", "large_realistic",
    "perfect_separation", "inverted", "imbalanced_tiny", "float32_logits",
]
ASV_SETS = ["asvA", "asvB_ties"]
RTOL = 1e-12


@pytest.fixture(scope="module")
def ref(reference_dir):
    d = reference_dir / "metrics"
    values = json.loads((d / "metric_reference_values.json").read_text())
    arrays = np.load(d / "metric_inputs_and_curves.npz")
    return values, arrays


def cm_scores(arrays, case):
    return arrays[f"cm__{case}__bonafide"], arrays[f"cm__{case}__spoof"]


def asv_point(arrays, asv_set):
    return asv_operating_point(
        arrays[f"asv__{asv_set}__tar"], arrays[f"asv__{asv_set}__non"], arrays[f"asv__{asv_set}__spoof"]
    )


def test_reference_covers_every_case(ref):
    values, _ = ref
    assert sorted(values["cm"]) == sorted(CM_CASES)


@pytest.mark.parametrize("case", CM_CASES)
def test_eer_and_threshold(ref, case):
    values, arrays = ref
    expected = values["cm"][case]
    bona, spoof = cm_scores(arrays, case)
    eer, thr = compute_eer(bona, spoof)
    assert eer == pytest.approx(expected["eer"], rel=RTOL, abs=1e-15)
    assert thr == expected["eer_threshold"]


@pytest.mark.parametrize("case", [c for c in CM_CASES if c != "large_realistic"])
def test_det_curve_points(ref, case):
    _, arrays = ref
    bona, spoof = cm_scores(arrays, case)
    frr, far, thr = det_curve(bona, spoof)
    np.testing.assert_allclose(frr, arrays[f"cm__{case}__det_frr"], rtol=RTOL, atol=0)
    np.testing.assert_allclose(far, arrays[f"cm__{case}__det_far"], rtol=RTOL, atol=0)
    np.testing.assert_array_equal(thr, arrays[f"cm__{case}__det_thresholds"])


@pytest.mark.parametrize("asv_set", ASV_SETS)
def test_asv_operating_point(ref, asv_set):
    values, arrays = ref
    expected = values["asv"][asv_set]
    asv = asv_point(arrays, asv_set)
    assert asv.threshold == expected["asv_threshold"]
    assert asv.eer == pytest.approx(expected["eer_asv"], rel=RTOL)
    for name in ("Pfa_asv", "Pmiss_asv", "Pmiss_spoof_asv", "Pfa_spoof_asv"):
        assert getattr(asv, name) == pytest.approx(expected[name], rel=RTOL, abs=1e-15), name
    c0, c1, c2 = tdcf_2021_weights(asv)
    assert (c0, c1, c2) == pytest.approx((expected["C0_2021"], expected["C1_2021"], expected["C2_2021"]), rel=RTOL)


@pytest.mark.parametrize("asv_set", ASV_SETS)
@pytest.mark.parametrize("case", CM_CASES)
def test_min_tdcf_both_forms(ref, case, asv_set):
    values, arrays = ref
    expected = values["tandem"][f"{case}__{asv_set}"]
    bona, spoof = cm_scores(arrays, case)
    asv = asv_point(arrays, asv_set)
    for form, fn in (("legacy", min_tdcf_legacy), ("2021", min_tdcf_2021)):
        res = fn(bona, spoof, asv)
        assert res.min_tdcf == pytest.approx(expected[f"min_tDCF_{form}"], rel=RTOL, abs=1e-15), form
        assert res.index == expected[f"min_tDCF_{form}_index"], form
        assert res.threshold == expected[f"min_tDCF_{form}_threshold"], form
        key = f"tdcf__{case}__{asv_set}__{form}_curve"
        if key in arrays.files:
            np.testing.assert_allclose(res.curve, arrays[key], rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("case", CM_CASES)
def test_asvspoof5_dcf_and_cllr(ref, case):
    values, arrays = ref
    expected = values["cm"][case]
    bona, spoof = cm_scores(arrays, case)
    mdcf = min_dcf(bona, spoof)
    assert mdcf.dcf == pytest.approx(expected["asv5_minDCF"], rel=RTOL, abs=1e-15)
    assert mdcf.threshold == expected["asv5_minDCF_threshold"]
    adcf = act_dcf(bona, spoof)
    assert adcf.dcf == pytest.approx(expected["asv5_actDCF"], rel=RTOL, abs=1e-15)
    assert adcf.threshold == pytest.approx(expected["asv5_actDCF_threshold"], rel=1e-15)
    value = cllr(bona, spoof)
    assert value == pytest.approx(expected["cllr_numerically_stable"], rel=RTOL)
    official = expected["asv5_cllr_official"]
    if math.isfinite(official):
        assert value == pytest.approx(official, rel=RTOL)
    else:
        # The official log1p(exp(.)) overflows; ours stays finite by design.
        assert math.isfinite(value) and value > 100
