"""Training and validation data: datasets, the epoch sampler, and loaders.

Randomness never depends on the worker layout: the training crop and the
worker-side augmentation of utterance ``i`` in epoch ``e`` draw from
``utterance_rng(seed, e, i)``, and the visiting order of epoch ``e`` is a
permutation drawn from ``(seed, e)``. A run is therefore reproducible for any
``num_workers``, and a resumed run can skip the batches already done.
"""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dpda.audio import load_audio, pad_or_crop, random_crop
from dpda.augment.seeding import utterance_rng
from dpda.data import Manifest
from dpda.workers import WorkerInit

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class TrainSet(Dataset):
    """Random training crops (and, optionally, their worker-side augmentation).

    Item ``i`` is ``(x, x_aug, label)``: ``x`` (crop_samples,) float32,
    ``x_aug`` the augmented crop (or an empty tensor when augmentation runs on
    the device), ``label`` 1 for bona fide, 0 for spoof.
    """

    def __init__(
        self,
        manifest: Manifest,
        sample_rate: int,
        crop_samples: int,
        seed: int,
        augment: Optional[Augment] = None,
    ) -> None:
        if not manifest.labelled:
            raise ValueError(f"{manifest.source}: training needs a labelled protocol")
        self.paths = [u.path for u in manifest]
        self.labels = [u.target for u in manifest]
        self.sample_rate = sample_rate
        self.crop_samples = crop_samples
        self.seed = seed
        self.augment = augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        rng = utterance_rng(self.seed, self.epoch, i)
        x = random_crop(load_audio(self.paths[i], self.sample_rate), self.crop_samples, rng)
        if self.augment is not None:
            x_aug = np.asarray(self.augment(x, rng), dtype=np.float32)
            if x_aug.shape != x.shape:
                x_aug = pad_or_crop(x_aug, self.crop_samples)
            aug = torch.from_numpy(np.ascontiguousarray(x_aug))
        else:
            aug = torch.empty(0, device="cpu")  # no augmented copy: augmentation happens on the device
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), aug, self.labels[i]


class EvalSet(Dataset):
    """Validation items: the first ``crop_samples`` samples (repeat-padded), as the paper's code."""

    def __init__(self, manifest: Manifest, sample_rate: int, crop_samples: int) -> None:
        if not manifest.labelled:
            raise ValueError(f"{manifest.source}: validation needs a labelled protocol")
        self.paths = [u.path for u in manifest]
        self.labels = [u.target for u in manifest]
        self.sample_rate = sample_rate
        self.crop_samples = crop_samples

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        x = pad_or_crop(load_audio(self.paths[i], self.sample_rate), self.crop_samples)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), self.labels[i]


def epoch_order(n: int, seed: int, epoch: int) -> List[int]:
    """The visiting order of epoch ``epoch``: a permutation of ``range(n)`` drawn from (seed, epoch)."""
    g = torch.Generator(device="cpu").manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=g, device="cpu").tolist()


class EpochSampler(Sampler):
    """Indices of one epoch for one rank, from batch ``start_batch`` on.

    ``max_batches`` caps the epoch at that many global batches (the first ones of
    the epoch's order), so successive epochs see different subsets of the data.

    The global order is :func:`epoch_order`; it is cut to a multiple of
    ``world_size * batch_size`` (the last incomplete global batch is
    dropped) and rank ``r`` takes every ``world_size``-th batch-sized slice,
    so ranks see disjoint data of equal size.
    """

    def __init__(self, n: int, seed: int, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1, start_batch: int = 0,
                 max_batches: Optional[int] = None) -> None:
        self.n, self.seed, self.epoch = n, seed, epoch
        self.batch_size, self.rank, self.world_size, self.start_batch = batch_size, rank, world_size, start_batch
        self.num_batches = n // (batch_size * world_size)
        if max_batches is not None:  # a capped epoch: the first max_batches global batches of this epoch's order
            self.num_batches = min(self.num_batches, max_batches)

    def __iter__(self) -> Iterator[int]:
        order = epoch_order(self.n, self.seed, self.epoch)
        b, w = self.batch_size, self.world_size
        for k in range(self.start_batch, self.num_batches):
            start = (k * w + self.rank) * b
            yield from order[start : start + b]

    def __len__(self) -> int:
        return (self.num_batches - self.start_batch) * self.batch_size


def _own_generator(seed: int) -> torch.Generator:
    # A DataLoader draws its workers' base seed when an iterator starts; with its own
    # generator that draw does not consume the global torch RNG (dropout etc.), so a
    # resumed run sees the same global random stream as an uninterrupted one.
    # (a CPU generator on purpose: the DataLoader draws with it on the host)
    return torch.Generator(device="cpu").manual_seed(seed)


def train_loader(dataset: TrainSet, sampler: EpochSampler, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """Training batches ``(x, x_aug, label)``; ``pin_memory`` when they go to a GPU (faster, asynchronous copies)."""
    return DataLoader(dataset, batch_size=sampler.batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=True, persistent_workers=False, pin_memory=pin_memory, worker_init_fn=WorkerInit(),
                      generator=_own_generator(sampler.seed * 31 + sampler.epoch))


def eval_loader(dataset: EvalSet, batch_size: int, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """Evaluation batches ``(x, label)`` in protocol order."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin_memory,
                      worker_init_fn=WorkerInit(),
                      generator=_own_generator(0))
