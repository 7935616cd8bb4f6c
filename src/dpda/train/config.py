"""The schema of ``dpda train`` configurations (YAML; every run directory stores the resolved one).

Units: samples at ``data.sample_rate`` Hz; ``batch_size`` is per path (a
dual-path step sees 2 x batch_size waveforms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from dpda.config import ConfigError


@dataclass
class SplitConfig:
    """One corpus split: protocol (key) file and audio root, in a ``dpda.data`` format."""

    protocol: str
    root: Optional[str] = None
    format: Optional[str] = None  # defaults to data.format
    subset: Optional[str] = None


@dataclass
class DataConfig:
    format: str = "asvspoof2019"
    train: Optional[SplitConfig] = None
    dev: Optional[SplitConfig] = None
    sample_rate: int = 16000
    crop_samples: int = 64600  # training crops (random) and dev crops (first N samples)
    batch_size: int = 5  # per path
    eval_batch_size: int = 32
    num_workers: int = 2
    max_train_utterances: Optional[int] = None  # take a fixed random subset (quick experiments)


@dataclass
class ModelConfig:
    name: str = "aasist-l"
    config: Dict[str, Any] = field(default_factory=dict)


@dataclass
class AlignerConfig:
    name: str = "pcgrad"
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-6
    weight_decay: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9  # sgd only


@dataclass
class SchedulerConfig:
    name: str = "none"  # none | cosine | step
    step_size: int = 10  # epochs (step)
    gamma: float = 0.5  # step
    min_lr: float = 0.0  # cosine


@dataclass
class AugmentConfig:
    """Augmented path: batched RawBoost on the device, or a chain in the DataLoader workers."""

    where: str = "device"  # device (batched RawBoost in the step) | workers (reference-exact / chain)
    rawboost_algo: int = 4
    rawboost_params: Dict[str, Any] = field(default_factory=dict)
    chain: Optional[str] = None  # YAML chain file for where=workers (instead of RawBoost)


@dataclass
class TrainConfig:
    mode: str = "dpda"  # single | dual | dpda
    engine_mode: str = "joint"  # joint | split
    aligner: AlignerConfig = field(default_factory=AlignerConfig)
    epochs: int = 100
    steps_per_epoch: Optional[int] = None  # cap: an epoch is the first N batches of its shuffled order (None: all)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    bonafide_weight: float = 0.9
    spoof_weight: float = 0.1
    patience: int = 7  # epochs without dev improvement before stopping (0: never stop early)
    monitor: str = "dev_loss"  # dev_loss | dev_eer
    top_k: int = 5  # checkpoints kept (and averaged) by the monitored metric
    average_top_k: bool = True
    amp: str = "none"  # none | bf16 | fp16
    grad_clip: Optional[float] = None
    log_every: int = 10  # steps between metrics.jsonl step records (every step's stats are still aggregated)


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    runs_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_CHOICES = {
    "train.mode": ("single", "dual", "dpda"),
    "train.engine_mode": ("joint", "split"),
    "train.monitor": ("dev_loss", "dev_eer"),
    "train.amp": ("none", "bf16", "fp16"),
    "train.optimizer.name": ("adam", "adamw", "sgd"),
    "train.scheduler.name": ("none", "cosine", "step"),
    "augment.where": ("device", "workers"),
}


def validate(cfg: RunConfig) -> RunConfig:
    """Check the values that the types cannot (choices, ranges, required splits)."""
    for key, choices in _CHOICES.items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    from dpda.data import FORMATS
    from dpda.models import model_names

    if cfg.data.format not in FORMATS:
        raise ConfigError(f"data.format: expected one of {', '.join(FORMATS)}, got {cfg.data.format!r}")
    if cfg.model.name not in model_names():
        raise ConfigError(f"model.name: expected one of {', '.join(model_names())}, got {cfg.model.name!r}")
    if cfg.data.train is None:
        raise ConfigError("data.train: required (protocol and root of the training split)")
    for name, value in (("data.batch_size", cfg.data.batch_size), ("data.crop_samples", cfg.data.crop_samples),
                        ("train.epochs", cfg.train.epochs), ("data.sample_rate", cfg.data.sample_rate)):
        if value < 1:
            raise ConfigError(f"{name}: must be >= 1, got {value}")
    if not 0 <= cfg.augment.rawboost_algo <= 8:
        raise ConfigError(f"augment.rawboost_algo: expected 0..8, got {cfg.augment.rawboost_algo}")
    if cfg.train.steps_per_epoch is not None and cfg.train.steps_per_epoch < 1:
        raise ConfigError(f"train.steps_per_epoch: must be >= 1 or null, got {cfg.train.steps_per_epoch}")
    if cfg.device != "auto":
        try:
            torch.device(cfg.device)
        except (RuntimeError, TypeError):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {cfg.device!r}") from None
    if cfg.train.top_k < 1:
        raise ConfigError(f"train.top_k: must be >= 1, got {cfg.train.top_k}")
    return cfg
