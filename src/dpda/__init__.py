"""dpda: robust speech deepfake detection with dual-path data augmentation and gradient alignment."""

__version__ = "0.1.0"
