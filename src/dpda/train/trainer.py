"""The training loop of ``dpda train``: epochs of gradient steps, validation, checkpoints, resume.

The loop owns the order of things; the parts live in their own modules:
what a run is built from (:mod:`dpda.train.build`), the gradient step of
each mode (:mod:`dpda.train.steps`), the reports (:mod:`dpda.train.run_log`),
the checkpoints (:mod:`dpda.train.checkpointer`) and the end of the run
(:mod:`dpda.train.finalize`).

Run directory layout::

    RUN_DIR/config.yaml        resolved configuration (what ran)
    RUN_DIR/env.json           versions, device, command line
    RUN_DIR/metrics.jsonl      one JSON record per logged step and per epoch
    RUN_DIR/checkpoints/last.pt       full state after the last completed checkpoint
    RUN_DIR/checkpoints/last.prev.pt  the one before (used if last.pt is unreadable)
    RUN_DIR/checkpoints/epoch_NNN.pt  weights of the top-k epochs by the monitored metric
    RUN_DIR/model.pt           final model: the top-k average or the best epoch, with the
                               dev EER threshold and a logistic calibration fitted on dev
    RUN_DIR/plots/*.png        loss per path, conflict rate, cosine histogram, dev EER, gradient norms
    RUN_DIR/tensorboard/       TensorBoard events (when the ``tensorboard`` package is installed:
                               ``pip install dpda[tensorboard]``)
    RUN_DIR/summary.json       final numbers

Resume (``dpda train --resume RUN_DIR``): model, optimizer, scheduler, loss
scaler, aligner state, RNG states (torch CPU/CUDA and the on-device
augmentation generator), the position in the epoch's data order and the
epoch's running statistics are restored from ``last.pt``, and
``metrics.jsonl`` is cut back to what it held at that checkpoint, so a resumed
run ends with the same weights as an uninterrupted one (given the same
hardware and thread settings). SIGINT / SIGTERM during the epochs stop the run
after the current step with ``last.pt`` written at that step
(:mod:`dpda.train.interrupt`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from dpda.config import to_dict
from dpda.devices import place_rank
from dpda.metrics import compute_eer
from dpda.progress import Progress
from dpda.train.build import DeviceAugment, build_datasets, build_optimizer, build_run_model, build_scheduler
from dpda.train.checkpoint import RUN_MODEL_FILE, inference_payload
from dpda.train.checkpointer import Checkpointer, capture_rng, restore_rng
from dpda.train.config import RunConfig
from dpda.train.data import EpochSampler, EvalSet, eval_loader, train_loader
from dpda.train.engine import StepOutput, model_logits, weighted_cross_entropy
from dpda.train.finalize import DevResult, finish_run, finished_summary
from dpda.train.interrupt import StopRequest, TrainingInterrupted
from dpda.train.ranks import rank_and_world
from dpda.train.run_log import EpochStats, RunLog, epoch_message, step_record
from dpda.train.steps import build_step


class SimulatedCrash(RuntimeError):
    """Raised by the ``stop_after_steps`` test hook (an abrupt stop without saving)."""


class Trainer:
    """Runs one training job described by a :class:`RunConfig` in ``run_dir``.

    Everything the run is made of is built here, in a fixed order after
    seeding torch with ``cfg.seed``; :meth:`fit` runs (or resumes) the loop.

    Args:
        resume: continue the run in ``run_dir`` from its last checkpoint; a run
            stopped before its first one starts again from the beginning (its
            ``metrics.jsonl`` and TensorBoard events are removed here).
        progress: a progress line per epoch on a terminal.
        stop_after_steps: test hook: raise :class:`SimulatedCrash` after this many steps.
        checkpoint_every: also write ``last.pt`` every N steps within an epoch (0: at epoch ends only).
        log: where console lines go (rank 0 only).
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: Path,
        *,
        resume: bool = False,
        progress: bool = True,
        stop_after_steps: Optional[int] = None,
        checkpoint_every: int = 0,
        log: Callable[[str], None] = print,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.stop_after_steps = stop_after_steps
        self.checkpoint_every = checkpoint_every
        self.show_progress = progress
        self.rank, self.world = rank_and_world()
        self.is_main = self.rank == 0
        self.log = RunLog(self.run_dir, self.is_main, log)
        self.checkpointer = Checkpointer(self.run_dir / "checkpoints", cfg.train.top_k, self.is_main)
        self.device = place_rank(cfg.device, world_size=self.world, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                                 local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)))).device
        self.resume = resume and self.checkpointer.has_last()
        if resume and not self.resume:  # stopped before its first checkpoint: its reports go, it starts again
            self.log(f"{self.run_dir} has no checkpoint yet (stopped before the first one): "
                     "starting it from the beginning")
            self.log.discard()
        self.history: List[Dict[str, Any]] = []  # epoch records
        self.bad_epochs = 0  # epochs since the monitored metric last improved
        torch.manual_seed(cfg.seed)  # the model's initial weights
        self.train_set, self.dev_m = build_datasets(cfg, self.world)
        self.model = build_run_model(cfg, self.device, fresh=not self.resume, log=self.log)
        self.loss_fn = weighted_cross_entropy(cfg.train.bonafide_weight, cfg.train.spoof_weight)
        self.step = build_step(cfg, self.model, self.loss_fn)
        self.optimizer = build_optimizer(cfg.train.optimizer, [p for p in self.model.parameters() if p.requires_grad])
        self.scheduler = build_scheduler(cfg.train, self.optimizer)
        self.augment = DeviceAugment(cfg, self.device, self.rank)
        self.stop = StopRequest(self.device, self.world, announce=self.is_main)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> Dict[str, Any]:
        """Train (or resume) to the end; write the final model; return the summary."""
        cfg = self.cfg
        epoch, batch, global_step, stats = 0, 0, 0, EpochStats()
        if self.resume:
            state = self.checkpointer.load_last(warn=self.log)
            done = finished_summary(cfg, self.run_dir, state)
            if done is not None:
                self.log(f"{self.run_dir} is finished ({done.get('epochs')} epoch(s)); nothing to resume. "
                         f"Model: {self.run_dir / RUN_MODEL_FILE}")
                return done
            epoch, batch, global_step, stats = self._restore(state)
            self.log(f"resuming {self.run_dir} at epoch {epoch + 1}, batch {batch} (step {global_step}) "
                     f"on {self.device}")
        else:
            self.log.write_run_files(cfg, self.device, self.world)
        self.log.open_tensorboard(purge_step=global_step + 1 if self.resume else None)
        stopped_early = False
        with self.stop:  # SIGINT / SIGTERM: stop after the current step, with last.pt written there
            for e in range(epoch, cfg.train.epochs):
                if self.history and 0 < cfg.train.patience <= self.bad_epochs:
                    stopped_early = True
                    break
                start = batch if e == epoch else 0
                global_step = self._train_epoch(e, start, global_step, stats if start else EpochStats())
                if self.stop.requested():  # arrived during validation: last.pt of the epoch end is written
                    self._interrupt(e + 1, 0, None, global_step, None)
        summary = finish_run(cfg, self.run_dir, model=self.model, history=self.history, checkpointer=self.checkpointer,
                             stopped_early=stopped_early, world=self.world, device=self.device,
                             validate=self.validate if self.dev_m is not None else None, monitored=self._monitored,
                             run_log=self.log)
        self.step.close()
        self.log.close()
        return summary

    def _train_epoch(self, epoch: int, start_batch: int, global_step: int, stats: EpochStats) -> int:
        """Epoch ``epoch`` (0-based) from batch ``start_batch`` on, its record and checkpoints; the new global step."""
        cfg = self.cfg
        self.train_set.set_epoch(epoch)
        sampler = EpochSampler(len(self.train_set), cfg.seed, epoch, cfg.data.batch_size, self.rank, self.world,
                               start_batch, max_batches=cfg.train.steps_per_epoch)
        loader = train_loader(self.train_set, sampler, cfg.data.num_workers, pin_memory=self.device.type == "cuda")
        progress = Progress(sampler.num_batches - sampler.start_batch, self.show_progress,
                            label=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="steps")
        self.model.train()
        batch = sampler.start_batch
        t_epoch = time.time()
        batches = iter(loader)
        while True:
            try:
                x, x_aug, y = next(batches)
            except StopIteration:
                break
            except RuntimeError:  # a loader worker stopped by the same Ctrl-C (sent to the process group)
                if not self.stop.received:
                    raise
                progress.close()
                self._interrupt(epoch, batch, sampler.num_batches, global_step, stats)
            t0 = time.time()
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            xa = x_aug.to(self.device, non_blocking=True) if x_aug.numel() else None
            out = self.compute_gradients(x, xa, y)
            if not out.skipped:
                self.optimizer.step()
            batch += 1
            global_step += 1
            dt = time.time() - t0
            samples = len(y) * self.world
            stats.add(out, samples, dt)
            if global_step % max(cfg.train.log_every, 1) == 0:
                self.log.record(step_record(epoch, batch, global_step, out, self._lr(), samples, dt))
            progress.update()
            saved = self.checkpoint_every and global_step % self.checkpoint_every == 0 and batch < sampler.num_batches
            if saved:
                self.checkpointer.save_last(self._full_state(epoch, batch, global_step, stats))
            if self.stop_after_steps is not None and global_step >= self.stop_after_steps:
                raise SimulatedCrash(f"stopped after {global_step} steps")
            if self.stop.requested():
                progress.close()
                self._interrupt(epoch, batch, sampler.num_batches, global_step, None if saved else stats)
        progress.close()
        self._end_epoch(epoch, stats, time.time() - t_epoch)
        if self.scheduler is not None:
            self.scheduler.step()
        self.checkpointer.save_last(self._full_state(epoch + 1, 0, global_step, EpochStats()))
        return global_step

    def _interrupt(self, epoch: int, batch: int, num_batches: Optional[int], global_step: int,
                   stats: Optional[EpochStats]) -> None:
        """Write ``last.pt`` at this step boundary (unless ``stats`` is None: already written) and stop.

        ``epoch`` is 0-based, ``batch`` the batches of it done (``num_batches`` None: at an epoch end).
        Raises :class:`TrainingInterrupted`.
        """
        if stats is not None:
            self.checkpointer.save_last(self._full_state(epoch, batch, global_step, stats))
        if num_batches is None:
            where = f"after step {global_step} (end of epoch {epoch})"
        else:
            where = f"after step {global_step} (epoch {epoch + 1}, batch {batch} of {num_batches})"
        message = (f"{self.stop.signal_name or 'stop'}: checkpoint written {where}; "
                   f"continue with: dpda train --resume {self.run_dir}")
        self.log(message)
        self.log.close()
        raise TrainingInterrupted(message)

    def compute_gradients(self, x: torch.Tensor, x_aug: Optional[torch.Tensor], y: torch.Tensor) -> StepOutput:
        """Augmentation on the device (when ``x_aug`` is None), then the mode's step into ``param.grad``.

        ``x``, ``x_aug``: (B, T) waveforms on :attr:`device`; ``y``: (B,) labels (1 = bona fide).
        """
        if x_aug is None:
            x_aug = self.augment(x)
        return self.step(x, x_aug, y)

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _monitored(self, rec: Dict[str, Any]) -> float:
        """The monitored value of an epoch record (lower is better): ``train.monitor`` (train loss without dev)."""
        return float(rec[self.cfg.train.monitor if self.dev_m is not None else "train_loss"])

    def _end_epoch(self, epoch: int, stats: EpochStats, seconds: float) -> None:
        """The epoch's record (with dev numbers), early-stopping count, top-k checkpoint and console line."""
        cfg = self.cfg
        rec = stats.record(epoch, seconds, self._lr())
        if self.dev_m is not None:
            dev_loss, dev_eer, thr, _, _ = self.validate()
            rec.update(dev_loss=dev_loss, dev_eer=dev_eer, dev_threshold=thr)
        value = self._monitored(rec)
        improved = not self.history or value < min(self._monitored(h) for h in self.history)
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        rec["improved"] = improved
        self.history.append(rec)
        self.log.record(rec)
        self.checkpointer.keep_if_top(epoch, value, lambda: inference_payload(
            cfg.model.name, cfg.model.config, self.model, cfg.data.sample_rate, cfg.data.crop_samples, epoch=epoch + 1))
        self.log(epoch_message(rec, seconds, dual_path=cfg.train.mode != "single"))

    @torch.no_grad()
    def validate(self, model: Optional[nn.Module] = None) -> DevResult:
        """(dev loss, dev EER %, EER threshold, bona fide scores, spoof scores) of ``model`` (default: self.model)."""
        model = model or self.model
        assert self.dev_m is not None
        was_training = model.training
        model.eval()
        d = self.cfg.data
        loader = eval_loader(EvalSet(self.dev_m, d.sample_rate, d.crop_samples), d.eval_batch_size, d.num_workers,
                             pin_memory=self.device.type == "cuda")
        losses, n, scores, labels = 0.0, 0, [], []
        for x, y in loader:
            x, y = x.to(self.device), y.to(self.device)
            logits = model_logits(model(x)).float()
            losses += float(self.loss_fn(logits, y)) * len(y)
            n += len(y)
            scores.append(logits[:, 1].cpu().numpy())
            labels.append(y.cpu().numpy())
        model.train(was_training)
        s, lab = np.concatenate(scores), np.concatenate(labels)
        bona, spoof = s[lab == 1], s[lab == 0]
        eer, thr = compute_eer(bona, spoof) if len(bona) and len(spoof) else (float("nan"), float("nan"))
        return losses / max(n, 1), 100.0 * eer, thr, bona, spoof

    # ------------------------------------------------------------------ resume state
    def _full_state(self, epoch: int, batch: int, global_step: int, stats: EpochStats) -> Dict[str, Any]:
        """``last.pt``: the model file of the current weights plus all a resume needs (at ``epoch``, ``batch``)."""
        cfg = self.cfg
        payload = inference_payload(cfg.model.name, cfg.model.config, self.model, cfg.data.sample_rate,
                                    cfg.data.crop_samples)
        payload.update(
            epoch=epoch, batch=batch, global_step=global_step,
            optimizer=self.optimizer.state_dict(),
            scheduler=None if self.scheduler is None else self.scheduler.state_dict(),
            **self.step.state_dict(),
            rng=capture_rng(self.device, self.augment),
            trainer={"history": self.history, "topk": self.checkpointer.topk, "bad_epochs": self.bad_epochs,
                     **stats.state(), "metrics_offset": self.log.offset()},
            config=to_dict(cfg),
        )
        return payload

    def _restore(self, state: Dict[str, Any]) -> Tuple[int, int, int, EpochStats]:
        """Load a full state; returns (epoch, batch, global step, the epoch's running statistics)."""
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.step.load_state_dict(state)
        restore_rng(state["rng"], self.augment, state["global_step"], self.log)
        t = state["trainer"]
        self.history, self.bad_epochs = t["history"], t["bad_epochs"]
        self.checkpointer.restore_topk(t["topk"])
        self.log.truncate(t["metrics_offset"])
        return state["epoch"], state["batch"], state["global_step"], EpochStats.from_state(t)


def new_run_dir(cfg: RunConfig) -> Path:
    """``runs_dir/name-YYYYmmdd-HHMMSS`` (a suffix is added if it exists)."""
    base = Path(cfg.runs_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        path = Path(f"{base}-{i}")
        i += 1
    return path
