"""The dual-path (DPDA) gradient engine.

Each batch ``x`` (B, T) has an augmented copy ``x_aug`` (B, T) with the same
labels. The engine computes the loss of each path and its gradient over the
trainable parameters, aligns the two gradients with an aligner from
:mod:`dpda.align`, and leaves the update in ``param.grad`` for the optimizer.

Modes (both exact for what they define):

* ``joint`` (default, the paper's): one forward of the concatenated
  ``[x; x_aug]`` batch (2B), so normalisation layers see both paths together;
  two backward passes through that graph (the first keeps it).
* ``split``: each path runs forward and backward on its own B utterances, so
  each path's BatchNorm uses its own batch statistics (and running statistics
  are updated once per path); the first graph is freed before the second
  forward, so peak activation memory is about half of ``joint``'s. The
  gradients differ from ``joint``'s whenever the model has BatchNorm.

Gradient bookkeeping: one float32 buffer ``(2, P)`` (P = trainable elements).
Each path's gradient comes from ``torch.autograd.grad`` (no accumulation into
``param.grad``, no hooks) and is written into its row with ONE ``torch.cat``;
the aligner then writes the update into row 0 and every ``param.grad`` is
set to a view of its slice (no per-parameter copies: the operators the step
dispatches are those of the forward/backward passes plus a handful, see
``bench/dpda_step.py --count-ops``). Memory: the buffer is one row (P floats)
more than plain training holds in ``param.grad``, plus one path's gradient
tensors (P floats) alive between its backward pass and the ``cat``.
Parameters that receive no gradient in either path (frozen by
``requires_grad=False`` or unused) get ``grad = None``, never zeros, so the
optimizer leaves them alone (weight decay included). A parameter used by one
path only is merged as the aligner defines for non-shared entries.

One pass (``one_pass``): the two path gradients can also come from ONE
batched forward/backward (``torch.func.vmap`` over a path axis of size 2, each
path with its own view of the parameters, so one backward pass yields both
path gradients): in split mode each path has its own BatchNorm statistics; in
joint mode (``joint_one_pass="copies"``) each path is a copy of the joint
batch, scored by its own loss (twice the activation memory), or
(``"batched_backward"``) one joint forward and one backward batched over the
two loss cotangents. See :mod:`dpda.train.one_pass` for what it supports and
when it falls back.

Mixed precision: ``amp_dtype=torch.bfloat16`` or ``torch.float16`` runs the
forward under autocast; float16 uses a :class:`~dpda.train.amp.LossScaler`:
both path gradients are unscaled before alignment and a step whose gradients
are not finite is skipped (no parameter or aligner state changes).

Devices: the buffer lives on the device of the model's parameters (made anew
if the model moves), the losses and class weights on the logits' device; only
the aligner's (k, k) coefficient algebra and the per-parameter "received a
gradient" flags are on the CPU, on purpose (see :mod:`dpda.align.base`).

Distributed: when ``torch.distributed`` is initialised (torchrun), both rows
of the buffer are all-reduced (averaged over ranks) in one collective before
alignment, so the update equals the single-process update on the global
batch; parameters are broadcast from rank 0 at construction. Do not wrap the
model in ``DistributedDataParallel`` (the engine does its reduction); use
``SyncBatchNorm`` if the model has BatchNorm and ranks should share statistics.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from dpda.align import Aligner, build_aligner
from dpda.train.amp import LossScaler
from dpda.train.grad_buffer import rng_state, set_rng_state, write_flat
from dpda.train.one_pass import OnePass, unsupported_reason
from dpda.train.ranks import average_over_ranks, broadcast_from_rank0
from dpda.train.step_stats import ConflictTracker, StepOutput  # noqa: F401 - ConflictTracker: re-exported

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def weighted_cross_entropy(bonafide_weight: float = 0.9, spoof_weight: float = 0.1) -> LossFn:
    """Cross-entropy with class weights (index 0 = spoof, 1 = bona fide); the field's default 0.1 / 0.9."""
    per_device: Dict[torch.device, torch.Tensor] = {}

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = per_device.get(logits.device)
        if weight is None:  # made once per device, on that device
            weight = torch.tensor([spoof_weight, bonafide_weight], dtype=torch.float32, device=logits.device)
            per_device[logits.device] = weight
        return F.cross_entropy(logits.float(), target, weight=weight)

    return loss


def model_logits(output: Any) -> torch.Tensor:
    """Logits of a model output (a tensor, or the first element of a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


class DualPathEngine:
    """Computes, aligns and installs the dual-path gradient of a batch.

    Args:
        model: maps (N, T) waveforms to logits (N, 2) (or a tuple whose first item is).
        aligner: an :class:`~dpda.align.Aligner` or its name (``"pcgrad"``...).
        loss_fn: ``loss_fn(logits, target) -> scalar``; default weighted CE 0.1/0.9.
        mode: ``"joint"`` or ``"split"`` (see the module docstring).
        amp_dtype: ``None``, ``torch.bfloat16`` or ``torch.float16`` (autocast).
        loss_scaler: float16 only; created automatically when needed.
        module_stats: also report the cosine per top-level module (``stats["module_cos"]``).
        one_pass: both path gradients from one batched pass (:mod:`dpda.train.one_pass`).
            ``None`` (default) = on CUDA, where a step is launch-bound, off on the
            CPU, where the unbatched passes are cheaper; ``True``/``False`` force it.
            Falls back, with a warning, for a model it cannot batch
            (``one_pass_fallback`` says why).
        joint_one_pass: joint mode's one pass: ``"copies"`` (default; one vmapped
            forward/backward over two copies of the joint batch: the fewest operators,
            twice the activations; falls back to the next form if it fails, e.g. out of
            memory, on the first step) or ``"batched_backward"`` (one joint forward, one
            backward batched over the two loss cotangents,
            ``torch.autograd.grad(..., is_grads_batched=True)``; falls back to two
            backward passes).
    """

    def __init__(
        self,
        model: nn.Module,
        aligner: Union[Aligner, str] = "pcgrad",
        loss_fn: Optional[LossFn] = None,
        mode: str = "joint",
        amp_dtype: Optional[torch.dtype] = None,
        loss_scaler: Optional[LossScaler] = None,
        module_stats: bool = False,
        one_pass: Optional[bool] = None,
        joint_one_pass: str = "copies",
    ) -> None:
        if mode not in ("joint", "split"):
            raise ValueError(f"mode must be 'joint' or 'split', got {mode!r}")
        if joint_one_pass not in ("copies", "batched_backward"):
            raise ValueError(f"joint_one_pass must be 'copies' or 'batched_backward', got {joint_one_pass!r}")
        if amp_dtype not in (None, torch.float16, torch.bfloat16):
            raise ValueError(f"amp_dtype must be None, torch.float16 or torch.bfloat16, got {amp_dtype}")
        self.model = model
        self.aligner = build_aligner(aligner) if isinstance(aligner, str) else aligner
        self.loss_fn = loss_fn or weighted_cross_entropy()
        self.mode = mode
        self.amp_dtype = amp_dtype
        self.loss_scaler = loss_scaler if loss_scaler is not None else (LossScaler() if amp_dtype == torch.float16 else None)
        self.module_stats = module_stats
        self.params: List[nn.Parameter] = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.names: List[str] = [n for n, p in model.named_parameters() if p.requires_grad]
        self.offsets: List[Tuple[int, int]] = []
        start = 0
        for p in self.params:
            self.offsets.append((start, start + p.numel()))
            start += p.numel()
        self.numel = start
        self.segments = self._module_segments()
        self._buffer: Optional[torch.Tensor] = None
        self._views: List[torch.Tensor] = []
        #: which parameters received a gradient in each path (host-side Python bools)
        self._received: List[List[bool]] = [[False] * len(self.params) for _ in range(2)]
        self.world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.one_pass = one_pass
        self.joint_one_pass = joint_one_pass
        #: why a batched form asked for or tried is not used (None: not applicable / in use)
        self.one_pass_fallback: Optional[str] = None
        self._one_pass: Optional[OnePass] = None
        self._worked = {"one_pass": False, "batched_backward": False}  # which batched forms have run a step
        self._zero_parts: Dict[Tuple[int, int], torch.Tensor] = {}  # write_flat's zeros of unused parameters
        self._joint_batched = mode == "joint" and one_pass is not False
        if one_pass is not False and (mode == "split" or joint_one_pass == "copies"):
            reason = unsupported_reason(model)
            if reason is None:
                self._one_pass = OnePass(model, self.params, joint=mode == "joint")
            else:
                self._fall_back("one_pass", reason, warn=bool(one_pass))
        broadcast_from_rank0(model)

    # ------------------------------------------------------------------ setup
    def _module_segments(self) -> List[Tuple[str, int, int]]:
        """(top-level module name, start, stop) ranges of the flat vector, in parameter order."""
        segs: List[Tuple[str, int, int]] = []
        for name, (a, b) in zip(self.names, self.offsets):
            top = name.split(".", 1)[0]
            if segs and segs[-1][0] == top and segs[-1][2] == a:
                segs[-1] = (top, segs[-1][1], b)
            else:
                segs.append((top, a, b))
        return segs

    def _ensure_buffer(self) -> torch.Tensor:
        device = self.params[0].device
        if self._buffer is None or self._buffer.device != device:
            self._buffer = torch.zeros(2, self.numel, dtype=torch.float32, device=device)
            self._views = [self._buffer[0, a:b].view_as(p) for p, (a, b) in zip(self.params, self.offsets)]
        return self._buffer

    def _fall_back(self, form: str, reason: str, warn: bool = True) -> None:
        """Stop using the batched ``form`` ("one_pass" or "batched_backward") for good; joint mode's copies fall
        back to the batched backward (if enabled), anything else to the unbatched passes."""
        if form == "one_pass":
            self._one_pass = None
        else:
            self._joint_batched = False
        self.one_pass_fallback = reason
        if warn:
            what = {"one_pass": "one-pass gradients", "batched_backward": "the batched backward"}[form]
            if self.mode == "split":
                then = "two passes"
            elif form == "one_pass" and self._joint_batched:
                then = "one backward batched over the two losses"
            else:
                then = "two backward passes"
            warnings.warn(f"{self.mode} mode: {what} not used ({reason}); running {then}", stacklevel=3)

    def _first_try_failed(self, form: str, error: Exception) -> None:
        """The batched ``form`` raised ``error``: after it has worked once that is a real error (re-raised); on
        the first try it means the model cannot be batched (or, e.g., does not fit in memory so), and the engine
        falls back for good."""
        if self._worked[form]:
            raise error
        self._fall_back(form, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")

    def _use_one_pass(self, device: torch.device) -> bool:
        if self._one_pass is None and not self._joint_batched:
            return False
        return self.one_pass if self.one_pass is not None else device.type == "cuda"

    def close(self) -> None:
        """Release the gradient buffer (the engine installs no hooks; kept for callers that close it)."""
        self._buffer = None
        self._views = []

    # ------------------------------------------------------------------ step
    def _autocast(self, x: torch.Tensor):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=self.amp_dtype)

    def _backward_into(self, loss: torch.Tensor, row: int, retain_graph: bool) -> None:
        """Gradient of ``loss`` (times the loss scale) over the parameters, into row ``row`` (one ``cat``)."""
        buf = self._buffer
        assert buf is not None
        scale = self.loss_scaler.scale if self.loss_scaler is not None else 1.0
        grads = torch.autograd.grad(loss * scale if scale != 1.0 else loss, self.params,
                                    retain_graph=retain_graph, allow_unused=True)
        self._received[row] = [g is not None for g in grads]
        write_flat(buf[row], grads, self.params, self._zero_parts)

    def compute_gradients(self, x: torch.Tensor, x_aug: torch.Tensor, target: torch.Tensor) -> StepOutput:
        """Both path gradients, aligned, into ``param.grad``; does not step the optimizer.

        Args:
            x: (B, T) original waveforms; x_aug: (B, T) augmented waveforms;
            target: (B,) class indices (1 = bona fide).
        """
        if x.shape[0] != x_aug.shape[0] or x.shape[0] != target.shape[0]:
            raise ValueError(f"x {tuple(x.shape)}, x_aug {tuple(x_aug.shape)} and target {tuple(target.shape)} need the same batch size")
        buf = self._ensure_buffer()
        b = x.shape[0]
        if self._use_one_pass(x.device) and self._one_pass is not None and (
                one_pass_losses := self._one_pass_rows(x, x_aug, target)):
            loss_orig, loss_aug = one_pass_losses
        elif self.mode == "joint":
            with self._autocast(x):
                logits = model_logits(self.model(torch.cat([x, x_aug], dim=0)))
            loss_orig = self.loss_fn(logits[:b], target)
            loss_aug = self.loss_fn(logits[b:], target)
            if not (self._joint_batched and self._use_one_pass(x.device)
                    and self._joint_batched_backward(loss_orig, loss_aug)):
                self._backward_into(loss_orig, 0, retain_graph=True)
                self._backward_into(loss_aug, 1, retain_graph=False)
        else:
            with self._autocast(x):
                logits = model_logits(self.model(x))
            loss_orig = self.loss_fn(logits, target)
            self._backward_into(loss_orig, 0, retain_graph=False)
            del logits
            with self._autocast(x):
                logits = model_logits(self.model(x_aug))
            loss_aug = self.loss_fn(logits, target)
            self._backward_into(loss_aug, 1, retain_graph=False)
        losses = torch.stack([loss_orig.detach().float(), loss_aug.detach().float()])
        average_over_ranks(buf, losses)
        return self._align(buf, float(losses[0]), float(losses[1]))

    def _joint_batched_backward(self, loss_orig: torch.Tensor, loss_aug: torch.Tensor) -> bool:
        """Joint mode: both rows of the buffer from ONE backward pass batched over the two loss cotangents
        (functorch batches each backward operator over them; where it has no batching rule it loops, which
        its warning announces: silenced here). False if it failed (only on the first try, which keeps the
        graph so that the two backward passes can run)."""
        buf = self._buffer
        assert buf is not None
        scale = self.loss_scaler.scale if self.loss_scaler is not None else 1.0
        losses = torch.stack([loss_orig, loss_aug])
        cotangents = torch.eye(2, dtype=losses.dtype, device=losses.device)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*not yet implemented the batching rule.*")
                grads = torch.autograd.grad(losses * scale if scale != 1.0 else losses, self.params,
                                            grad_outputs=cotangents, is_grads_batched=True, allow_unused=True,
                                            retain_graph=not self._worked["batched_backward"])
        except Exception as e:  # noqa: BLE001 - any failure of the first try means "cannot batch this model"
            self._first_try_failed("batched_backward", e)
            return False
        self._worked["batched_backward"] = True
        received = [g is not None for g in grads]
        self._received = [received, list(received)]
        write_flat(buf, grads, self.params, self._zero_parts)
        return True

    def _one_pass_rows(
        self, x: torch.Tensor, x_aug: torch.Tensor, target: torch.Tensor
    ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Both rows of the buffer from one batched forward/backward; returns the two path losses, or None if
        the model cannot be batched (only ever on the first try: the random-number state and the model's buffers
        (BatchNorm running statistics the failed forward may have updated) are restored, and the engine falls
        back, so the run is the one that never tried)."""
        assert self._one_pass is not None and self._buffer is not None
        scale = self.loss_scaler.scale if self.loss_scaler is not None else 1.0
        first = not self._worked["one_pass"]
        if first:
            rng = rng_state(x.device)
            buffers = list(self.model.buffers())
            saved = [b.clone() for b in buffers]
        try:
            loss_orig, loss_aug, rows = self._one_pass(x, x_aug, target, self.loss_fn, lambda: self._autocast(x), scale)
        except Exception as e:  # noqa: BLE001 - any failure of the first try means "cannot batch this model"
            self._first_try_failed("one_pass", e)
            set_rng_state(x.device, rng)
            with torch.no_grad():
                for b, v in zip(buffers, saved):
                    b.copy_(v)
            return None
        self._worked["one_pass"] = True
        self._received = [[g is not None for g in row] for row in rows]
        for k in range(2):
            write_flat(self._buffer[k], rows[k], self.params, self._zero_parts)
        return loss_orig, loss_aug

    def _align(self, buf: torch.Tensor, loss_orig: float, loss_aug: float) -> StepOutput:
        if self.loss_scaler is not None and self.loss_scaler.unscale_([buf]):  # not finite: skip the step
            for p in self.params:
                p.grad = None
            return StepOutput(loss_orig, loss_aug, {"loss_scale": self.loss_scaler.scale}, skipped=True)
        # which parameters got a gradient in each path: host-side bookkeeping in Python bools
        received = self._received
        if self.world_size > 1:
            flags = torch.tensor(received, dtype=torch.uint8, device=buf.device)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            received = [[bool(v) for v in row] for row in flags.cpu().tolist()]
        any_grad = [a or b for a, b in zip(received[0], received[1])]
        has_grad = None
        if received[0] != received[1]:
            has_grad = torch.ones(2, self.numel, dtype=torch.bool, device=buf.device)
            for i, (a, b) in enumerate(self.offsets):
                for r in range(2):
                    if not received[r][i]:
                        has_grad[r, a:b] = False
        module_cos = self._module_cosines(buf) if self.module_stats else None
        segments = [(a, b) for _, a, b in self.segments]
        self.aligner(buf, has_grad=has_grad, segments=segments, inplace=True)
        stats = dict(self.aligner.last_stats)
        for p, view, used in zip(self.params, self._views, any_grad):
            p.grad = view if used else None
        if module_cos is not None:
            stats["module_cos"] = module_cos
        if self.loss_scaler is not None:
            stats["loss_scale"] = self.loss_scaler.scale
        return StepOutput(loss_orig, loss_aug, stats)

    def _module_cosines(self, buf: torch.Tensor) -> Dict[str, float]:
        out = {}
        for name, a, b in self.segments:
            g0, g1 = buf[0, a:b], buf[1, a:b]
            denom = float(g0.norm()) * float(g1.norm())
            out[name] = float(g0 @ g1) / denom if denom > 0 else 0.0
        return out

    def step(self, x: torch.Tensor, x_aug: torch.Tensor, target: torch.Tensor, optimizer: torch.optim.Optimizer) -> StepOutput:
        """:meth:`compute_gradients`, then ``optimizer.step()`` unless the step was skipped."""
        out = self.compute_gradients(x, x_aug, target)
        if not out.skipped:
            optimizer.step()
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        """Aligner and loss-scaler state (for checkpoints)."""
        return {
            "aligner": self.aligner.state_dict(),
            "loss_scaler": None if self.loss_scaler is None else self.loss_scaler.state_dict(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.aligner.load_state_dict(state.get("aligner") or {})
        if self.loss_scaler is not None and state.get("loss_scaler") is not None:
            self.loss_scaler.load_state_dict(state["loss_scaler"])
