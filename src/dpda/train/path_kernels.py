"""Per-layer kernels of the one-pass split: each layer dispatched once for both paths.

Inside :class:`~dpda.train.one_pass.OnePassSplit`'s ``vmap`` over the two
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

Aliases = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
aten = torch.ops.aten


_POLICIES: Dict[Tuple[str, str, torch.dtype], str] = {}


def _probe(op: str, x: torch.Tensor) -> torch.Tensor:
    one = torch.ones(1, dtype=torch.float32, device=x.device)
    if op == "linear":
        return F.linear(x.view(1, 1), one.view(1, 1))
    if op == "conv1d":
        return F.conv1d(x.view(1, 1, 1), one.view(1, 1, 1))
    if op == "conv2d":
        return F.conv2d(x.view(1, 1, 1, 1), one.view(1, 1, 1, 1))
    if op == "layer_norm":
        return F.layer_norm(x.view(1, 1), (1,), one, one)
    return F.group_norm(x.view(1, 1, 1).expand(1, 1, 2), 1, one, one)  # needs two values per group


def autocast_policy(op: str, device: torch.device) -> Optional[Tuple[str, torch.dtype]]:
    """What autocast does to ``op`` (linear, conv1d, conv2d, layer_norm, group_norm) on ``device`` now:
    None when autocast is off, else ``("lower", dtype)`` (inputs cast to the autocast dtype), ``("fp32",
    dtype)`` (inputs cast to float32) or ``("as_is", dtype)``. Found once per op, device type and dtype by
    running the op on a one- or two-element tensor (the lists differ between devices and torch versions)."""
    kind = device.type
    if not torch.is_autocast_enabled(kind):
        return None
    dtype = torch.get_autocast_dtype(kind)
    key = (op, kind, dtype)
    if key not in _POLICIES:
        with torch.no_grad():
            if _probe(op, torch.ones(1, dtype=torch.float32, device=device)).dtype == dtype:
                _POLICIES[key] = "lower"
            elif _probe(op, torch.ones(1, dtype=dtype, device=device)).dtype == torch.float32:
                _POLICIES[key] = "fp32"
            else:
                _POLICIES[key] = "as_is"
    return _POLICIES[key], dtype


def _cast(policy: Optional[Tuple[str, torch.dtype]], *tensors: Optional[torch.Tensor]) -> List[Optional[torch.Tensor]]:
    """``tensors`` as autocast would give them to the op (floating tensors only; None stays None)."""
    if policy is None or policy[0] == "as_is":
        return list(tensors)
    dtype = policy[1] if policy[0] == "lower" else torch.float32
    return [t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors]


def total_form(x: torch.Tensor) -> bool:
    """Whether a kernel computing in ``x``'s dtype returns weight gradients as (half 0, both halves): in float32
    or float64, where ``both - half 0`` keeps path 1's precision; in bfloat16 / float16 each half's own."""
    return x.dtype in (torch.float32, torch.float64)


def _no_autocast(device: torch.device):
    return torch.autocast(device.type, enabled=False)


def _tuple(v: Any, n: int) -> List[int]:
    return list(v) if isinstance(v, (tuple, list)) else [int(v)] * n


def _halves(t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    return t[0], t[1]


# -- physical kernels (ordinary autograd Functions on the (2, B, ...) batch) ---------------------------------------


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w0, w1, b0, b1, policy):
        rows = x.reshape(-1, x.shape[-1])  # (2 * M, in): a copy only if x is not contiguous, as F.linear makes
        rows, w, b = _cast(policy, rows, w0, b0)
        ctx.save_for_backward(rows, w)
        ctx.has_bias = b0 is not None
        ctx.lead = x.shape[:-1]
        with _no_autocast(x.device):
            return F.linear(rows, w, b).view(*ctx.lead, w.shape[0])

    @staticmethod
    def backward(ctx, g):
        rows, w = ctx.saved_tensors
        g3 = g.reshape(2, -1, g.shape[-1])  # (2, M, out); one copy at most, shared by the three products
        gx = g3.matmul(w).view(*ctx.lead, w.shape[1]) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(g3.transpose(1, 2), rows.view(2, -1, rows.shape[-1]))
        gb = g3.sum(1) if ctx.has_bias else (None, None)
        return gx, gw[0], gw[1], gb[0], gb[1], None


class _Conv(torch.autograd.Function):
    """Convolution on the 2B batch; weight gradients as (half 0, both halves): one backward call for the input
    and the total, one for half 0 (path 1's = total - half 0, formed after the backward pass for all layers);
    in low precision (:func:`total_form` false) as (half 0, half 1)."""

    @staticmethod
    def forward(ctx, x, wa, wt, ba, bt, stride, padding, dilation, groups, policy):
        n = wa.dim() - 2
        ctx.geometry = (_tuple(stride, n), _tuple(padding, n), _tuple(dilation, n), groups)
        ctx.bias_sizes = [wa.shape[0]] if ba is not None else None
        x, w, b = _cast(policy, x, wa, ba)
        ctx.total_form = total_form(x)
        ctx.save_for_backward(x, w)
        conv = F.conv1d if n == 1 else F.conv2d
        with _no_autocast(x.device):
            y = conv(x.flatten(0, 1), w, b, stride, padding, dilation, groups)
        return y.unflatten(0, x.shape[:2])

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.geometry
        n = len(stride)
        geo = (stride, padding, dilation, False, [0] * n, groups)
        has_bias = ctx.bias_sizes is not None
        if ctx.total_form:
            gx, gw_total, gb_total = aten.convolution_backward(g.flatten(0, 1), x.flatten(0, 1), w, ctx.bias_sizes,
                                                               *geo, [ctx.needs_input_grad[0], True, has_bias])
            _, gw_a, gb_a = aten.convolution_backward(g[0], x[0], w, ctx.bias_sizes, *geo, [False, True, has_bias])
            gw_b, gb_b = gw_total, gb_total
        else:  # low precision: each half's own weight gradient (a difference would lose path 1's bits)
            gx = aten.convolution_backward(g.flatten(0, 1), x.flatten(0, 1), w, None, *geo,
                                           [True, False, False])[0] if ctx.needs_input_grad[0] else None
            (_, gw_a, gb_a), (_, gw_b, gb_b) = (
                aten.convolution_backward(g[h], x[h], w, ctx.bias_sizes, *geo, [False, True, has_bias])
                for h in range(2))
        gx = gx.unflatten(0, x.shape[:2]) if gx is not None else None
        return gx, gw_a, gw_b, gb_a, gb_b, None, None, None, None, None


class _PerSampleNorm(torch.autograd.Function):
    """Layer norm / group norm / BatchNorm in eval mode: statistics per utterance (or fixed), so the forward
    runs on the whole batch; affine gradients as (half 0, both halves) or, in low precision, (half 0,
    half 1), like :class:`_Conv`."""

    @staticmethod
    def forward(ctx, x, w0, wt, b0, bt, kind, spec, policy):
        ctx.kind, ctx.spec = kind, spec
        x, w0, b0 = _cast(policy, x, w0, b0)
        x = x.contiguous()  # the native kernels assume it (aten.group_norm makes it so before its kernel)
        ctx.total_form = total_form(x)
        flat = x.flatten(0, 1)
        if kind == "layer":
            y, mean, rstd = aten.native_layer_norm(flat, spec[0], w0, b0, spec[1])
        elif kind == "group":
            c, groups, eps = spec
            n = flat.shape[0]
            y, mean, rstd = aten.native_group_norm(flat, w0, b0, n, c, flat.numel() // max(n * c, 1), groups, eps)
        else:  # "batch_eval": spec = (running_mean, running_var, eps)
            y, mean, rstd = aten.native_batch_norm(flat, w0, b0, spec[0], spec[1], False, 0.0, spec[2])
        ctx.save_for_backward(x, w0, b0, mean, rstd)
        return y.unflatten(0, x.shape[:2])

    @staticmethod
    def _backward(ctx, g, x, w, b, mean, rstd, mask):
        kind, spec = ctx.kind, ctx.spec
        if kind == "layer":
            return aten.native_layer_norm_backward(g, x, spec[0], mean, rstd, w, b, mask)
        if kind == "group":
            c, groups, _ = spec
            n = x.shape[0]
            return aten.native_group_norm_backward(g, x, mean, rstd, w, n, c, x.numel() // max(n * c, 1), groups, mask)
        return aten.native_batch_norm_backward(g, x, w, spec[0], spec[1], mean, rstd, False, spec[2], mask)

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous()  # as autograd's own formulas give it to these kernels
        x, w, b, mean, rstd = ctx.saved_tensors
        mask_wb = [False, w is not None, b is not None]
        half = x.shape[1]
        if ctx.kind == "layer" or ctx.kind == "group":  # mean / rstd: (2B..., 1) or (2B, groups)
            stats = [(mean[:half], rstd[:half]), (mean[half:], rstd[half:])]
        else:  # eval BatchNorm: the saved statistics are not used
            stats = [(mean, rstd), (mean, rstd)]
        if ctx.total_form:
            gx, gw_b, gb_b = _PerSampleNorm._backward(ctx, g.flatten(0, 1), x.flatten(0, 1), w, b, mean, rstd,
                                                      [ctx.needs_input_grad[0]] + mask_wb[1:])
            _, gw_a, gb_a = _PerSampleNorm._backward(ctx, g[0], x[0], w, b, *stats[0], mask_wb)
        else:  # low precision: each half's own affine gradient
            gx = _PerSampleNorm._backward(ctx, g.flatten(0, 1), x.flatten(0, 1), w, b, mean, rstd,
                                          [True, False, False])[0] if ctx.needs_input_grad[0] else None
            (_, gw_a, gb_a), (_, gw_b, gb_b) = (_PerSampleNorm._backward(ctx, g[h], x[h], w, b, *stats[h], mask_wb)
                                                for h in range(2))
        gx = gx.unflatten(0, x.shape[:2]) if gx is not None else None
        return gx, gw_a, gw_b, gb_a, gb_b, None, None, None


class _BatchNormTrain(torch.autograd.Function):
    """BatchNorm in training mode with each half's own batch statistics; running statistics (if any) are
    updated by half 0, then by half 1 (what two passes do)."""

    @staticmethod
    def forward(ctx, x, w0, w1, b0, b1, running_mean, running_var, momentum, eps):
        y = x.new_empty(x.shape)
        c = x.shape[2]
        save_mean = x.new_empty(2, c, dtype=torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype)
        save_invstd = torch.empty_like(save_mean)
        for h in range(2):
            aten.native_batch_norm.out(x[h], w0, b0, running_mean, running_var, True, momentum, eps,
                                       out=y[h], save_mean=save_mean[h], save_invstd=save_invstd[h])
        ctx.eps = eps
        ctx.save_for_backward(x, w0, save_mean, save_invstd)
        return y

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous()
        x, w, save_mean, save_invstd = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], w is not None, w is not None]
        per = [aten.native_batch_norm_backward(g[h], x[h], w, None, None, save_mean[h], save_invstd[h], True,
                                               ctx.eps, mask) for h in range(2)]
        gx = torch.stack([per[0][0], per[1][0]]) if mask[0] else None
        return gx, per[0][1], per[1][1], per[0][2], per[1][2], None, None, None, None


# -- vmap entry points: receive the logical (per-path) call, run the physical kernel once --------------------------


def _vmapped(kernel: type) -> type:
    """An autograd.Function usable only under ``vmap`` whose rule calls ``kernel`` on the physical batch (the
    batched input first, every other argument unbatched)."""

    class Entry(torch.autograd.Function):
        @staticmethod
        def forward(*args):
            raise RuntimeError("dpda.train.path_kernels: only callable under vmap")

        @staticmethod
        def setup_context(ctx, inputs, output):
            return None

        @staticmethod
        def backward(ctx, *grads):
            raise RuntimeError("dpda.train.path_kernels: the physical kernel's backward is used")

        @staticmethod
        def vmap(info, in_dims, x, *rest):
            if any(d is not None for d in tree_leaves(in_dims[1:])):
                raise RuntimeError("dpda.train.path_kernels: only the layer input may be batched")
            return kernel.apply(x.movedim(in_dims[0], 0), *rest), 0

    Entry.__name__ = f"Vmapped{kernel.__name__}"
    return Entry


class _Attention:
    """Scaled dot-product attention has no parameters and treats utterances independently: one call on the
    ``(2B, ...)`` batch (functorch has no batching rule for some of its kernels and would loop over the paths)."""

    @staticmethod
    def apply(q, k, v, attn_mask, dropout_p, is_causal, scale):
        out = F.scaled_dot_product_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), attn_mask=attn_mask,
                                             dropout_p=dropout_p, is_causal=is_causal, scale=scale)
        return out.unflatten(0, q.shape[:2])


class _VAttention(torch.autograd.Function):
    """Entry for attention: query, key and value are all batched (the generic entry allows one)."""

    @staticmethod
    def forward(*args):
        raise RuntimeError("dpda.train.path_kernels: only callable under vmap")

    @staticmethod
    def setup_context(ctx, inputs, output):
        return None

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("dpda.train.path_kernels: autograd records the physical call")

    @staticmethod
    def vmap(info, in_dims, q, k, v, *rest):
        if any(d is None for d in in_dims[:3]) or any(d is not None for d in tree_leaves(in_dims[3:])):
            raise RuntimeError("dpda.train.path_kernels: attention needs batched q, k, v and nothing else batched")
        q, k, v = (t.movedim(d, 0) for t, d in zip((q, k, v), in_dims[:3]))
        return _Attention.apply(q, k, v, *rest), 0


class _RecurrentPerHalf:
    """LSTM / GRU (``torch._VF.lstm`` / ``gru``, what ``nn.LSTM`` / ``nn.GRU`` call): functorch has no batching
    rule for them, so each half runs its own call with its own leaf weights (two calls instead of the whole
    model's two passes); the outputs are stacked back into the path axis."""

    @staticmethod
    def apply(x, fn, hx, params0, params1, *flags):
        outs = [fn(x[h], hx, params, *flags) for h, params in enumerate((params0, params1))]
        return torch.utils._pytree.tree_map(lambda a, b: torch.stack([a, b]), outs[0], outs[1])


class _VRecurrent(torch.autograd.Function):
    @staticmethod
    def forward(*args):
        raise RuntimeError("dpda.train.path_kernels: only callable under vmap")

    @staticmethod
    def setup_context(ctx, inputs, output):
        return None

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("dpda.train.path_kernels: autograd records the physical calls")

    @staticmethod
    def vmap(info, in_dims, x, fn, hx, params0, params1, *flags):
        if any(d is not None for d in tree_leaves((in_dims[2:]))):
            raise RuntimeError("dpda.train.path_kernels: only the recurrent layer's input may be batched")
        out = _RecurrentPerHalf.apply(x.movedim(in_dims[0], 0), fn, hx, params0, params1, *flags)
        return out, torch.utils._pytree.tree_map(lambda _: 0, out)


class _VPerSample(torch.autograd.Function):
    """Entry for a parameter-free function of one batched input that treats utterances independently (pooling):
    one call on the ``(2B, ...)`` batch. functorch batches some of these through a fallback that can be wrong for
    strided inputs (adaptive average pooling of a transposed bfloat16 tensor on the CPU: ``as_strided_``)."""

    @staticmethod
    def forward(*args):
        raise RuntimeError("dpda.train.path_kernels: only callable under vmap")

    @staticmethod
    def setup_context(ctx, inputs, output):
        return None

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("dpda.train.path_kernels: autograd records the physical call")

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
    """

    def __init__(self, aliases: Dict[int, Aliases]) -> None:
        super().__init__()
        self.aliases = aliases
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

    @staticmethod
    def _form(input: torch.Tensor, policy: Optional[Tuple[str, torch.dtype]]) -> str:
        """The aliases a conv / norm kernel returns gradients for (see :func:`total_form`)."""
        dtype = input.dtype if policy is None or policy[0] == "as_is" else (
            policy[1] if policy[0] == "lower" else torch.float32)
        return "total" if dtype in (torch.float32, torch.float64) else "halves"

    def _linear(self, input, weight, bias=None):
        affine = self._affine(weight, bias)
        if affine is None or not is_batchedtensor(input):
            return NotImplemented
        return _VLinear.apply(input, *affine, autocast_policy("linear", input.device))

    def _conv(self, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        if isinstance(padding, str) or not is_batchedtensor(input) or input.dim() != weight.dim():
            return NotImplemented
        policy = autocast_policy("conv1d" if weight.dim() == 3 else "conv2d", input.device)
        affine = self._affine(weight, bias, self._form(input, policy))
        if affine is None:
            return NotImplemented
        return _VConv.apply(input, *affine, stride, padding, dilation, groups, policy)

    def _layer_norm(self, input, normalized_shape, weight=None, bias=None, eps=1e-5):
        if not is_batchedtensor(input):
            return NotImplemented
        policy = autocast_policy("layer_norm", input.device)
        affine = self._affine(weight, bias, self._form(input, policy))
        if affine is None:
            return NotImplemented
        return _VPerSampleNorm.apply(input, *affine, "layer", (list(normalized_shape), eps), policy)

    def _group_norm(self, input, num_groups, weight=None, bias=None, eps=1e-5):
        if not is_batchedtensor(input) or input.dim() < 2:
            return NotImplemented
        policy = autocast_policy("group_norm", input.device)
        affine = self._affine(weight, bias, self._form(input, policy))
        if affine is None:
            return NotImplemented
        return _VPerSampleNorm.apply(input, *affine, "group", (input.shape[1], num_groups, eps), policy)

    def _batch_norm(self, input, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.1, eps=1e-5):
        if not is_batchedtensor(input) or input.dim() < 2:
            return NotImplemented
        if weight is None and bias is None:
            affine: Optional[List[Any]] = [None, None, None, None]
        else:
            affine = self._affine(weight, bias)
        if affine is None or any(t is not None and is_batchedtensor(t) for t in (running_mean, running_var)):
            return NotImplemented
        if training or running_mean is None:
            return _VBatchNormTrain.apply(input, *affine, running_mean, running_var, momentum, eps)
        if affine[0] is None:
            return NotImplemented
        affine = self._affine(weight, bias, self._form(input, None))
        return _VPerSampleNorm.apply(input, *affine, "batch_eval", (running_mean, running_var, eps), None)


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
            return _VRecurrent.apply(input, fn, hx, halves[0], halves[1], *flags)
        return route

    def _attention(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                   enable_gqa=False):
        if not all(is_batchedtensor(t) for t in (query, key, value)) or query.dim() < 3:
            return NotImplemented
        if attn_mask is not None and (is_batchedtensor(attn_mask) or attn_mask.dim() >= query.dim()):
            return NotImplemented  # a mask with an utterance axis would not broadcast over 2B
        if enable_gqa:
            return NotImplemented
        return _VAttention.apply(query, key, value, attn_mask, dropout_p, is_causal, scale)


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
