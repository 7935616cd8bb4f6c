"""What a training run is built from, by its configuration: data, model, optimizer, scheduler, augmentation.

The gradient step is built by :func:`dpda.train.steps.build_step`. The
trainer calls these in a fixed order after seeding torch with ``cfg.seed``
(the model's initial weights depend on it): datasets, model, loss, step,
optimizer, scheduler, device augmentation.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LRScheduler

from dpda.data import Manifest, load_manifest
from dpda.errors import DpdaError
from dpda.models import build_model
from dpda.train.config import OptimizerConfig, RunConfig, SplitConfig, TrainConfig, resolve_init_from
from dpda.train.data import TrainSet


def load_split(cfg: RunConfig, split: SplitConfig) -> Manifest:
    """The manifest of one split (its own format, else ``data.format``; its subset when set)."""
    m = load_manifest(split.format or cfg.data.format, split.protocol, split.root)
    return m.filter(subset=split.subset) if split.subset else m


def build_datasets(cfg: RunConfig, world: int) -> Tuple[TrainSet, Optional[Manifest]]:
    """The training set (``data.max_train_utterances`` subset and worker-side augmentation applied)
    and the dev manifest (None without ``data.dev``).

    Raises :class:`DpdaError` when the training split holds fewer utterances
    than one global batch (``data.batch_size`` x ``world`` ranks).
    """
    train_m = load_split(cfg, cfg.data.train)
    limit = cfg.data.max_train_utterances
    if limit and limit < len(train_m):
        keep = sorted(np.random.default_rng(cfg.seed).choice(len(train_m), limit, replace=False))
        train_m = Manifest(train_m.format, train_m.source, tuple(train_m.utterances[i] for i in keep))
    dev_m = load_split(cfg, cfg.data.dev) if cfg.data.dev is not None else None
    augment = worker_augment(cfg) if cfg.augment.where == "workers" else None
    train_set = TrainSet(train_m, cfg.data.sample_rate, cfg.data.crop_samples, cfg.seed, augment)
    per_step = cfg.data.batch_size * world
    if len(train_set) < per_step:
        raise DpdaError(f"the training split has {len(train_set)} utterances, fewer than one batch ({per_step})")
    return train_set, dev_m


def worker_augment(cfg: RunConfig) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """The DataLoader workers' augmentation: the ``augment.chain`` YAML chain, else reference RawBoost."""
    from dpda.augment.chain import RawBoostStep, load_chain

    a = cfg.augment
    if a.chain:
        return load_chain(a.chain, sr=cfg.data.sample_rate)
    return RawBoostStep(a.rawboost_algo, a.rawboost_params, sr=cfg.data.sample_rate)


def build_run_model(cfg: RunConfig, device: torch.device, fresh: bool, log: Callable[[str], None]) -> nn.Module:
    """``model.name`` with ``model.config`` on ``device``; a fresh run (not a resume) starts from
    ``model.init_from``'s weights when set (strictly loaded; :class:`DpdaError` when they do not fit)."""
    init = resolve_init_from(cfg)
    model = build_model(cfg.model.name, **cfg.model.config).to(device)
    if init is not None and fresh:  # a resumed run has its own weights in last.pt
        try:
            model.load_state_dict(init["model_state"], strict=True)
        except RuntimeError as e:
            raise DpdaError(f"model.init_from: {cfg.model.init_from}: weights do not fit {cfg.model.name} with "
                            f"this model.config: {str(e).splitlines()[0]}") from None
        log(f"starting from the weights of {cfg.model.init_from}")
    return model


def build_optimizer(o: OptimizerConfig, params: List[nn.Parameter]) -> torch.optim.Optimizer:
    """``train.optimizer``: Adam, AdamW or SGD (with momentum) over ``params``."""
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))
    return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum)


def build_scheduler(t: TrainConfig, optimizer: torch.optim.Optimizer) -> Optional[LRScheduler]:
    """``train.scheduler`` (stepped once per epoch): cosine over ``train.epochs``, step decay, or None."""
    s = t.scheduler
    if s.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs, eta_min=s.min_lr)
    if s.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)
    return None


class DeviceAugment:
    """Batched RawBoost on the model's device (``augment.where: device``), with its own generator.

    The generator (on ``device``) is seeded from the seed and the rank, and is
    part of a training checkpoint; it exists (and is saved) whatever
    ``augment.where`` says, so checkpoints have one layout.
    """

    def __init__(self, cfg: RunConfig, device: torch.device, rank: int) -> None:
        from dpda.augment.rawboost import RawBoostParams

        a = cfg.augment
        self.algo = a.rawboost_algo
        self.params = RawBoostParams(**a.rawboost_params) if a.rawboost_params else None
        self.sample_rate = cfg.data.sample_rate
        self.seed, self.rank = cfg.seed, rank
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + rank + 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) waveforms on the device -> their augmented copies (B, T)."""
        from dpda.augment.rawboost.batched import rawboost_batched

        return rawboost_batched(x, self.algo, generator=self.generator, params=self.params, sr=self.sample_rate)

    def restore(self, state: torch.Tensor, saved_on: Optional[str], global_step: int) -> bool:
        """Continue the generator of a checkpoint; True when it could (saved on this device type, same size).

        Otherwise (a CPU Mersenne Twister vs a CUDA Philox counter) the
        generator is reseeded from the seed, ``global_step`` and the rank, and
        False is returned (the random augmentations then differ from an
        uninterrupted run; nothing else does).
        """
        state = state.to(device="cpu", dtype=torch.uint8)
        if (saved_on is None or saved_on == self.device.type) and state.numel() == self.generator.get_state().numel():
            self.generator.set_state(state)
            return True
        self.generator.manual_seed((self.seed * 7919 + global_step * 104729 + self.rank + 1) % (2**63))
        return False


__all__ = ["DeviceAugment", "build_datasets", "build_optimizer", "build_run_model", "build_scheduler", "load_split",
           "worker_augment"]
