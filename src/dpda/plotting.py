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


def plot_training(epochs, steps, out_dir: PathLike) -> dict:
    """PNG plots of a training run; returns ``{name: path}``.

    ``epochs``: the run's epoch records (``metrics.jsonl`` ``type == "epoch"``),
    ``steps``: its step records. Writes ``loss.png`` (train loss per path and
    dev loss per epoch), ``conflict_rate.png``, ``cos_hist.png`` (cosine of the
    two path gradients over all steps), ``dev_eer.png`` and ``grad_norms.png``
    (per path, per logged step); plots without data are skipped.
    """
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    ep = [r["epoch"] for r in epochs]

    def save(fig, name):
        fig.tight_layout()
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        written[name.rsplit(".", 1)[0]] = str(out / name)

    if epochs:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(ep, [r["train_loss_orig"] for r in epochs], "o-", label="train, original path")
        ax.plot(ep, [r["train_loss_aug"] for r in epochs], "s-", label="train, augmented path")
        if "dev_loss" in epochs[0]:
            ax.plot(ep, [r["dev_loss"] for r in epochs], "^-", label="dev")
        ax.set_xlabel("epoch")
        ax.set_ylabel("weighted cross-entropy")
        ax.legend()
        ax.grid(True, linestyle=":")
        save(fig, "loss.png")
        if any(r.get("steps") for r in epochs) and "conflict_rate" in epochs[0]:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot(ep, [100 * r["conflict_rate"] for r in epochs], "o-")
            ax.set_xlabel("epoch")
            ax.set_ylabel("steps with conflicting gradients (%)")
            ax.set_ylim(bottom=0)
            ax.grid(True, linestyle=":")
            save(fig, "conflict_rate.png")
        hist = np.sum([r.get("cos_hist", []) for r in epochs if r.get("cos_hist")], axis=0) if any(r.get("cos_hist") for r in epochs) else None
        if hist is not None and np.sum(hist) > 0:
            edges = np.linspace(-1, 1, len(hist) + 1)
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.bar(edges[:-1], hist, width=np.diff(edges), align="edge", edgecolor="black", linewidth=0.3)
            ax.axvline(0, color="red", linestyle="--", linewidth=1)
            ax.set_xlabel("cos(g_original, g_augmented)")
            ax.set_ylabel("steps")
            save(fig, "cos_hist.png")
        if "dev_eer" in epochs[0]:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot(ep, [r["dev_eer"] for r in epochs], "o-")
            ax.set_xlabel("epoch")
            ax.set_ylabel("dev EER (%)")
            ax.grid(True, linestyle=":")
            save(fig, "dev_eer.png")
    norm_steps = [r for r in steps if "norm_orig" in r]
    if norm_steps:
        fig, ax = plt.subplots(figsize=(6, 4))
        st = [r["step"] for r in norm_steps]
        ax.plot(st, [r["norm_orig"] for r in norm_steps], label="original path", linewidth=1)
        ax.plot(st, [r["norm_aug"] for r in norm_steps], label="augmented path", linewidth=1)
        ax.set_xlabel("step")
        ax.set_ylabel("gradient norm")
        ax.set_yscale("log")
        ax.legend()
        ax.grid(True, linestyle=":")
        save(fig, "grad_norms.png")
    return written
