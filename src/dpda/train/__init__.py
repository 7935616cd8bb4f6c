"""Training: the gradient steps (``steps``) over the dual-path engine (``engine``), the loop (``trainer``)
and its parts; the module map is in docs/training.md."""

from dpda.train.amp import LossScaler
from dpda.train.engine import ConflictTracker, DualPathEngine, StepOutput, weighted_cross_entropy

__all__ = ["DualPathEngine", "StepOutput", "ConflictTracker", "LossScaler", "weighted_cross_entropy"]
