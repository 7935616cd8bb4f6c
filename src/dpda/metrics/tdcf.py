"""Tandem detection cost function (t-DCF) of a spoofing countermeasure with an ASV system.

Two forms are provided, each matching its official evaluation package:

* :func:`min_tdcf_legacy`: ASVspoof 2019 (Kinnunen et al., 2018 form), as in
  the 2019 package and AASIST's ``evaluation.compute_tDCF``;
* :func:`min_tdcf_2021`: the revised ASVspoof 2021 form (Kinnunen et al.,
  2020), as in the 2021 ``eval_metrics.compute_tDCF`` (ASVspoof 5 uses it too).

The ASV operating point is the EER threshold of the ASV target/non-target
scores (:func:`asv_operating_point`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, NamedTuple, Optional

import numpy as np
from numpy.typing import ArrayLike

from dpda.metrics.eer import as_scores, compute_eer, det_curve

PSPOOF = 0.05

#: ASVspoof 2019 cost model (legacy t-DCF).
COST_MODEL_2019: Dict[str, float] = {
    "Pspoof": PSPOOF,
    "Ptar": (1 - PSPOOF) * 0.99,
    "Pnon": (1 - PSPOOF) * 0.01,
    "Cmiss_asv": 1,
    "Cfa_asv": 10,
    "Cmiss_cm": 1,
    "Cfa_cm": 10,
}

#: ASVspoof 2021 cost model (revised t-DCF).
COST_MODEL_2021: Dict[str, float] = {
    "Pspoof": PSPOOF,
    "Ptar": (1 - PSPOOF) * 0.99,
    "Pnon": (1 - PSPOOF) * 0.01,
    "Cmiss": 1,
    "Cfa": 10,
    "Cfa_spoof": 10,
}


@dataclass(frozen=True)
class AsvOperatingPoint:
    """Error rates of the ASV system at its EER threshold (all fractions)."""

    threshold: float
    eer: float
    Pfa_asv: float
    Pmiss_asv: float
    Pmiss_spoof_asv: float
    Pfa_spoof_asv: float

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def asv_operating_point(
    target_scores: ArrayLike, nontarget_scores: ArrayLike, spoof_scores: ArrayLike
) -> AsvOperatingPoint:
    """ASV error rates at the EER threshold of (target, non-target).

    A trial is accepted when its score is ``>=`` the threshold.
    """
    tar = as_scores(target_scores, "ASV target")
    non = as_scores(nontarget_scores, "ASV non-target")
    spoof = as_scores(spoof_scores, "ASV spoof")
    eer, thr = compute_eer(tar, non)
    return AsvOperatingPoint(
        threshold=thr,
        eer=eer,
        Pfa_asv=float(np.sum(non >= thr) / non.size),
        Pmiss_asv=float(np.sum(tar < thr) / tar.size),
        Pmiss_spoof_asv=float(np.sum(spoof < thr) / spoof.size),
        Pfa_spoof_asv=float(np.sum(spoof >= thr) / spoof.size),
    )


class TdcfResult(NamedTuple):
    """Minimum of the normalised t-DCF curve, where it is, and the curve itself (N + 1 points)."""

    min_tdcf: float
    threshold: float
    index: int
    curve: np.ndarray


def _check_rates(asv: AsvOperatingPoint) -> None:
    for name in ("Pfa_asv", "Pmiss_asv", "Pmiss_spoof_asv", "Pfa_spoof_asv"):
        v = getattr(asv, name)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} = {v} is not a probability")


def _minimum(curve: np.ndarray, thresholds: np.ndarray) -> TdcfResult:
    k = int(np.argmin(curve))
    return TdcfResult(float(curve[k]), float(thresholds[k]), k, curve)


def min_tdcf_legacy(
    bonafide_scores: ArrayLike,
    spoof_scores: ArrayLike,
    asv: AsvOperatingPoint,
    cost_model: Optional[Dict[str, float]] = None,
) -> TdcfResult:
    """Minimum normalised t-DCF, ASVspoof 2019 (legacy) form.

    ``C1 = Ptar (Cmiss_cm - Cmiss_asv Pmiss_asv) - Pnon Cfa_asv Pfa_asv``,
    ``C2 = Cfa_cm Pspoof (1 - Pmiss_spoof_asv)``, curve
    ``(C1 Pmiss_cm + C2 Pfa_cm) / min(C1, C2)`` over the CM DET points.
    """
    cm = COST_MODEL_2019 if cost_model is None else cost_model
    _check_rates(asv)
    det = det_curve(bonafide_scores, spoof_scores)
    c1 = cm["Ptar"] * (cm["Cmiss_cm"] - cm["Cmiss_asv"] * asv.Pmiss_asv) - cm["Pnon"] * cm["Cfa_asv"] * asv.Pfa_asv
    c2 = cm["Cfa_cm"] * cm["Pspoof"] * (1 - asv.Pmiss_spoof_asv)
    if c1 < 0 or c2 < 0:
        raise ValueError(f"t-DCF weights must be non-negative (C1={c1}, C2={c2}); check the ASV scores")
    curve = (c1 * det.frr + c2 * det.far) / np.minimum(c1, c2)
    return _minimum(curve, det.thresholds)


def tdcf_2021_weights(asv: AsvOperatingPoint, cost_model: Optional[Dict[str, float]] = None):
    """(C0, C1, C2) of the ASVspoof 2021 t-DCF."""
    cm = COST_MODEL_2021 if cost_model is None else cost_model
    c0 = cm["Ptar"] * cm["Cmiss"] * asv.Pmiss_asv + cm["Pnon"] * cm["Cfa"] * asv.Pfa_asv
    c1 = cm["Ptar"] * cm["Cmiss"] - c0
    c2 = cm["Pspoof"] * cm["Cfa_spoof"] * asv.Pfa_spoof_asv
    return c0, c1, c2


def min_tdcf_2021(
    bonafide_scores: ArrayLike,
    spoof_scores: ArrayLike,
    asv: AsvOperatingPoint,
    cost_model: Optional[Dict[str, float]] = None,
) -> TdcfResult:
    """Minimum normalised t-DCF, ASVspoof 2021 form.

    ``C0 = Ptar Cmiss Pmiss_asv + Pnon Cfa Pfa_asv``, ``C1 = Ptar Cmiss - C0``,
    ``C2 = Pspoof Cfa_spoof Pfa_spoof_asv``; curve
    ``(C0 + C1 Pmiss_cm + C2 Pfa_cm) / (C0 + min(C1, C2))``.
    """
    _check_rates(asv)
    c0, c1, c2 = tdcf_2021_weights(asv, cost_model)
    if c1 < 0 or c2 < 0:
        raise ValueError(f"t-DCF weights must be non-negative (C1={c1}, C2={c2}); check the ASV scores")
    det = det_curve(bonafide_scores, spoof_scores)
    curve = (c0 + c1 * det.frr + c2 * det.far) / (c0 + np.minimum(c1, c2))
    return _minimum(curve, det.thresholds)
