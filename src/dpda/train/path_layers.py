"""The physical kernels of the one-pass split (see :mod:`dpda.train.path_kernels`): autograd Functions that
run a layer once on the ``(2, B, ...)`` batch of both paths and return each path's weight gradient, and the
autocast policy they follow.

Shapes: ``x`` is ``(2, B, ...)`` (path, utterance, layer dims); weight gradients have the parameter's shape.
Weight arguments come in pairs of leaf aliases: ``(path 0, path 1)``, or ``(path 0, both paths)`` where the
total comes from the same backward call as the input gradient (:func:`total_form`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

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


def compute_dtype(dtype: torch.dtype, policy: Optional[Tuple[str, torch.dtype]]) -> torch.dtype:
    """The dtype a kernel computes in: its input's ``dtype`` after autocast's ``policy`` (see
    :func:`autocast_policy`)."""
    if policy is None or policy[0] == "as_is":
        return dtype
    return policy[1] if policy[0] == "lower" else torch.float32


def _cast(policy: Optional[Tuple[str, torch.dtype]], *tensors: Optional[torch.Tensor]) -> List[Optional[torch.Tensor]]:
    """``tensors`` as autocast would give them to the op (floating tensors only; None stays None)."""
    if policy is None or policy[0] == "as_is":
        return list(tensors)
    dtype = compute_dtype(torch.float32, policy)
    return [t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors]


def total_form(dtype: torch.dtype) -> bool:
    """Whether a kernel computing in ``dtype`` returns weight gradients as (half 0, both halves): in float32
    or float64, where ``both - half 0`` keeps path 1's precision; in bfloat16 / float16 each half's own."""
    return dtype in (torch.float32, torch.float64)


def _no_autocast(device: torch.device):
    return torch.autocast(device.type, enabled=False)


def _tuple(v: Any, n: int) -> List[int]:
    return list(v) if isinstance(v, (tuple, list)) else [int(v)] * n


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
    in low precision (``total`` false, :func:`total_form`) as (half 0, half 1)."""

    @staticmethod
    def forward(ctx, x, wa, wt, ba, bt, stride, padding, dilation, groups, policy, total):
        n = wa.dim() - 2
        ctx.geometry = (_tuple(stride, n), _tuple(padding, n), _tuple(dilation, n), groups)
        ctx.bias_sizes = [wa.shape[0]] if ba is not None else None
        x, w, b = _cast(policy, x, wa, ba)
        ctx.total_form = total
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
        return gx, gw_a, gw_b, gb_a, gb_b, None, None, None, None, None, None


class _PerSampleNorm(torch.autograd.Function):
    """Layer norm / group norm / BatchNorm in eval mode: statistics per utterance (or fixed), so the forward
    runs on the whole batch; affine gradients as (half 0, both halves) or, in low precision, (half 0,
    half 1), like :class:`_Conv`."""

    @staticmethod
    def forward(ctx, x, w0, wt, b0, bt, kind, spec, policy, total):
        ctx.kind, ctx.spec, ctx.total_form = kind, spec, total
        x, w0, b0 = _cast(policy, x, w0, b0)
        x = x.contiguous()  # the native kernels assume it (aten.group_norm makes it so before its kernel)
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
        return gx, gw_a, gw_b, gb_a, gb_b, None, None, None, None


class _BatchNormTrain(torch.autograd.Function):
    """BatchNorm in training mode with each half's own batch statistics; running statistics (if any) are
    updated by half 0, then by half 1 (what two passes do), or by half 0 only (``update_both`` false: the
    halves are two copies of one batch, see :class:`~dpda.train.one_pass.OnePass`)."""

    @staticmethod
    def forward(ctx, x, w0, w1, b0, b1, running_mean, running_var, momentum, eps, update_both=True):
        y = x.new_empty(x.shape)
        c = x.shape[2]
        save_mean = x.new_empty(2, c, dtype=torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype)
        save_invstd = torch.empty_like(save_mean)
        for h in range(2):
            running = (running_mean, running_var) if h == 0 or update_both else (None, None)
            aten.native_batch_norm.out(x[h], w0, b0, *running, True, momentum, eps,
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
        return gx, per[0][1], per[1][1], per[0][2], per[1][2], None, None, None, None, None
