"""EpochSampler: disjoint per-rank slices, resumable start, capped epochs."""

from __future__ import annotations

import pytest
import torch

from dpda.config import ConfigError, from_dict
from dpda.train.config import RunConfig, validate
from dpda.train.data import EpochSampler, epoch_order


def test_ranks_take_disjoint_slices_of_the_same_order():
    a = list(EpochSampler(20, seed=3, epoch=1, batch_size=2, rank=0, world_size=2))
    b = list(EpochSampler(20, seed=3, epoch=1, batch_size=2, rank=1, world_size=2))
    assert len(a) == len(b) == 10 and not set(a) & set(b)
    assert sorted(a + b) == sorted(epoch_order(20, 3, 1)[:20])


def test_capped_epoch_is_the_head_of_the_epoch_order_and_changes_per_epoch():
    full = list(EpochSampler(100, seed=7, epoch=0, batch_size=4))
    capped = EpochSampler(100, seed=7, epoch=0, batch_size=4, max_batches=3)
    assert capped.num_batches == 3 and len(capped) == 12
    assert list(capped) == full[:12]
    nxt = list(EpochSampler(100, seed=7, epoch=1, batch_size=4, max_batches=3))
    assert nxt != list(capped)  # the next epoch draws another subset
    # resuming inside a capped epoch continues where it stopped
    assert list(EpochSampler(100, seed=7, epoch=0, batch_size=4, start_batch=1, max_batches=3)) == full[4:12]
    # a cap larger than the data changes nothing
    assert EpochSampler(10, seed=7, epoch=0, batch_size=4, max_batches=99).num_batches == 2


def test_steps_per_epoch_is_validated():
    cfg = {"data": {"train": {"protocol": "x"}}, "train": {"steps_per_epoch": 0}}
    with pytest.raises(ConfigError, match="train.steps_per_epoch"):
        validate(from_dict(RunConfig, cfg))


def test_training_and_evaluation_workers_die_with_the_trainer():
    """Issue 11 item 5: the loaders arm the parent-death signal in every worker (tests/test_workers.py shows it works)."""
    from dpda.train.data import eval_loader, train_loader
    from dpda.workers import WorkerInit

    class Tiny(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(2, device="cpu"), torch.zeros(0, device="cpu"), 0

    sampler = EpochSampler(4, 0, 0, 2)
    for loader in (train_loader(Tiny(), sampler, 1), eval_loader(Tiny(), 2, 1)):
        assert isinstance(loader.worker_init_fn, WorkerInit)
