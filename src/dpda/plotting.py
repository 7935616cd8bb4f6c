"""Figures (matplotlib, Agg backend, no display needed); files are written atomically."""

from __future__ import annotations

from typing import Mapping, Sequence, Tuple

import numpy as np

from dpda.errors import PathLike
from dpda.fileio import atomic_path

_DET_TICKS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)


def plot_det(
    curves: Mapping[str, Tuple[np.ndarray, np.ndarray]],
    path: PathLike,
    *,
    eers: Mapping[str, float] = {},
    title: str = "DET curve",
) -> None:
    """Write a DET plot (probit axes) of one or more curves to a PNG file.

    Args:
        curves: label -> (frr, far) arrays of fractions, as from :func:`dpda.metrics.det_curve`.
        path: output image path (format from the extension, e.g. ``.png``, ``.pdf``).
        eers: optional label -> EER (fraction), marked on the diagonal.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.special import ndtri

    lo, hi = 0.0005, 0.995

    def probit(p: np.ndarray) -> np.ndarray:
        return ndtri(np.clip(p, lo, hi))

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for label, (frr, far) in curves.items():
        name = label if label not in eers else f"{label} (EER {100 * eers[label]:.2f}%)"
        ax.plot(probit(np.asarray(far)), probit(np.asarray(frr)), label=name, linewidth=1.5)
        if label in eers:
            e = probit(np.array([eers[label]]))
            ax.plot(e, e, "o", color=ax.lines[-1].get_color(), markersize=5)
    ticks: Sequence[float] = [t for t in _DET_TICKS if lo <= t <= hi]
    labels = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(probit(np.array(ticks)), labels)
    ax.set_yticks(probit(np.array(ticks)), labels)
    ax.set_xlim(probit(np.array([lo, hi])))
    ax.set_ylim(probit(np.array([lo, hi])))
    ax.plot(ax.get_xlim(), ax.get_ylim(), ":", color="grey", linewidth=0.8)
    ax.set_xlabel("False acceptance rate of spoofs (%)")
    ax.set_ylabel("Miss rate of bona fide (%)")
    ax.set_title(title)
    ax.grid(True, linestyle=":", linewidth=0.5)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fmt = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else "png"
        fig.savefig(tmp, format=fmt, dpi=120)
    plt.close(fig)
