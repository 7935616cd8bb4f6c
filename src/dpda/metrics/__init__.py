"""Scoring metrics with parity to the official ASVspoof evaluation packages.

Depends on NumPy only. Scores: higher = more bona fide. Rates are fractions
(multiply by 100 for percent).
"""

from dpda.metrics.dcf import act_dcf, bayes_threshold, cllr, min_dcf
from dpda.metrics.eer import DetCurve, compute_eer, det_curve, eer_from_det
from dpda.metrics.tdcf import (
    COST_MODEL_2019,
    COST_MODEL_2021,
    AsvOperatingPoint,
    TdcfResult,
    asv_operating_point,
    min_tdcf_2021,
    min_tdcf_legacy,
    tdcf_2021_weights,
)

__all__ = [
    "compute_eer", "det_curve", "eer_from_det", "DetCurve",
    "asv_operating_point", "AsvOperatingPoint", "min_tdcf_legacy", "min_tdcf_2021",
    "tdcf_2021_weights", "TdcfResult", "COST_MODEL_2019", "COST_MODEL_2021",
    "min_dcf", "act_dcf", "cllr", "bayes_threshold",
]
