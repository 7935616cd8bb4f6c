"""Dual-path gradients from ONE forward/backward pass (``torch.func.vmap`` over the paths).

Split mode (:class:`~dpda.train.engine.DualPathEngine`, ``mode="split"``)
defines each path's gradient as that of a separate forward/backward of its B
utterances: BatchNorm normalises each path with its own batch statistics and
updates its running statistics once per path (original path first). Done as
two passes, a step dispatches every operator of the model twice, which is
what a launch-bound GPU pays for.

Here the two paths run as one call: ``vmap`` over a leading path axis of
size 2, the input ``(2, B, T)`` and every trainable parameter given as a
``(2, *shape)`` expanded view of itself (no copy). Inside the vmap each path
is computed exactly as on its own (per-path BatchNorm statistics included),
while each operator is dispatched once over both paths. Because path ``k``
uses only view ``k`` of each parameter, ONE backward pass of ``loss_orig +
loss_aug`` gives the gradient of path ``k`` in row ``k`` of every ``(2,
*shape)`` gradient: both rows of the engine's buffer from a single backward
pass.

Layers (``kernels=True``, the default): functorch's generic batching of a
layer with per-path weights costs extra operators (a copy per linear layer,
a dozen per BatchNorm). :mod:`dpda.train.path_kernels` runs linear,
convolution, layer/group/batch norm and attention layers once on the physical
``(2B, ...)`` batch and takes each path's weight gradient from its half (two
leaf aliases of the parameter), and runs LSTM / GRU layers (no batching rule)
once per half. Whatever else uses a parameter keeps the generic rule.

Running statistics: with the kernels, BatchNorm updates the model's own
running statistics with half 0 then half 1, as two passes do, and
``num_batches_tracked`` grows by 2. Without them (or under autocast, where
the kernels step aside), BatchNorm modules run on per-path copies of their
running mean/variance; after the forward pass the model's buffers receive
what two sequential updates would give,
``r'' = r1 + (1 - m) (r0 - r)`` (``r0``, ``r1``: each path's update of ``r``,
``m`` the momentum; equal to ``(1 - m)((1 - m) r + m mu0) + m mu1``).

Joint mode (``joint=True``): the two halves are two COPIES of the joint batch
``[x; x_aug]`` (2B utterances each); half 0 is scored by the original path's
loss (its first B logits), half 1 by the augmented path's (its last B). Each
copy is the joint forward pass (BatchNorm statistics over all 2B utterances),
so one backward pass of ``loss_orig(copy 0) + loss_aug(copy 1)`` gives each
path's joint-mode gradient in its row, with the per-layer kernels: about the
operators of ONE plain step, where the two backward passes of the joint engine
(or one backward batched over the two loss cotangents, which functorch loops
over for convolutions, norms and activations) cost 1.4-1.6x. The price is
arithmetic and memory: every activation exists twice (the forward is computed
for 4B utterances), which a launch-bound GPU step does not notice and a
compute-bound one does. Dropout draws ONE mask for both copies
(``randomness="same"``; per-half attention and recurrent layers replay the
same random-number state), as the joint forward draws one, from the same
random numbers (but functorch lays a "same" mask out in logical order, so
where the dropout input is strided, e.g. transposed in AASIST, the mask
differs from the unbatched forward's and a run is not bit-identical to the
two-backward run); BatchNorm's running statistics are updated once, from
copy 0, and ``num_batches_tracked`` grows by 1.

Not supported (the engine falls back to two passes and says why once):
BatchNorm with ``momentum=None`` (cumulative average) or SyncBatchNorm;
models whose forward vmap cannot batch (Python control flow on tensor values,
``.item()``, an in-place write into a buffer other than BatchNorm's, ...).
The first step tries the batched pass; if it raises, the random-number state
is restored before the two-pass fallback, so the fallback run is the same as a
run that never tried.

Randomness: dropout draws different masks for the two paths (``randomness=
"different"``), as two passes do, but from a different stream, so a run with
dropout is not bit-identical to the two-pass run (the gradients of a model
without dropout are, within floating-point tolerance).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.func import functional_call, vmap

from dpda.train.path_kernels import PathKernels, leaf_aliases, path_gradients

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def unsupported_reason(model: nn.Module) -> Optional[str]:
    """Why the one-pass split cannot be used for ``model`` (None when it can be tried)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.SyncBatchNorm):
            return f"{name or 'model'} is a SyncBatchNorm (statistics shared across ranks)"
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats and module.momentum is None:
            return f"{name or 'model'}: BatchNorm with momentum=None (cumulative average) is not supported"
    return None


class OnePass:
    """Computes both path gradients of ``model`` with one vmapped forward/backward.

    Args:
        model: the engine's model (maps (N, T) to logits (N, 2) or a tuple whose first item is).
        params: its trainable parameters, in the engine's order.
        kernels: route the common layers to :mod:`dpda.train.path_kernels` (else functorch's generic rules).
        joint: joint-mode gradients (the paths are copies of the joint batch, see the module docstring);
            False: split mode.
    """

    def __init__(self, model: nn.Module, params: Sequence[nn.Parameter], kernels: bool = True,
                 joint: bool = False) -> None:
        self.model = model
        self.kernels = kernels
        self.joint = joint
        self.last_routed: Dict[str, int] = {}  # layers the kernels ran in the last call, per function
        ids = {id(p): i for i, p in enumerate(params)}
        self.trainable: List[Tuple[str, int]] = []  # (name, index into params)
        self.frozen: List[str] = []
        for name, p in model.named_parameters():
            if id(p) in ids:
                self.trainable.append((name, ids[id(p)]))
            else:
                self.frozen.append(name)
        self.params = list(params)

    def __call__(
        self,
        x: torch.Tensor,
        x_aug: torch.Tensor,
        target: torch.Tensor,
        loss_fn: LossFn,
        autocast: Callable[[], object],
        scale: float = 1.0,
    ) -> Tuple[torch.Tensor, torch.Tensor, List[List[Optional[torch.Tensor]]]]:
        """``(loss_orig, loss_aug, rows)``: ``rows[k][i]`` is path k's gradient of ``params[i]`` (times
        ``scale``), or None where the parameter got no gradient.

        Args: x, x_aug: (B, T) waveforms; target: (B,) class indices; ``autocast()`` gives the
        forward's autocast context; ``scale``: the fp16 loss scale.
        """
        model = self.model
        joint = self.joint
        stacked = [p.detach().unsqueeze(0).expand(2, *p.shape).requires_grad_() for p in self.params]
        trainable = {name: stacked[i] for name, i in self.trainable}
        named_params = dict(model.named_parameters())
        frozen = {name: named_params[name] for name in self.frozen}
        use_kernels = self.kernels
        aliases = leaf_aliases(self.params) if use_kernels else []
        if use_kernels:  # BatchNorm kernels update the model's own running statistics, half 0 then half 1
            bn_names, bn_tensors, bn_stacked, momenta = [], [], [], []
            counters = self._bn_counters()
            before = torch._foreach_add(counters, 0) if counters else []
        else:
            bn_names, bn_tensors, bn_stacked, momenta = self._stack_bn_buffers()
        updated = set(bn_names)
        other_buffers = {n: b for n, b in model.named_buffers() if n not in updated}
        per_path = dict(zip(bn_names, bn_stacked))
        self.last_routed = {}

        def one_path(weights: Dict[str, torch.Tensor], running: Dict[str, torch.Tensor], waveforms: torch.Tensor):
            if not use_kernels:
                out = functional_call(model, (weights, frozen, running, other_buffers), (waveforms,))
            else:
                mode = PathKernels({id(weights[name]): aliases[i] for name, i in self.trainable}, copies=joint)
                with mode:
                    out = functional_call(model, (weights, frozen, running, other_buffers), (waveforms,))
                self.last_routed = mode.routed
            return out[0] if isinstance(out, (tuple, list)) else out

        if joint:
            both = torch.cat([x, x_aug])
            waveforms = both.unsqueeze(0).expand(2, *both.shape)
        else:
            waveforms = torch.stack([x, x_aug])
        with autocast():
            logits = vmap(one_path, in_dims=(0, 0, 0), randomness="same" if joint else "different")(
                trainable, per_path, waveforms)
        b = x.shape[0]
        loss_orig = loss_fn(logits[0, :b] if joint else logits[0], target)
        loss_aug = loss_fn(logits[1, b:] if joint else logits[1], target)
        total = loss_orig + loss_aug
        inputs = stacked + [leaf for quad in aliases for leaf in quad]
        grads = torch.autograd.grad(total * scale if scale != 1.0 else total, inputs, allow_unused=True)
        if use_kernels:
            self._count_bn_passes(counters, before)
        else:
            self._write_back_bn(bn_names, bn_tensors, bn_stacked, momenta)
        return loss_orig, loss_aug, self._rows(grads)

    def _rows(self, grads: Sequence[Optional[torch.Tensor]]) -> List[List[Optional[torch.Tensor]]]:
        """Each path's gradient per parameter (row k of the stacked view's gradient with the generic rule;
        from the leaf aliases' gradients with the kernels)."""
        n = len(self.params)
        if len(grads) == n:
            return [[g[k] if g is not None else None for g in grads] for k in range(2)]
        return path_gradients(grads[:n], grads[n:])

    # -- BatchNorm running statistics ---------------------------------------------------------------

    def _stack_bn_buffers(self) -> Tuple[List[str], List[torch.Tensor], List[torch.Tensor], List[float]]:
        """Per-path copies ``(2, ...)`` of the running statistics that this forward pass updates
        (BatchNorm modules in training mode), with their names, the model's tensors and momenta."""
        names: List[str] = []
        tensors: List[torch.Tensor] = []
        momenta: List[float] = []
        for prefix, m in self._updating_batchnorms():
            for b in ("running_mean", "running_var", "num_batches_tracked"):
                t = getattr(m, b)
                if t is not None:
                    names.append(f"{prefix}.{b}" if prefix else b)
                    tensors.append(t)
                    momenta.append(float(m.momentum))  # None is refused by unsupported_reason
        stacked = [t.unsqueeze(0).expand(2, *t.shape).clone() for t in tensors]
        return names, tensors, stacked, momenta

    def _updating_batchnorms(self) -> List[Tuple[str, nn.Module]]:
        """``(name, module)`` of the BatchNorm modules whose running statistics a training forward updates."""
        return [(prefix, m) for prefix, m in self.model.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training]

    def _bn_counters(self) -> List[torch.Tensor]:
        return [m.num_batches_tracked for _, m in self._updating_batchnorms() if m.num_batches_tracked is not None]

    @torch.no_grad()
    def _count_bn_passes(self, counters: List[torch.Tensor], before: List[torch.Tensor]) -> None:
        """A BatchNorm module that ran counted one batch (its own ``+= 1``); two passes count two (joint: one)."""
        if counters and not self.joint:
            torch._foreach_add_(counters, torch._foreach_sub(counters, before))

    @torch.no_grad()
    def _write_back_bn(self, names: List[str], tensors: List[torch.Tensor], stacked: List[torch.Tensor],
                       momenta: List[float]) -> None:
        """Model buffers := two sequential updates (joint: copy 0's one update; see the module docstring)."""
        floats: List[Tuple[torch.Tensor, torch.Tensor, float]] = []
        counts: List[torch.Tensor] = []
        for name, t, s, m in zip(names, tensors, stacked, momenta):
            if name.endswith("num_batches_tracked"):
                counts.append(t)
            else:
                floats.append((t, s, 1.0 - m))
        if floats and self.joint:
            torch._foreach_copy_([t for t, _, _ in floats], [s[0] for _, s, _ in floats])
        elif floats:
            r = [t for t, _, _ in floats]
            delta = torch._foreach_sub([s[0] for _, s, _ in floats], r)  # r0 - r
            torch._foreach_mul_(delta, [k for _, _, k in floats])
            torch._foreach_add_(delta, [s[1] for _, s, _ in floats])  # r1 + (1 - m)(r0 - r)
            torch._foreach_copy_(r, delta)
        if counts:
            torch._foreach_add_(counts, 1 if self.joint else 2)
