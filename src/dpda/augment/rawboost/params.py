"""RawBoost parameters (Tak et al., ICASSP 2022), defaults equal to the original ``main.py``'s.

Units: frequencies in Hz, gains in dB, ``P`` in percent of samples, SNRs in dB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Mapping

#: algorithm number -> primitives applied (1 LnL, 2 ISD, 3 SSI); 8 is LnL(x) + ISD(x) in parallel.
ALGORITHMS: Dict[int, str] = {
    0: "identity",
    1: "LnL",
    2: "ISD",
    3: "SSI",
    4: "LnL -> ISD -> SSI",
    5: "LnL -> ISD",
    6: "LnL -> SSI",
    7: "ISD -> SSI",
    8: "LnL(x) + ISD(x), peak-normalised",
}


@dataclass(frozen=True)
class RawBoostParams:
    """Every parameter of the original RawBoost, with its defaults.

    Notch-filter design (LnL and SSI): ``nBands`` band-stop filters with centre
    frequency in [minF, maxF] Hz, bandwidth in [minBW, maxBW] Hz and
    [minCoeff, maxCoeff] taps; filter gain in [minG, maxG] dB.
    LnL: ``N_f`` non-linearity orders; orders 2.. use gains in
    [minG - minBiasLinNonLin, maxG - maxBiasLinNonLin] dB.
    ISD: up to ``P`` % of samples, impulse gain ``g_sd``.
    SSI: SNR in [SNRmin, SNRmax] dB.
    """

    nBands: int = 5
    minF: float = 20
    maxF: float = 8000
    minBW: float = 100
    maxBW: float = 1000
    minCoeff: int = 10
    maxCoeff: int = 100
    minG: float = 0
    maxG: float = 0
    minBiasLinNonLin: float = 5
    maxBiasLinNonLin: float = 20
    N_f: int = 5
    P: float = 10
    g_sd: float = 2
    SNRmin: float = 10
    SNRmax: float = 40

    def replace(self, **changes: Any) -> "RawBoostParams":
        return from_mapping({**asdict(self), **changes})

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def from_mapping(values: Mapping[str, Any]) -> RawBoostParams:
    """Build parameters from a mapping (e.g. YAML), rejecting unknown names."""
    known = {f.name for f in fields(RawBoostParams)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown RawBoost parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return RawBoostParams(**dict(values))
