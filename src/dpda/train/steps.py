"""Gradient steps: what one training step computes into ``param.grad``, one interface for every mode.

A :class:`GradientStep` takes a batch of original waveforms ``x`` (B, T), their
augmented copies ``x_aug`` (B, T) and labels ``y`` (B,) (1 = bona fide, 0 =
spoof), all on the model's device, and leaves the update in ``param.grad``
(clipped to ``train.grad_clip`` when set); the caller steps the optimizer
unless the returned :class:`~dpda.train.engine.StepOutput` says ``skipped``
(a float16 step whose gradients were not finite).

======================  ===========================  ===========================================
``train.mode``          step                         what it computes
======================  ===========================  ===========================================
``single``              :class:`SinglePathStep`      the gradient of the augmented path's loss
``dual``                :class:`DualPathStep`        both paths, averaged (the ``none`` aligner)
``dpda``                :class:`DualPathStep`        both paths, aligned by ``train.aligner``
======================  ===========================  ===========================================

The dual-path step is the :class:`~dpda.train.engine.DualPathEngine` in
``train.engine_mode`` ``joint`` (one forward over ``[x; x_aug]``) or
``split`` (one forward/backward per path, or both in one vmapped pass,
:mod:`dpda.train.one_pass`, by ``train.one_pass``). :func:`build_step` is the
one place that turns a configuration into a step, and the one place that
builds the aligner.

Across ranks (``torchrun``) every step starts from rank 0's weights and
averages its gradients over the ranks (:mod:`dpda.train.ranks`); float16 loss
scaling is :class:`~dpda.train.amp.LossScaler`'s (:meth:`LossScaler.unscale_`).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, ContextManager, Dict, Mapping, Optional

import torch
import torch.nn as nn

from dpda.train.amp import LossScaler
from dpda.train.config import RunConfig
from dpda.train.engine import DualPathEngine, LossFn, StepOutput, model_logits
from dpda.train.ranks import average_over_ranks, broadcast_from_rank0

#: ``train.amp`` -> autocast dtype
AMP_DTYPES: Dict[str, Optional[torch.dtype]] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: ``train.one_pass`` -> the engine's ``one_pass`` argument
ONE_PASS: Dict[str, Optional[bool]] = {"auto": None, "on": True, "off": False}


class GradientStep(ABC):
    """Computes one step's update of ``model`` into ``param.grad`` (clipped); does not step the optimizer.

    Args:
        model: maps (N, T) waveforms to logits (N, 2) (or a tuple whose first item is).
        grad_clip: max L2 norm of the update over all parameters that have a
            gradient (``torch.nn.utils.clip_grad_norm_``); None: no clipping.
    """

    def __init__(self, model: nn.Module, grad_clip: Optional[float] = None) -> None:
        self.model = model
        self.grad_clip = grad_clip

    @property
    @abstractmethod
    def loss_scaler(self) -> Optional[LossScaler]:
        """The float16 loss scaler (None without float16 autocast)."""

    @abstractmethod
    def gradients(self, x: torch.Tensor, x_aug: torch.Tensor, y: torch.Tensor) -> StepOutput:
        """The mode's update into ``param.grad``, unclipped (see :meth:`__call__`)."""

    def __call__(self, x: torch.Tensor, x_aug: torch.Tensor, y: torch.Tensor) -> StepOutput:
        """The update of one batch into ``param.grad``, clipped to ``grad_clip``.

        Args:
            x: (B, T) original waveforms; x_aug: (B, T) their augmented copies;
            y: (B,) class indices (1 = bona fide), all on the model's device.
        Returns: the per-path mean losses and the step's statistics
        (``stats["norms"]``: the L2 norms of the path gradients before
        alignment and clipping; dual-path steps add the aligner's ``cos``,
        ``dot``, ``conflict``, ...).
        """
        out = self.gradients(x, x_aug, y)
        if not out.skipped and self.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], self.grad_clip)
        return out

    @abstractmethod
    def state_dict(self) -> Dict[str, Any]:
        """The step's entries of a training checkpoint: ``{"engine": ..., "scaler": ...}`` (None where unused)."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from a checkpoint holding :meth:`state_dict`'s entries (missing or None ones are skipped)."""

    def close(self) -> None:
        """Release what the step holds between steps (buffers)."""


class SinglePathStep(GradientStep):
    """``train.mode: single``: forward/backward of the augmented batch only (the RawBoost baseline).

    The original waveforms ``x`` are not used. Under float16 autocast the loss
    is scaled before the backward pass and the gradients unscaled (and checked)
    before clipping; across ranks the gradients are averaged.

    Args:
        model, grad_clip: see :class:`GradientStep`.
        loss_fn: ``loss_fn(logits (B, 2), y (B,)) -> scalar``.
        amp_dtype: None, ``torch.bfloat16`` or ``torch.float16`` (autocast of the forward).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, amp_dtype: Optional[torch.dtype] = None,
                 grad_clip: Optional[float] = None) -> None:
        super().__init__(model, grad_clip)
        self.loss_fn = loss_fn
        self.amp_dtype = amp_dtype
        self._scaler = LossScaler() if amp_dtype == torch.float16 else None
        broadcast_from_rank0(model)

    @property
    def loss_scaler(self) -> Optional[LossScaler]:
        return self._scaler

    def _autocast(self, x: torch.Tensor) -> ContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=self.amp_dtype)

    def gradients(self, x: torch.Tensor, x_aug: torch.Tensor, y: torch.Tensor) -> StepOutput:
        for p in self.model.parameters():
            p.grad = None
        with self._autocast(x_aug):
            logits = model_logits(self.model(x_aug))
        loss = self.loss_fn(logits, y)
        scale = self._scaler.scale if self._scaler is not None else 1.0
        (loss * scale).backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        average_over_ranks(*(p.grad for p in params))
        value = float(loss.detach())
        if self._scaler is not None and self._scaler.unscale_([p.grad for p in params]):
            for p in self.model.parameters():
                p.grad = None
            return StepOutput(value, value, {}, skipped=True)
        norm = float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in params))) if params else 0.0
        return StepOutput(value, value, {"norms": [norm, norm]})

    def state_dict(self) -> Dict[str, Any]:
        return {"engine": None, "scaler": None if self._scaler is None else self._scaler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self._scaler is not None and state.get("scaler") is not None:
            self._scaler.load_state_dict(state["scaler"])


class DualPathStep(GradientStep):
    """``train.mode: dual`` / ``dpda``: both paths' gradients, aligned (:class:`~dpda.train.engine.DualPathEngine`).

    Args:
        engine: the engine over the same model (its mode, aligner, autocast and loss scaler).
        grad_clip: see :class:`GradientStep`.
    """

    def __init__(self, engine: DualPathEngine, grad_clip: Optional[float] = None) -> None:
        super().__init__(engine.model, grad_clip)
        self.engine = engine

    @property
    def loss_scaler(self) -> Optional[LossScaler]:
        return self.engine.loss_scaler

    def gradients(self, x: torch.Tensor, x_aug: torch.Tensor, y: torch.Tensor) -> StepOutput:
        return self.engine.compute_gradients(x, x_aug, y)

    def state_dict(self) -> Dict[str, Any]:
        return {"engine": self.engine.state_dict(), "scaler": None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("engine") is not None:
            self.engine.load_state_dict(state["engine"])

    def close(self) -> None:
        self.engine.close()


def build_step(cfg: RunConfig, model: nn.Module, loss_fn: LossFn) -> GradientStep:
    """The gradient step of ``cfg.train`` (mode, engine mode, one pass, aligner, amp, grad_clip) over ``model``.

    Across ranks, the model's weights are broadcast from rank 0 here.
    """
    from dpda.align import build_aligner

    t = cfg.train
    amp_dtype = AMP_DTYPES[t.amp]
    if t.mode == "single":
        return SinglePathStep(model, loss_fn, amp_dtype, grad_clip=t.grad_clip)
    aligner = build_aligner("none") if t.mode == "dual" else build_aligner(t.aligner.name, **t.aligner.options)
    engine = DualPathEngine(model, aligner, loss_fn, mode=t.engine_mode, amp_dtype=amp_dtype,
                            one_pass=ONE_PASS[t.one_pass], joint_one_pass=t.joint_one_pass)
    return DualPathStep(engine, grad_clip=t.grad_clip)


__all__ = ["AMP_DTYPES", "DualPathStep", "GradientStep", "SinglePathStep", "build_step"]
