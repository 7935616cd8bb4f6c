"""Training: the dual-path (DPDA) gradient engine, loss scaling, (later) the training loop and checkpoints."""

from dpda.train.amp import LossScaler
from dpda.train.engine import ConflictTracker, DualPathEngine, StepOutput, weighted_cross_entropy

__all__ = ["DualPathEngine", "StepOutput", "ConflictTracker", "LossScaler", "weighted_cross_entropy"]
