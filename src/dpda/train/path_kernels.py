"""Per-layer kernels of the one pass: each layer dispatched once for both paths (split mode) or both copies of
the joint batch (joint mode, ``copies=True``; see :mod:`dpda.train.one_pass`).

Inside :class:`~dpda.train.one_pass.OnePass`'s ``vmap`` over the two
paths, functorch batches a layer whose weight is a ``(2, *shape)`` expanded view
with generic rules: a linear layer becomes a copy of its input plus a ``bmm``,
a BatchNorm a dozen operators (moving the path axis into the channels and
back). On a launch-bound GPU each of those operators costs about a kernel
launch. This module gives the common layers their own rule instead:

* the layer runs ONCE on the physical ``(2B, ...)`` batch with the shared weight
  (both views hold the same values), and
* its backward returns a separate gradient for each path's copy of the weight
  (two leaf aliases ``w0``, ``w1`` of the parameter), which is what the split
  mode needs: path ``k``'s gradient from path ``k``'s half of the batch.

Operators per layer against a plain forward/backward of the 2B batch:

================ =========================== =================================
layer            plain (fwd + bwd)           here
================ =========================== =================================
linear           addmm + 2 mm + sum          same (weight gradient: one bmm)
conv1d / conv2d  conv + conv_backward        conv + 2 conv_backward (input and
                                             total weight gradient, then half
                                             0's weight gradient)
layer/group norm norm + norm_backward        norm + 2 norm_backward (same)
batch norm       bn + bn_backward            2 bn (each half's statistics,
                                             running statistics updated half 0
                                             then half 1, as two passes) +
                                             2 bn_backward + stack
attention        sdpa + sdpa_backward        same (functorch would loop)
pooling          pool + pool_backward        same (one call on the 2B batch)
LSTM / GRU       rnn + rnn_backward          2 rnn + 2 rnn_backward + stack
                                             (one per half: no batching rule)
================ =========================== =================================

Path 1's gradient of a convolution or norm is ``total - half 0``: those
differences are formed after the backward pass, for all such parameters at
once (:func:`path_gradients`, one ``_foreach_sub``). On the CPU an LSTM / GRU
is itself many operators per time step, so the per-half calls cost more there
than on CUDA, where each is one cuDNN call.

Layers are recognised by the function they call (``F.linear``, ``F.conv1d``,
``F.conv2d``, ``F.layer_norm``, ``F.group_norm``, ``F.batch_norm``) with a
trainable parameter of the model as weight; anything else (a parameter used
in a matmul, a weight computed from parameters, string padding)
keeps functorch's generic rule, so the result is the same either way.

Autocast: each kernel casts its inputs as autocast would cast the function
it replaces on that device (:func:`autocast_policy`: found by running the
function once on a one-element tensor, since the lists differ between CUDA
and the CPU) and saves the cast tensors for its backward.

Units and shapes: ``x`` is the physical batch ``(2, B, ...)`` (path, utterance,
layer dims); every gradient has its parameter's shape.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch._C._functorch import is_batchedtensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from dpda.train.grad_buffer import rng_state, set_rng_state
from dpda.train.path_layers import (
    Aliases,
    _BatchNormTrain,
    _Conv,
    _Linear,
    _PerSampleNorm,
    autocast_policy,
    compute_dtype,
    total_form,
)

# -- vmap entry points: receive the logical (per-path) call, run the physical kernel once --------------------------


class _VmapOnly(torch.autograd.Function):
    """Base of the vmap entries: only their ``vmap`` rule runs (it calls ordinary operators or a physical kernel
    on the unwrapped batch, which autograd records); forward and backward outside vmap are errors."""

    @staticmethod
    def forward(*args):
        raise RuntimeError("dpda.train.path_kernels: only callable under vmap")

    @staticmethod
    def setup_context(ctx, inputs, output):
        return None

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("dpda.train.path_kernels: autograd records the operators of the vmap rule instead")


def _vmapped(kernel: type) -> type:
    """An autograd.Function usable only under ``vmap`` whose rule calls ``kernel`` on the physical batch (the
    batched input first, every other argument unbatched)."""

    class Entry(_VmapOnly):
        @staticmethod
        def vmap(info, in_dims, x, *rest):
            if any(d is not None for d in tree_leaves(in_dims[1:])):
                raise RuntimeError("dpda.train.path_kernels: only the layer input may be batched")
            return kernel.apply(x.movedim(in_dims[0], 0), *rest), 0

    Entry.__name__ = f"Vmapped{kernel.__name__}"
    return Entry


def _same_draws(calls: Sequence[Callable[[], Any]], device: torch.device) -> List[Any]:
    """Runs ``calls`` from the same random-number state (the halves are copies of one batch and must draw the
    same dropout masks, as the single forward they stand for does); the state afterwards is the first's."""
    start = rng_state(device)
    outs = [calls[0]()]
    after = rng_state(device)
    for call in calls[1:]:
        set_rng_state(device, start)
        outs.append(call())
    set_rng_state(device, after)
    return outs


def _attention_per_copy(same_draws: bool, dropout_p: float) -> bool:
    """Whether attention runs once per half: on copies with dropout (each half must draw the joint forward's
    mask); otherwise one call on the 2B batch. (``bench/dpda_ops.py --fused-attention`` replaces it to count
    the per-copy calls with dropout 0.)"""
    return same_draws and dropout_p > 0


class _Attention:
    """Scaled dot-product attention has no parameters and treats utterances independently: one call on the
    ``(2B, ...)`` batch (functorch has no batching rule for some of its kernels and would loop over the paths).
    With dropout on copies (``same_draws``): one call per half, both from the same random-number state."""

    @staticmethod
    def apply(q, k, v, attn_mask, dropout_p, is_causal, scale, same_draws=False):
        def attend(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                                  is_causal=is_causal, scale=scale)

        if _attention_per_copy(same_draws, dropout_p):  # unbind: one stack backward (indexing: a copy per half)
            halves = list(zip(q.unbind(0), k.unbind(0), v.unbind(0)))
            return torch.stack(_same_draws([lambda h=h: attend(*halves[h]) for h in range(2)], q.device))
        return attend(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)).unflatten(0, q.shape[:2])


class _VAttention(_VmapOnly):
    """Entry for attention: query, key and value are all batched (the generic entry allows one)."""

    @staticmethod
    def vmap(info, in_dims, q, k, v, *rest):
        if any(d is None for d in in_dims[:3]) or any(d is not None for d in tree_leaves(in_dims[3:])):
            raise RuntimeError("dpda.train.path_kernels: attention needs batched q, k, v and nothing else batched")
        q, k, v = (t.movedim(d, 0) for t, d in zip((q, k, v), in_dims[:3]))
        return _Attention.apply(q, k, v, *rest), 0


class _RecurrentPerHalf:
    """LSTM / GRU (``torch._VF.lstm`` / ``gru``, what ``nn.LSTM`` / ``nn.GRU`` call): functorch has no batching
    rule for them, so each half runs its own call with its own leaf weights (two calls instead of the whole
    model's two passes); the outputs are stacked back into the path axis. ``same_draws``: both halves from the
    same random-number state (inter-layer dropout of copies)."""

    @staticmethod
    def apply(x, fn, hx, params0, params1, same_draws, *flags):
        xs = x.unbind(0)  # one stack in the backward pass (indexing: a copy per half)
        calls = [lambda h=h, params=params: fn(xs[h], hx, params, *flags) for h, params in enumerate((params0, params1))]
        outs = _same_draws(calls, x.device) if same_draws else [call() for call in calls]
        return torch.utils._pytree.tree_map(lambda a, b: torch.stack([a, b]), outs[0], outs[1])


class _VRecurrent(_VmapOnly):
    @staticmethod
    def vmap(info, in_dims, x, fn, hx, params0, params1, same_draws, *flags):
        if any(d is not None for d in tree_leaves((in_dims[2:]))):
            raise RuntimeError("dpda.train.path_kernels: only the recurrent layer's input may be batched")
        out = _RecurrentPerHalf.apply(x.movedim(in_dims[0], 0), fn, hx, params0, params1, same_draws, *flags)
        return out, torch.utils._pytree.tree_map(lambda _: 0, out)


class _VPerSample(_VmapOnly):
    """Entry for a parameter-free function of one batched input that treats utterances independently (pooling):
    one call on the ``(2B, ...)`` batch. functorch batches some of these through a fallback that can be wrong for
    strided inputs (adaptive average pooling of a transposed bfloat16 tensor on the CPU: ``as_strided_``)."""

    @staticmethod
    def vmap(info, in_dims, fn, x, *rest):
        if in_dims[1] is None or any(d is not None for d in tree_leaves(in_dims[2:])):
            raise RuntimeError("dpda.train.path_kernels: only the input of a per-sample function may be batched")
        x = x.movedim(in_dims[1], 0)
        out = fn(x.flatten(0, 1), *rest)
        out = torch.utils._pytree.tree_map(lambda t: t.unflatten(0, x.shape[:2]) if isinstance(t, torch.Tensor) else t,
                                           out)
        return out, torch.utils._pytree.tree_map(lambda t: 0 if isinstance(t, torch.Tensor) else None, out)


#: parameter-free per-sample functions run once on the 2B batch, with the input dims they take batched
PER_SAMPLE: Dict[Callable, int] = {
    F.avg_pool1d: 3, F.max_pool1d: 3, F.adaptive_avg_pool1d: 3, F.adaptive_max_pool1d: 3,
    F.avg_pool2d: 4, F.max_pool2d: 4, F.adaptive_avg_pool2d: 4, F.adaptive_max_pool2d: 4,
}


_VLinear = _vmapped(_Linear)
_VConv = _vmapped(_Conv)
_VPerSampleNorm = _vmapped(_PerSampleNorm)
_VBatchNormTrain = _vmapped(_BatchNormTrain)


class PathKernels(TorchFunctionMode):
    """Routes the layers of a vmapped split-mode forward to the kernels above.

    Args:
        aliases: ``id(batched weight) -> leaf_aliases(...)[i]``: for every trainable parameter, the batched
            tensor the model sees inside the vmap and the leaf aliases whose gradients the kernels return.
        copies: the two halves are copies of one batch (joint mode, :class:`~dpda.train.one_pass.OnePass`):
            BatchNorm updates its running statistics once (half 0's), and the random draws of the layers that
            run per half (attention with dropout, recurrent layers) are the same in both halves.
    """

    def __init__(self, aliases: Dict[int, Aliases], copies: bool = False) -> None:
        super().__init__()
        self.aliases = aliases
        self.copies = copies
        self.routed: Dict[str, int] = {}
        self._handlers: Dict[Callable, Callable] = {
            F.linear: self._linear, F.conv1d: self._conv, F.conv2d: self._conv,
            F.layer_norm: self._layer_norm, F.group_norm: self._group_norm, F.batch_norm: self._batch_norm,
            F.scaled_dot_product_attention: self._attention,
            torch._VF.lstm: self._recurrent(torch._VF.lstm), torch._VF.gru: self._recurrent(torch._VF.gru),
        }

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dims = PER_SAMPLE.get(func)
        if dims is not None and args and is_batchedtensor(args[0]) and args[0].dim() == dims:
            self.routed[func.__name__] = self.routed.get(func.__name__, 0) + 1
            return _VPerSample.apply(functools.partial(func, **kwargs) if kwargs else func, *args)
        handler = self._handlers.get(func)
        if handler is not None:
            out = handler(*args, **kwargs)
            if out is not NotImplemented:
                self.routed[func.__name__] = self.routed.get(func.__name__, 0) + 1
                return out
        return func(*args, **kwargs)

    def _affine(self, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                form: str = "halves") -> Optional[List[Any]]:
        """``[w_, w_, b_, b_]``: a trainable parameter's leaf aliases, halves ``(path 0, path 1)`` or
        ``form="total"`` ``(path 0, both paths)``; an unbatched tensor (a frozen parameter, None) twice; None
        when one of them is computed from trainable parameters."""
        if weight is None or is_batchedtensor(weight) and id(weight) not in self.aliases:
            return None
        pick = (0, 1) if form == "halves" else (2, 3)
        out: List[Any] = []
        for t in (weight, bias):
            aliases = self.aliases.get(id(t)) if t is not None else None
            if aliases is None and t is not None and is_batchedtensor(t):
                return None
            out.extend((aliases[pick[0]], aliases[pick[1]]) if aliases is not None else (t, t))
        return out

    def _affine_by_form(self, input: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                        policy: Optional[Tuple[str, torch.dtype]]) -> Tuple[Optional[List[Any]], bool]:
        """A conv / norm kernel's aliases and whether it returns the total form (:func:`total_form` of the dtype
        it will compute in)."""
        total = total_form(compute_dtype(input.dtype, policy))
        return self._affine(weight, bias, "total" if total else "halves"), total

    def _linear(self, input, weight, bias=None):
        affine = self._affine(weight, bias)
        if affine is None or not is_batchedtensor(input):
            return NotImplemented
        return _VLinear.apply(input, *affine, autocast_policy("linear", input.device))

    def _conv(self, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        if isinstance(padding, str) or not is_batchedtensor(input) or input.dim() != weight.dim():
            return NotImplemented
        policy = autocast_policy("conv1d" if weight.dim() == 3 else "conv2d", input.device)
        affine, total = self._affine_by_form(input, weight, bias, policy)
        if affine is None:
            return NotImplemented
        return _VConv.apply(input, *affine, stride, padding, dilation, groups, policy, total)

    def _layer_norm(self, input, normalized_shape, weight=None, bias=None, eps=1e-5):
        if not is_batchedtensor(input):
            return NotImplemented
        policy = autocast_policy("layer_norm", input.device)
        affine, total = self._affine_by_form(input, weight, bias, policy)
        if affine is None:
            return NotImplemented
        return _VPerSampleNorm.apply(input, *affine, "layer", (list(normalized_shape), eps), policy, total)

    def _group_norm(self, input, num_groups, weight=None, bias=None, eps=1e-5):
        if not is_batchedtensor(input) or input.dim() < 2:
            return NotImplemented
        policy = autocast_policy("group_norm", input.device)
        affine, total = self._affine_by_form(input, weight, bias, policy)
        if affine is None:
            return NotImplemented
        return _VPerSampleNorm.apply(input, *affine, "group", (input.shape[1], num_groups, eps), policy, total)

    def _batch_norm(self, input, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.1, eps=1e-5):
        if not is_batchedtensor(input) or input.dim() < 2:
            return NotImplemented
        if any(t is not None and is_batchedtensor(t) for t in (running_mean, running_var)):
            return NotImplemented
        if not training and running_mean is not None:  # eval mode: fixed statistics, per-sample
            affine, total = self._affine_by_form(input, weight, bias, None)
            if affine is None:
                return NotImplemented
            return _VPerSampleNorm.apply(input, *affine, "batch_eval", (running_mean, running_var, eps), None, total)
        affine = [None, None, None, None] if weight is None and bias is None else self._affine(weight, bias)
        if affine is None:
            return NotImplemented
        return _VBatchNormTrain.apply(input, *affine, running_mean, running_var, momentum, eps, not self.copies)

    def _recurrent(self, fn: Callable) -> Callable:
        def route(input, hx, params, *flags):
            # the packed-sequence overloads take (data, batch_sizes, hx, params, ...): left to the generic rule
            if not isinstance(params, (list, tuple)) or not is_batchedtensor(input):
                return NotImplemented
            if any(is_batchedtensor(t) for t in tree_leaves(hx)):
                return NotImplemented
            halves: List[List[torch.Tensor]] = [[], []]
            for p in params:
                aliases = self.aliases.get(id(p))
                if aliases is None and is_batchedtensor(p):
                    return NotImplemented
                for h in range(2):
                    halves[h].append(aliases[h] if aliases is not None else p)
            return _VRecurrent.apply(input, fn, hx, halves[0], halves[1], self.copies, *flags)
        return route

    def _attention(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                   enable_gqa=False):
        if not all(is_batchedtensor(t) for t in (query, key, value)) or query.dim() < 3:
            return NotImplemented
        if attn_mask is not None and (is_batchedtensor(attn_mask) or attn_mask.dim() >= query.dim()):
            return NotImplemented  # a mask with an utterance axis would not broadcast over 2B
        if enable_gqa:
            return NotImplemented
        return _VAttention.apply(query, key, value, attn_mask, dropout_p, is_causal, scale, self.copies)


def leaf_aliases(params: Sequence[torch.Tensor]) -> List[Aliases]:
    """Four leaf aliases per parameter (no copy), the gradients the kernels return: ``(path 0, path 1)`` from
    kernels that compute each half's gradient, ``(path 0, both paths)`` from those that get the total in the
    same call as the input gradient (see :func:`path_gradients`)."""
    return [tuple(p.detach().requires_grad_() for _ in range(4)) for p in params]  # type: ignore[misc]


def path_gradients(stacked: Sequence[Optional[torch.Tensor]], aliases: Sequence[Optional[torch.Tensor]]
                   ) -> List[List[Optional[torch.Tensor]]]:
    """Each path's gradient per parameter from the gradients of its ``(2, *shape)`` stacked view (generic
    rule; ``stacked[i]``) and of its four aliases (``aliases[4 i : 4 i + 4]``, None where unused).

    Path 0 = stacked row 0 + half-0 alias + total-form half 0; path 1 = stacked row 1 + half-1 alias + total
    - total-form half 0. The last difference, for every parameter that needs it, is ONE ``_foreach_sub``.
    """
    rows: List[List[Optional[torch.Tensor]]] = [[], []]
    totals: List[torch.Tensor] = []
    firsts: List[torch.Tensor] = []
    slots: List[int] = []
    for i, g in enumerate(stacked):
        g0, g1, ga, gt = aliases[4 * i: 4 * i + 4]
        row0 = [t for t in (g[0] if g is not None else None, g0, ga) if t is not None]
        row1 = [t for t in (g[1] if g is not None else None, g1) if t is not None]
        rows[0].append(row0[0] if len(row0) == 1 else (sum(row0[1:], row0[0]) if row0 else None))
        if gt is not None and not row1:  # the common case: the parameter's only layer gave the total form
            slots.append(i)
            totals.append(gt)
            firsts.append(ga if ga is not None else torch.zeros_like(gt))
            rows[1].append(None)
            continue
        if gt is not None:
            row1.append(gt - ga if ga is not None else gt)
        rows[1].append(row1[0] if len(row1) == 1 else (sum(row1[1:], row1[0]) if row1 else None))
    if totals:
        for i, d in zip(slots, torch._foreach_sub(totals, firsts)):
            rows[1][i] = d
    return rows
