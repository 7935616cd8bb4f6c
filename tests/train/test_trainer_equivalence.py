"""The trainer adds nothing to its steps: its weights equal those of a plain loop written from the parts.

The reference loop below uses torch, the data pieces and the dual-path
engine directly (none of the trainer's modules: build, steps, run_log,
checkpointer, finalize), so a change of the loop or of how the run is built
(what is seeded or drawn in which order, where the loss is scaled or the
gradient clipped, what validation or checkpointing touches) that changes a
single weight fails here, without any number written down.
"""

from __future__ import annotations

from typing import Dict

import pytest
import torch

from dpda.data import load_manifest
from dpda.models import build_model
from dpda.train import DualPathEngine, weighted_cross_entropy
from dpda.train.checkpoint import load_checkpoint
from dpda.train.config import RunConfig
from dpda.train.data import EpochSampler, TrainSet, train_loader
from dpda.train.trainer import Trainer
from tests.train.test_trainer import config, corpus  # noqa: F401  (corpus is a fixture)


def plain_loop(cfg: RunConfig) -> Dict[str, torch.Tensor]:
    """``cfg`` trained by hand: the model's state dict after ``train.epochs`` epochs."""
    from dpda.augment.chain import RawBoostStep
    from dpda.augment.rawboost.batched import rawboost_batched

    t, d, a = cfg.train, cfg.data, cfg.augment
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, **cfg.model.config)
    loss_fn = weighted_cross_entropy(t.bonafide_weight, t.spoof_weight)
    engine = None
    if t.mode != "single":
        engine = DualPathEngine(model, "none" if t.mode == "dual" else t.aligner.name, loss_fn, mode=t.engine_mode,
                                one_pass={"on": True, "off": False}[t.one_pass], joint_one_pass=t.joint_one_pass)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=t.optimizer.lr,
                                 weight_decay=t.optimizer.weight_decay, betas=tuple(t.optimizer.betas))
    generator = torch.Generator().manual_seed(cfg.seed * 7919 + 1)  # the device augmentation's (rank 0)
    augment = RawBoostStep(a.rawboost_algo, a.rawboost_params, sr=d.sample_rate) if a.where == "workers" else None
    train_set = TrainSet(load_manifest(d.format, d.train.protocol), d.sample_rate, d.crop_samples, cfg.seed, augment)
    for epoch in range(t.epochs):
        train_set.set_epoch(epoch)
        model.train()
        sampler = EpochSampler(len(train_set), cfg.seed, epoch, d.batch_size, max_batches=t.steps_per_epoch)
        for x, x_aug, y in train_loader(train_set, sampler, 0):
            if augment is None:
                x_aug = rawboost_batched(x, a.rawboost_algo, generator=generator, sr=d.sample_rate)
            if engine is None:
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(x_aug), y).backward()
            else:
                engine.compute_gradients(x, x_aug, y)
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], t.grad_clip)
            optimizer.step()
    return model.state_dict()


@pytest.mark.parametrize(("mode", "engine_mode", "where", "one_pass"), [
    ("single", "joint", "device", "off"), ("dual", "split", "workers", "off"), ("dpda", "joint", "device", "off"),
    ("dpda", "joint", "device", "on"), ("dual", "split", "device", "on"),  # the one pass (copies; split)
])
def test_fit_ends_with_the_weights_of_a_plain_loop(corpus, tmp_path, mode, engine_mode, where, one_pass):  # noqa: F811
    cfg = config(corpus, mode, engine_mode=engine_mode, one_pass=one_pass, grad_clip=1.0, steps_per_epoch=4)
    cfg.augment.where = where
    run = tmp_path / "run"
    trainer = Trainer(cfg, run, progress=False, log=lambda m: None, checkpoint_every=3)
    built = set(vars(trainer))
    trainer.fit()  # validates and checkpoints
    assert set(vars(trainer)) == built  # everything is made in __init__
    trained = load_checkpoint(run / "checkpoints" / "last.pt")["model_state"]
    reference = plain_loop(cfg)
    assert set(trained) == set(reference)
    for k in reference:
        torch.testing.assert_close(trained[k], reference[k], rtol=0, atol=0, msg=k)
