"""Training: the gradient steps (``steps``) over the dual-path engine (``engine``), the loop (``trainer``)
and its parts; the module map is in docs/training.md."""

from dpda.train.amp import LossScaler
from dpda.train.engine import DualPathEngine, weighted_cross_entropy
from dpda.train.step_stats import ConflictTracker, StepOutput

__all__ = ["DualPathEngine", "StepOutput", "ConflictTracker", "LossScaler", "weighted_cross_entropy"]
