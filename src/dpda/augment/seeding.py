"""Reproducible, independent random streams for augmentation.

The problem. The original RawBoost recipes drew their noise from NumPy's
*global* state (``np.random.*``). DataLoader worker processes are forked
with a copy of that state, and the PyTorch versions those recipes pinned
(< 1.9) did not reseed NumPy in workers, so every worker produced the same
"random" noise sequence, and nothing tied a given utterance to a given
draw. (PyTorch >= 1.9 reseeds NumPy's global state per worker, but global
state is still shared by every library in the process and depends on how
utterances are spread across workers, so runs with a different
``num_workers`` are not comparable.)

The design. Augmentations here never touch global state: they take an
explicit :class:`numpy.random.Generator`. Generators are derived with
:class:`numpy.random.SeedSequence`, whose ``spawn_key`` mechanism gives
statistically independent streams for distinct keys (hashing, not
``seed + i`` arithmetic, so neighbouring seeds do not give correlated
streams):

* **per utterance** (recommended): :func:`utterance_rng` ``(seed, epoch, index)``
  keys the stream by (seed, epoch, dataset index). The noise an utterance
  receives depends only on those three numbers: not on the worker that
  loads it, on ``num_workers``, or on the order of loading. A new epoch
  gives new noise; the same seed reproduces the whole run.
* **per worker**: :func:`worker_seed` ``(seed, epoch, worker_id[, index])``
  / :func:`worker_rng` for code that keeps one stream per worker, and
  :func:`seed_worker`, a DataLoader ``worker_init_fn`` that seeds Python's
  ``random``, NumPy's legacy global state and this module's per-worker
  Generator (:func:`worker_generator`) from ``torch.initial_seed()``.
  PyTorch sets that seed to ``base_seed + worker_id`` with ``base_seed``
  drawn from the main process's RNG each time an iterator is created
  (each epoch, unless ``persistent_workers=True``; then the worker streams
  simply continue), so it differs per worker and per epoch and is
  reproducible under ``torch.manual_seed`` (or the DataLoader's
  ``generator``).

Domains: the per-utterance, per-worker and ``seed_worker`` streams use
different leading spawn-key entries, so they never coincide.

Example::

    class AugmentedSet(Dataset):
        def __init__(self, items, chain, seed):
            self.items, self.chain, self.seed, self.epoch = items, chain, seed, 0
        def set_epoch(self, epoch):       # call before each epoch
            self.epoch = epoch
        def __getitem__(self, i):
            x = load(self.items[i])
            return self.chain(x, utterance_rng(self.seed, self.epoch, i))

(With ``persistent_workers=True`` the dataset copies in the workers do not
see ``set_epoch``; pass the epoch through the sampler's indices instead, or
use non-persistent workers.)
"""

from __future__ import annotations

import numbers
import random
from typing import Optional, Tuple

import numpy as np

# Leading spawn-key entries separating the stream families.
_UTTERANCE_DOMAIN = 0x5554  # "UT"
_WORKER_DOMAIN = 0x574B  # "WK"
_TORCH_WORKER_DOMAIN = 0x5454  # "TT"

_worker_rng: Optional[np.random.Generator] = None


def _nonneg_int(value: object, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or int(value) < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def seed_sequence(seed: int, *key: int) -> np.random.SeedSequence:
    """``SeedSequence(entropy=seed, spawn_key=key)``, with argument checks."""
    return np.random.SeedSequence(
        entropy=_nonneg_int(seed, "seed"), spawn_key=tuple(_nonneg_int(k, "key") for k in key)
    )


def _worker_key(epoch: int, worker_id: int, index: Optional[int]) -> Tuple[int, ...]:
    key = (_WORKER_DOMAIN, _nonneg_int(epoch, "epoch"), _nonneg_int(worker_id, "worker_id"))
    return key if index is None else key + (_nonneg_int(index, "index"),)


def worker_seed(
    base_seed: int, epoch: int = 0, worker_id: int = 0, index: Optional[int] = None, *, bits: int = 64
) -> int:
    """An integer seed for (base seed, epoch, worker[, utterance index]).

    Distinct keys give unrelated seeds; the same key always gives the same
    seed. ``bits`` = 32 gives a value accepted by ``np.random.seed`` /
    ``np.random.RandomState``; 64 (default) suits ``torch.manual_seed``.
    """
    if bits not in (32, 64):
        raise ValueError(f"bits must be 32 or 64, got {bits!r}")
    ss = seed_sequence(base_seed, *_worker_key(epoch, worker_id, index))
    if bits == 32:
        return int(ss.generate_state(1, np.uint32)[0])
    return int(ss.generate_state(1, np.uint64)[0])


def worker_rng(base_seed: int, epoch: int = 0, worker_id: int = 0, index: Optional[int] = None) -> np.random.Generator:
    """A PCG64 Generator for (base seed, epoch, worker[, index]) (same key as :func:`worker_seed`)."""
    return np.random.Generator(np.random.PCG64(seed_sequence(base_seed, *_worker_key(epoch, worker_id, index))))


def utterance_rng(seed: int, epoch: int, index: int, *, stream: int = 0) -> np.random.Generator:
    """The Generator for utterance ``index`` (dataset index) in ``epoch`` of a run seeded with ``seed``.

    Independent of worker assignment and loading order. ``stream``
    separates several independent uses for the same utterance (e.g. 0 for
    augmentation, 1 for random cropping).
    """
    key = (
        _UTTERANCE_DOMAIN,
        _nonneg_int(stream, "stream"),
        _nonneg_int(epoch, "epoch"),
        _nonneg_int(index, "index"),
    )
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, *key)))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random``, NumPy's global state and :func:`worker_generator`.

    All three are derived from ``torch.initial_seed()`` (which PyTorch sets
    per worker and per epoch; see the module docstring)::

        DataLoader(ds, num_workers=4, worker_init_fn=seed_worker,
                   generator=torch.Generator().manual_seed(seed))
    """
    import torch

    global _worker_rng
    base = int(torch.initial_seed()) % 2**64
    ss = np.random.SeedSequence(entropy=base, spawn_key=(_TORCH_WORKER_DOMAIN, _nonneg_int(worker_id, "worker_id")))
    legacy, py = ss.spawn(2)
    np.random.seed(int(legacy.generate_state(1, np.uint32)[0]))
    random.seed(int(py.generate_state(1, np.uint64)[0]))
    _worker_rng = np.random.Generator(np.random.PCG64(ss))


def worker_generator() -> np.random.Generator:
    """This process's Generator as set by :func:`seed_worker`.

    Outside a seeded worker (e.g. ``num_workers=0``), one is created on
    first use from ``torch.initial_seed()`` of the current process.
    """
    global _worker_rng
    if _worker_rng is None:
        import torch

        base = int(torch.initial_seed()) % 2**64
        _worker_rng = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence(entropy=base, spawn_key=(_TORCH_WORKER_DOMAIN,)))
        )
    return _worker_rng


__all__ = ["seed_sequence", "seed_worker", "utterance_rng", "worker_generator", "worker_rng", "worker_seed"]
