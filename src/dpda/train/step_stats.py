"""What a gradient step reports (:class:`StepOutput`) and its per-epoch summary (:class:`ConflictTracker`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict


@dataclass
class StepOutput:
    """What one dual-path step did; losses are the per-path mean losses (Python floats)."""

    loss_orig: float
    loss_aug: float
    stats: Dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    @property
    def loss(self) -> float:
        return 0.5 * (self.loss_orig + self.loss_aug)


class ConflictTracker:
    """Accumulates per-step gradient statistics into per-epoch summaries.

    ``update(step_output)`` after every step; ``summary()`` gives the fraction
    of conflicting steps (dot product of the two path gradients < 0), the mean
    cosine, the mean gradient norm of each path and the number of skipped
    steps; ``reset()`` at the start of an epoch.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.skipped = 0
        self.conflicts = 0
        self._cos_sum = 0.0
        self._norm_sums = [0.0, 0.0]

    def update(self, out: StepOutput) -> None:
        if out.skipped:
            self.skipped += 1
            return
        s = out.stats
        if "cos" not in s:
            return
        self.steps += 1
        self.conflicts += int(bool(s["conflict"]))
        self._cos_sum += float(s["cos"])
        self._norm_sums[0] += float(s["norms"][0])
        self._norm_sums[1] += float(s["norms"][1])

    def summary(self) -> Dict[str, float]:
        n = max(self.steps, 1)
        return {
            "steps": self.steps,
            "skipped": self.skipped,
            "conflict_rate": self.conflicts / n if self.steps else 0.0,
            "mean_cos": self._cos_sum / n if self.steps else 0.0,
            "mean_norm_orig": self._norm_sums[0] / n if self.steps else 0.0,
            "mean_norm_aug": self._norm_sums[1] / n if self.steps else 0.0,
        }
