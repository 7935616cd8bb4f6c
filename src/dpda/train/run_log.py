"""What a training run reports: ``metrics.jsonl`` records, TensorBoard scalars, console lines, run files.

``RUN_DIR/metrics.jsonl`` holds one JSON record per logged step (``"type":
"step"``, every ``train.log_every`` steps) and one per epoch (``"type":
"epoch"``). Step records: ``epoch`` (1-based), ``batch`` (within the epoch),
``step`` (global), ``loss_orig``/``loss_aug`` (per-path mean losses),
``skipped``, ``lr``, ``clips_per_s`` (utterances of the global batch per
second of the step), and from the step's statistics ``cos``, ``dot``,
``conflict``, ``norm_orig``/``norm_aug`` (L2 norms of the path gradients).
Epoch records: see :meth:`EpochStats.record` (the trainer adds the dev
numbers, ``improved``). Only rank 0 writes; the same scalars go to
``RUN_DIR/tensorboard/`` when the ``tensorboard`` package is installed.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from dpda import __version__
from dpda.config import dump_yaml
from dpda.fileio import atomic_write_text
from dpda.train.config import RunConfig
from dpda.train.step_stats import ConflictTracker, StepOutput

#: bins of the per-epoch histogram of the path gradients' cosine over [-1, 1]
COS_BINS = 20


@dataclass
class EpochAccumulator:
    """Running sums of one epoch's steps: losses (per path), utterances, seconds of the steps."""

    steps: int = 0
    loss_orig: float = 0.0
    loss_aug: float = 0.0
    samples: int = 0
    seconds: float = 0.0

    def state(self) -> Dict[str, float]:
        return dict(self.__dict__)


class EpochStats:
    """One epoch's running statistics (saved in mid-epoch checkpoints, so a resumed epoch reports as a whole)."""

    def __init__(self) -> None:
        self.acc = EpochAccumulator()
        self.tracker = ConflictTracker()
        self.cos_hist = np.zeros(COS_BINS, dtype=np.int64)

    def add(self, out: StepOutput, samples: int, seconds: float) -> None:
        """One step: its output, the utterances of its global batch, its duration (s)."""
        acc = self.acc
        acc.steps += 1
        acc.loss_orig += out.loss_orig
        acc.loss_aug += out.loss_aug
        acc.samples += samples
        acc.seconds += seconds
        self.tracker.update(out)
        if "cos" in out.stats:
            self.cos_hist[min(COS_BINS - 1, int((out.stats["cos"] + 1) / 2 * COS_BINS))] += 1

    @property
    def steps_per_second(self) -> float:
        return self.acc.steps / max(self.acc.seconds, 1e-9)

    def state(self) -> Dict[str, Any]:
        """The checkpoint entries ``accumulator``, ``tracker``, ``cos_hist``."""
        return {"accumulator": self.acc.state(), "tracker": dict(self.tracker.__dict__),
                "cos_hist": self.cos_hist.tolist()}

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "EpochStats":
        stats = cls()
        stats.acc = EpochAccumulator(**state["accumulator"])
        stats.tracker.__dict__.update(state["tracker"])
        stats.cos_hist = np.array(state["cos_hist"], dtype=np.int64)
        return stats

    def record(self, epoch: int, seconds: float, lr: float) -> Dict[str, Any]:
        """The epoch record: ``train_loss`` (mean of the two paths), per-path losses, ``seconds`` (wall time
        of the epoch), ``clips_per_s``, ``lr``, the tracker's summary and ``cos_hist``."""
        acc, n = self.acc, max(self.acc.steps, 1)
        return {
            "type": "epoch", "epoch": epoch + 1,
            "train_loss": 0.5 * (acc.loss_orig + acc.loss_aug) / n,
            "train_loss_orig": acc.loss_orig / n, "train_loss_aug": acc.loss_aug / n,
            "seconds": seconds, "clips_per_s": acc.samples / max(acc.seconds, 1e-9),
            "lr": lr, **self.tracker.summary(), "cos_hist": self.cos_hist.tolist(),
        }


def step_record(epoch: int, batch: int, step: int, out: StepOutput, lr: float, samples: int,
                seconds: float) -> Dict[str, Any]:
    """The ``metrics.jsonl`` record of one step (``epoch`` 0-based here, 1-based in the record)."""
    rec: Dict[str, Any] = {"type": "step", "epoch": epoch + 1, "batch": batch, "step": step,
                           "loss_orig": out.loss_orig, "loss_aug": out.loss_aug, "skipped": out.skipped,
                           "lr": lr, "clips_per_s": samples / max(seconds, 1e-9)}
    for k in ("cos", "dot", "conflict"):
        if k in out.stats:
            rec[k] = out.stats[k]
    if "norms" in out.stats:
        rec["norm_orig"], rec["norm_aug"] = out.stats["norms"]
    return rec


def epoch_message(rec: Dict[str, Any], seconds: float, dual_path: bool) -> str:
    """'epoch 3: train loss 0.4, dev loss 0.5, dev EER 7.00%, conflicts 41.0% (12 s)'."""
    msg = f"epoch {rec['epoch']}: train loss {rec['train_loss']:.4f}"
    if "dev_loss" in rec:
        msg += f", dev loss {rec['dev_loss']:.4f}, dev EER {rec['dev_eer']:.2f}%"
    if dual_path:
        msg += f", conflicts {100 * rec['conflict_rate']:.1f}%"
    return msg + f" ({seconds:.0f} s)"


class RunLog:
    """The run's reports: console lines, ``metrics.jsonl``, TensorBoard, ``config.yaml`` and ``env.json``.

    Only the main rank (``is_main``) prints or writes. TensorBoard is opened
    by :meth:`open_tensorboard` (``writer`` is None before, on other ranks and
    without the ``tensorboard`` package).
    """

    def __init__(self, run_dir: Path, is_main: bool, log: Callable[[str], None]) -> None:
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self.metrics = self.run_dir / "metrics.jsonl"
        self.writer: Optional[Any] = None
        self._log = log

    def __call__(self, msg: str) -> None:
        """A console line (main rank only)."""
        if self.is_main:
            self._log(msg)

    def write_run_files(self, cfg: RunConfig, device: torch.device, world: int) -> None:
        """``config.yaml`` (the resolved configuration) and ``env.json`` (versions, device, command line)."""
        if not self.is_main:
            return
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.yaml", dump_yaml(cfg))
        env = {
            "dpda": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform(), "device": str(device),
            "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "world_size": world, "argv": sys.argv, "threads": torch.get_num_threads(),
        }
        atomic_write_text(self.run_dir / "env.json", json.dumps(env, indent=2))

    def open_tensorboard(self, purge_step: Optional[int]) -> None:
        """Start TensorBoard events; ``purge_step`` drops events a killed run wrote after its last checkpoint."""
        if not self.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the tensorboard package is optional
            return
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge_step)

    def record(self, rec: Dict[str, Any]) -> None:
        """Append one record to ``metrics.jsonl`` (flushed) and its numbers to TensorBoard."""
        if not self.is_main:
            return
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
        if self.writer is not None:
            kind = rec["type"]
            step = rec["step"] if kind == "step" else rec["epoch"]
            for k, v in rec.items():
                is_number = isinstance(v, (int, float)) and not isinstance(v, bool)
                if k not in ("type", "epoch", "step", "batch") and is_number:
                    self.writer.add_scalar(f"{kind}/{k}", v, step)
            if kind == "step" and "conflict" in rec:
                self.writer.add_scalar("step/conflict", int(rec["conflict"]), step)

    def offset(self) -> int:
        """The size of ``metrics.jsonl`` in bytes (what a checkpoint remembers)."""
        return self.metrics.stat().st_size if self.metrics.exists() else 0

    def truncate(self, offset: int) -> None:
        """Cut ``metrics.jsonl`` back to ``offset`` bytes (what it held at the checkpoint a run resumes from)."""
        if self.is_main and self.metrics.exists():
            with open(self.metrics, "r+b") as f:
                f.truncate(int(offset))

    def discard(self) -> None:
        """Remove ``metrics.jsonl`` and the TensorBoard events (a run started again from the beginning)."""
        self.metrics.unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / "tensorboard", ignore_errors=True)

    def step_records(self) -> List[Dict[str, Any]]:
        """The step records of ``metrics.jsonl``, in order."""
        out = []
        with open(self.metrics, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("type") == "step":
                    out.append(rec)
        return out

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


__all__ = ["COS_BINS", "EpochAccumulator", "EpochStats", "RunLog", "epoch_message", "step_record"]
