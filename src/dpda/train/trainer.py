"""The training loop of ``dpda train``: single / dual / dpda modes, validation, checkpoints, resume.

Run directory layout::

    RUN_DIR/config.yaml        resolved configuration (what ran)
    RUN_DIR/env.json           versions, device, command line
    RUN_DIR/metrics.jsonl      one JSON record per logged step and per epoch
    RUN_DIR/checkpoints/last.pt       full state after the last completed checkpoint
    RUN_DIR/checkpoints/last.prev.pt  the one before (used if last.pt is unreadable)
    RUN_DIR/checkpoints/epoch_NNN.pt  weights of the top-k epochs by the monitored metric
    RUN_DIR/model.pt           final model: average of the top-k epochs' weights, with the
                               dev EER threshold and a logistic calibration fitted on dev
    RUN_DIR/plots/*.png        loss per path, conflict rate, cosine histogram, dev EER, gradient norms
    RUN_DIR/tensorboard/       TensorBoard events (when the ``tensorboard`` package is installed:
                               ``pip install dpda[tensorboard]``)
    RUN_DIR/summary.json       final numbers

Weight averaging: floating-point tensors of the top-k state dicts (BatchNorm
running statistics included) are averaged; integer buffers (BatchNorm's
``num_batches_tracked``) are taken from the best epoch.

Resume (``dpda train --resume RUN_DIR``): model, optimizer, scheduler, loss
scaler, aligner state, RNG states (torch CPU/CUDA and the on-device
augmentation generator), the position in the epoch's data order and the
epoch's running statistics are restored from ``last.pt``, and
``metrics.jsonl`` is cut back to what it held at that checkpoint, so a resumed
run ends with the same weights as an uninterrupted one (given the same
hardware and thread settings).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from dpda import __version__
from dpda.config import dump_yaml, to_dict
from dpda.devices import place_rank
from dpda.errors import DpdaError
from dpda.fileio import atomic_write_text
from dpda.metrics import compute_eer
from dpda.models import build_model
from dpda.train.build import DeviceAugment, build_datasets, build_optimizer, build_run_model, build_scheduler
from dpda.train.checkpoint import INIT_ONLY_OPTIONS, RUN_MODEL_FILE, CheckpointError, inference_payload, load_checkpoint, save_checkpoint
from dpda.train.config import RunConfig
from dpda.train.data import EpochSampler, EvalSet, eval_loader, train_loader
from dpda.train.engine import ConflictTracker, StepOutput, model_logits, weighted_cross_entropy
from dpda.train.steps import build_step

COS_BINS = 20


class SimulatedCrash(RuntimeError):
    """Raised by the ``stop_after_steps`` test hook (an abrupt stop without saving)."""


@dataclass
class EpochAccumulator:
    """Running sums of one epoch (saved in mid-epoch checkpoints)."""

    steps: int = 0
    loss_orig: float = 0.0
    loss_aug: float = 0.0
    samples: int = 0
    seconds: float = 0.0

    def state(self) -> Dict[str, float]:
        return dict(self.__dict__)


class Progress:
    """A one-line progress bar with rate and ETA on stderr (only when it is a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def update(self, epoch: int, epochs: int, step: int, steps: int, rate: float, loss: float) -> None:
        if not self.enabled or time.time() - self.last < 0.2:
            return
        self.last = time.time()
        eta = (steps - step) / rate if rate > 0 else float("nan")
        width = 24
        filled = int(width * step / max(steps, 1))
        sys.stderr.write(
            f"\repoch {epoch + 1}/{epochs} [{'#' * filled}{'.' * (width - filled)}] {step}/{steps} "
            f"loss {loss:.4f} {rate:.1f} it/s ETA {_fmt_time(eta)}   "
        )
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def average_state_dicts(states: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Mean of floating-point tensors; other tensors from the first (best) state."""
    out = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            out[k] = sum(s[k].double() for s in states).div(len(states)).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


class Trainer:
    """Runs one training job described by a :class:`RunConfig` in ``run_dir``."""

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
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.resume = resume
        self.stop_after_steps = stop_after_steps
        self.checkpoint_every = checkpoint_every
        self.progress = Progress(progress)
        self.rank, self.world = 0, 1
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        self._log = log
        self.device = place_rank(cfg.device, world_size=self.world, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                                 local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)))).device

    def log(self, msg: str) -> None:
        if self.is_main:
            self._log(msg)

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.train_set, self.dev_m = build_datasets(cfg, self.world)
        self.model = build_run_model(cfg, self.device, fresh=not self.resume, log=self.log)
        self.loss_fn = weighted_cross_entropy(cfg.train.bonafide_weight, cfg.train.spoof_weight)
        self.step = build_step(cfg, self.model, self.loss_fn)
        self.optimizer = build_optimizer(cfg.train.optimizer, [p for p in self.model.parameters() if p.requires_grad])
        self.scheduler = build_scheduler(cfg.train, self.optimizer)
        self.augment = DeviceAugment(cfg, self.device, self.rank)

    # ------------------------------------------------------------------ state
    def _full_state(self, epoch: int, batch: int, global_step: int, acc: EpochAccumulator, tracker: ConflictTracker,
                    cos_hist: np.ndarray) -> Dict[str, Any]:
        payload = inference_payload(self.cfg.model.name, self.cfg.model.config, self.model,
                                    self.cfg.data.sample_rate, self.cfg.data.crop_samples)
        rng = {"torch": torch.get_rng_state(), "augment": self.augment.generator.get_state(),
               "augment_device": self.device.type}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        metrics_path = self.run_dir / "metrics.jsonl"
        payload.update(
            epoch=epoch, batch=batch, global_step=global_step,
            optimizer=self.optimizer.state_dict(),
            scheduler=None if self.scheduler is None else self.scheduler.state_dict(),
            **self.step.state_dict(),
            rng=rng,
            trainer={
                "history": self.history, "topk": self.topk, "bad_epochs": self.bad_epochs,
                "accumulator": acc.state(), "tracker": dict(tracker.__dict__), "cos_hist": cos_hist.tolist(),
                "metrics_offset": metrics_path.stat().st_size if metrics_path.exists() else 0,
            },
            config=to_dict(self.cfg),
        )
        return payload

    def _save_last(self, state: Dict[str, Any]) -> None:
        if not self.is_main:
            return
        last = self.ckpt_dir / "last.pt"
        if last.exists():
            os.replace(last, self.ckpt_dir / "last.prev.pt")
        save_checkpoint(last, state)

    def _load_last(self) -> Dict[str, Any]:
        errors = []
        for name in ("last.pt", "last.prev.pt"):
            path = self.ckpt_dir / name
            if not path.exists():
                continue
            try:
                state = load_checkpoint(path, map_location="cpu")
                if errors:
                    self.log(f"warning: {errors[-1]}; resuming from {path.name} instead")
                return state
            except CheckpointError as e:
                errors.append(str(e))
        raise DpdaError(f"{self.run_dir}: nothing to resume from" + (f" ({'; '.join(errors)})" if errors else " (no checkpoints/last.pt)"))

    def _restore(self, state: Dict[str, Any]):
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.step.load_state_dict(state)
        self._restore_rng(state["rng"], state["global_step"])
        t = state["trainer"]
        self.history, self.topk, self.bad_epochs = t["history"], [tuple(x) for x in t["topk"]], t["bad_epochs"]
        acc = EpochAccumulator(**t["accumulator"])
        tracker = ConflictTracker()
        tracker.__dict__.update(t["tracker"])
        metrics = self.run_dir / "metrics.jsonl"
        if self.is_main and metrics.exists():
            with open(metrics, "r+b") as f:
                f.truncate(int(t["metrics_offset"]))
        return state["epoch"], state["batch"], state["global_step"], acc, tracker, np.array(t["cos_hist"], dtype=np.int64)

    def _restore_rng(self, rng: Dict[str, Any], global_step: int) -> None:
        """RNG states of a checkpoint, which may come from another device (resume of a CUDA run on the CPU, ...).

        The CPU stream is the same everywhere. The augmentation generator's state
        is device-specific (a CPU Mersenne Twister vs a CUDA Philox counter): it
        continues exactly on the same device type, and is reseeded from the seed,
        the step and the rank on another one (random augmentations then differ from
        an uninterrupted run; nothing else does). CUDA states are restored for
        the GPUs both machines have.
        """
        torch.set_rng_state(rng["torch"].to(device="cpu", dtype=torch.uint8))
        saved_on = rng.get("augment_device")
        if not self.augment.restore(rng["augment"], saved_on, global_step):
            self.log(f"note: the checkpoint's augmentation RNG comes from {saved_on or 'another device'} and cannot continue "
                     f"on {self.device.type}; reseeded it (the random augmentations differ from an uninterrupted run)")
        cuda_states = rng.get("cuda") or []
        if torch.cuda.is_available() and cuda_states:
            for index in range(min(len(cuda_states), torch.cuda.device_count())):
                torch.cuda.set_rng_state(cuda_states[index].to(device="cpu", dtype=torch.uint8), index)

    # ------------------------------------------------------------------ logging
    def _tensorboard(self, purge_step: Optional[int]):
        if not self.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the tensorboard package is optional
            return None
        # purge_step drops events a killed run wrote after its last checkpoint
        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge_step)

    def _record(self, rec: Dict[str, Any]) -> None:
        if not self.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
        tb = getattr(self, "tb", None)
        if tb is not None:
            kind = rec["type"]
            step = rec["step"] if kind == "step" else rec["epoch"]
            for k, v in rec.items():
                if k not in ("type", "epoch", "step", "batch") and isinstance(v, (int, float)) and not isinstance(v, bool):
                    tb.add_scalar(f"{kind}/{k}", v, step)
            if kind == "step" and "conflict" in rec:
                tb.add_scalar("step/conflict", int(rec["conflict"]), step)

    def _write_run_files(self) -> None:
        if not self.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir.mkdir(exist_ok=True)
        atomic_write_text(self.run_dir / "config.yaml", dump_yaml(self.cfg))
        env = {
            "dpda": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform(), "device": str(self.device),
            "cuda": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
            "world_size": self.world, "argv": sys.argv, "threads": torch.get_num_threads(),
        }
        atomic_write_text(self.run_dir / "env.json", json.dumps(env, indent=2))

    # ------------------------------------------------------------------ steps
    def compute_gradients(self, x: torch.Tensor, x_aug: Optional[torch.Tensor], y: torch.Tensor) -> StepOutput:
        """Augmentation on the device (when ``x_aug`` is None), the mode's gradients and clipping, into ``param.grad``.

        ``x``, ``x_aug``: (B, T) waveforms on :attr:`device`; ``y``: (B,) labels (1 = bona fide).
        """
        if x_aug is None:
            x_aug = self.augment(x)
        return self.step(x, x_aug, y)

    def _train_step(self, x: torch.Tensor, x_aug: Optional[torch.Tensor], y: torch.Tensor) -> StepOutput:
        out = self.compute_gradients(x, x_aug, y)
        if not out.skipped:
            self.optimizer.step()
        return out

    @torch.no_grad()
    def validate(self, model: Optional[nn.Module] = None) -> Tuple[float, float, float, np.ndarray, np.ndarray]:
        """(dev loss, dev EER %, EER threshold, bona fide scores, spoof scores) on the dev split."""
        model = model or self.model
        assert self.dev_m is not None
        was_training = model.training
        model.eval()
        loader = eval_loader(EvalSet(self.dev_m, self.cfg.data.sample_rate, self.cfg.data.crop_samples),
                             self.cfg.data.eval_batch_size, self.cfg.data.num_workers, pin_memory=self.device.type == "cuda")
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

    # ------------------------------------------------------------------ main loop
    def _finished_summary(self, state: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """The summary of a run whose last checkpoint is its end and whose final model is written, else None."""
        t = state["trainer"]
        ended = state["epoch"] >= self.cfg.train.epochs or (0 < self.cfg.train.patience <= t["bad_epochs"])
        summary_file = self.run_dir / "summary.json"
        if not (ended and state["batch"] == 0 and (self.run_dir / RUN_MODEL_FILE).is_file() and summary_file.is_file()):
            return None
        try:
            return json.loads(summary_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # an unreadable summary: finish again

    def fit(self) -> Dict[str, Any]:
        cfg = self.cfg
        state: Optional[Dict[str, Any]] = None
        if self.resume:
            if not any((self.ckpt_dir / name).exists() for name in ("last.pt", "last.prev.pt")):
                self.log(f"{self.run_dir} has no checkpoint yet (stopped before the first one): starting it from the beginning")
                self.resume = False
                (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
                shutil.rmtree(self.run_dir / "tensorboard", ignore_errors=True)
            else:
                state = self._load_last()
                done = self._finished_summary(state)
                if done is not None:
                    self.log(f"{self.run_dir} is finished ({done.get('epochs')} epoch(s)); nothing to resume. "
                             f"Model: {self.run_dir / RUN_MODEL_FILE}")
                    return done
        self._build()
        self.history: List[Dict[str, Any]] = []
        self.topk: List[Tuple[float, int, str]] = []
        self.bad_epochs = 0
        start_epoch, start_batch, global_step = 0, 0, 0
        acc, tracker, cos_hist = EpochAccumulator(), ConflictTracker(), np.zeros(COS_BINS, dtype=np.int64)
        if state is not None:
            start_epoch, start_batch, global_step, acc, tracker, cos_hist = self._restore(state)
            self.log(f"resuming {self.run_dir} at epoch {start_epoch + 1}, batch {start_batch} (step {global_step}) "
                     f"on {self.device}")
        else:
            self._write_run_files()
        self.tb = self._tensorboard(purge_step=global_step + 1 if self.resume else None)
        stopped_early = False
        for epoch in range(start_epoch, cfg.train.epochs):
            if self.history and self._should_stop():
                stopped_early = True
                break
            self.train_set.set_epoch(epoch)
            sampler = EpochSampler(len(self.train_set), cfg.seed, epoch, cfg.data.batch_size, self.rank, self.world,
                                   start_batch if epoch == start_epoch else 0, max_batches=cfg.train.steps_per_epoch)
            loader = train_loader(self.train_set, sampler, cfg.data.num_workers, pin_memory=self.device.type == "cuda")
            if epoch != start_epoch or start_batch == 0:
                acc, tracker, cos_hist = EpochAccumulator(), ConflictTracker(), np.zeros(COS_BINS, dtype=np.int64)
            self.model.train()
            batch = sampler.start_batch
            t_epoch = time.time()
            for x, x_aug, y in loader:
                t0 = time.time()
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                xa = x_aug.to(self.device, non_blocking=True) if x_aug.numel() else None
                out = self._train_step(x, xa, y)
                batch += 1
                global_step += 1
                dt = time.time() - t0
                acc.steps += 1
                acc.loss_orig += out.loss_orig
                acc.loss_aug += out.loss_aug
                acc.samples += len(y) * self.world
                acc.seconds += dt
                tracker.update(out)
                if "cos" in out.stats:
                    cos_hist[min(COS_BINS - 1, int((out.stats["cos"] + 1) / 2 * COS_BINS))] += 1
                if global_step % max(cfg.train.log_every, 1) == 0:
                    rec = {"type": "step", "epoch": epoch + 1, "batch": batch, "step": global_step,
                           "loss_orig": out.loss_orig, "loss_aug": out.loss_aug, "skipped": out.skipped,
                           "lr": self.optimizer.param_groups[0]["lr"], "clips_per_s": len(y) * self.world / max(dt, 1e-9)}
                    for k in ("cos", "dot", "conflict"):
                        if k in out.stats:
                            rec[k] = out.stats[k]
                    if "norms" in out.stats:
                        rec["norm_orig"], rec["norm_aug"] = out.stats["norms"]
                    self._record(rec)
                self.progress.update(epoch, cfg.train.epochs, batch, sampler.num_batches, acc.steps / max(acc.seconds, 1e-9),
                                     0.5 * (acc.loss_orig + acc.loss_aug) / acc.steps)
                if self.checkpoint_every and global_step % self.checkpoint_every == 0 and batch < sampler.num_batches:
                    self._save_last(self._full_state(epoch, batch, global_step, acc, tracker, cos_hist))
                if self.stop_after_steps is not None and global_step >= self.stop_after_steps:
                    raise SimulatedCrash(f"stopped after {global_step} steps")
            self.progress.done()
            self._end_epoch(epoch, acc, tracker, cos_hist, time.time() - t_epoch)
            if self.scheduler is not None:
                self.scheduler.step()
            self._save_last(self._full_state(epoch + 1, 0, global_step, EpochAccumulator(), ConflictTracker(),
                                             np.zeros(COS_BINS, dtype=np.int64)))
        return self._finish(stopped_early)

    def _monitored(self, rec: Dict[str, Any]) -> float:
        key = self.cfg.train.monitor if self.dev_m is not None else "train_loss"
        return float(rec[key])

    def _should_stop(self) -> bool:
        p = self.cfg.train.patience
        return p > 0 and self.bad_epochs >= p

    def _end_epoch(self, epoch: int, acc: EpochAccumulator, tracker: ConflictTracker, cos_hist: np.ndarray, seconds: float) -> None:
        n = max(acc.steps, 1)
        rec: Dict[str, Any] = {
            "type": "epoch", "epoch": epoch + 1,
            "train_loss": 0.5 * (acc.loss_orig + acc.loss_aug) / n,
            "train_loss_orig": acc.loss_orig / n, "train_loss_aug": acc.loss_aug / n,
            "seconds": seconds, "clips_per_s": acc.samples / max(acc.seconds, 1e-9),
            "lr": self.optimizer.param_groups[0]["lr"], **tracker.summary(), "cos_hist": cos_hist.tolist(),
        }
        if self.dev_m is not None:
            dev_loss, dev_eer, thr, _, _ = self.validate()
            rec.update(dev_loss=dev_loss, dev_eer=dev_eer, dev_threshold=thr)
        value = self._monitored(rec)
        improved = not self.history or value < min(self._monitored(h) for h in self.history)
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        rec["improved"] = improved
        self.history.append(rec)
        self._record(rec)
        self._update_topk(epoch, value)
        msg = f"epoch {epoch + 1}: train loss {rec['train_loss']:.4f}"
        if "dev_loss" in rec:
            msg += f", dev loss {rec['dev_loss']:.4f}, dev EER {rec['dev_eer']:.2f}%"
        if self.cfg.train.mode != "single":
            msg += f", conflicts {100 * rec['conflict_rate']:.1f}%"
        self.log(msg + f" ({seconds:.0f} s)")

    def _update_topk(self, epoch: int, value: float) -> None:
        k = self.cfg.train.top_k
        if len(self.topk) >= k and value >= max(t[0] for t in self.topk):
            return
        name = f"epoch_{epoch + 1:03d}.pt"
        if self.is_main:
            save_checkpoint(self.ckpt_dir / name, inference_payload(self.cfg.model.name, self.cfg.model.config, self.model,
                                                                   self.cfg.data.sample_rate, self.cfg.data.crop_samples, epoch=epoch + 1))
        self.topk.append((value, epoch + 1, name))
        self.topk.sort(key=lambda t: (t[0], t[1]))
        while len(self.topk) > k:
            _, _, dropped = self.topk.pop()
            if self.is_main:
                (self.ckpt_dir / dropped).unlink(missing_ok=True)

    def _ranks_in_sync(self) -> bool:
        """All ranks hold identical weights (a cheap checksum comparison)."""
        with torch.no_grad():
            total = torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum().reshape(1)
        gathered = [torch.zeros_like(total) for _ in range(self.world)]
        dist.all_gather(gathered, total)
        return all(bool(torch.equal(g, gathered[0])) for g in gathered)

    def _choose_final_model(self, summary: Dict[str, Any]) -> Tuple[nn.Module, Dict[str, Any]]:
        """The model of ``model.pt`` by ``train.final_model``: the top-k average, the best epoch, or the better on dev.

        With ``better`` both candidates are evaluated on dev and compared by the
        monitored metric (ties go to the average); without a dev split the average
        is taken. ``summary["final_model"]`` reports the candidates' dev numbers and
        the choice. Returns the model and ``{"kind", "epochs", "dev"}`` of the choice
        (``dev``: :meth:`validate`'s tuple, or None).
        """
        cfg = self.cfg
        policy = cfg.train.final_model
        kinds = ["average", "best"] if policy == "better" and self.dev_m is not None and len(self.topk) > 1 else \
            ["best" if policy == "best" else "average"]
        states = {name: load_checkpoint(self.ckpt_dir / name)["model_state"] for _, _, name in self.topk}
        build_options = {k: v for k, v in cfg.model.config.items() if k not in INIT_ONLY_OPTIONS}  # weights come from states
        candidates: Dict[str, Dict[str, Any]] = {}
        for kind in kinds:
            picked = self.topk if kind == "average" else self.topk[:1]
            model = build_model(cfg.model.name, **build_options).to(self.device)
            model.load_state_dict(average_state_dicts([states[name] for _, _, name in picked]))
            dev = self.validate(model) if self.dev_m is not None else None
            candidates[kind] = {"kind": kind, "epochs": [e for _, e, _ in picked], "dev": dev, "model": model}
        if len(candidates) == 2:
            key = 0 if cfg.train.monitor == "dev_loss" else 1  # index into validate()'s tuple
            avg, best = candidates["average"], candidates["best"]
            chosen = avg if avg["dev"][key] <= best["dev"][key] else best
            self.log(f"final model: {_describe(avg)} vs {_describe(best)}: took the {chosen['kind']} "
                     f"(train.final_model: better, by {cfg.train.monitor})")
        else:
            chosen = next(iter(candidates.values()))
        summary["final_model"] = {
            "policy": policy, "chosen": chosen["kind"], "epochs": chosen["epochs"],
            "candidates": {k: {"epochs": c["epochs"], **({"dev_loss": c["dev"][0], "dev_eer": c["dev"][1]} if c["dev"] else {})}
                           for k, c in candidates.items()},
        }
        return chosen.pop("model"), chosen

    def _finish(self, stopped_early: bool) -> Dict[str, Any]:
        cfg = self.cfg
        summary: Dict[str, Any] = {"run_dir": str(self.run_dir), "epochs": len(self.history), "stopped_early": stopped_early,
                                   "world_size": self.world}
        if self.world > 1:
            summary["ranks_in_sync"] = self._ranks_in_sync()
            if not summary["ranks_in_sync"]:
                self.log("warning: the ranks' weights differ at the end of training")
        if self.is_main and self.topk:
            final, chosen = self._choose_final_model(summary)
            threshold, calibration = None, None
            if chosen.get("dev") is not None:
                dev_loss, dev_eer, threshold, bona, spoof = chosen["dev"]
                from dpda.metrics.calibration import fit_logistic_calibration

                a, b = fit_logistic_calibration(bona, spoof)
                calibration = {"a": float(a), "b": float(b)}
                summary.update(final_dev_loss=dev_loss, final_dev_eer=dev_eer)
            save_checkpoint(self.run_dir / "model.pt", inference_payload(
                cfg.model.name, cfg.model.config, final, cfg.data.sample_rate, cfg.data.crop_samples,
                threshold=threshold, calibration=calibration, averaged_epochs=chosen["epochs"],
                final_model=chosen["kind"]))
            best = min(self.history, key=self._monitored)
            summary.update(best_epoch=best["epoch"], averaged_epochs=chosen["epochs"], history=self.history)
            try:
                from dpda.plotting import plot_training

                summary["plots"] = plot_training(self.history, self._step_records(), self.run_dir / "plots")
            except Exception as e:  # plots must never lose a finished run
                self.log(f"warning: could not write plots: {e}")
            atomic_write_text(self.run_dir / "summary.json", json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
            self.log(f"finished: {len(self.history)} epoch(s), best epoch {best['epoch']}; model.pt is the "
                     f"{_describe({**chosen, 'dev': None})}: {self.run_dir / 'model.pt'}")
        self.step.close()
        if getattr(self, "tb", None) is not None:
            self.tb.close()
        return summary

    def _step_records(self) -> List[Dict[str, Any]]:
        path = self.run_dir / "metrics.jsonl"
        out = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("type") == "step":
                    out.append(rec)
        return out


def _describe(candidate: Dict[str, Any]) -> str:
    """'average of epochs 2, 3 (dev loss 0.9270, EER 17.00%)' for a final-model candidate."""
    epochs = candidate["epochs"]
    what = f"average of epochs {', '.join(map(str, epochs))}" if candidate["kind"] == "average" else f"best epoch {epochs[0]}"
    dev = candidate["dev"]
    return what + (f" (dev loss {dev[0]:.4f}, EER {dev[1]:.2f}%)" if dev is not None else "")


def new_run_dir(cfg: RunConfig) -> Path:
    """``runs_dir/name-YYYYmmdd-HHMMSS`` (a suffix is added if it exists)."""
    base = Path(cfg.runs_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        path = Path(f"{base}-{i}")
        i += 1
    return path


def remove_run(path: Path) -> None:  # pragma: no cover - convenience for scripts
    shutil.rmtree(path, ignore_errors=True)
