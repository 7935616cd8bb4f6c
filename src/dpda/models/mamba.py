"""Bidirectional Mamba back-end in plain PyTorch (XLSR-Mamba style).

What is implemented
-------------------
* :func:`selective_scan` -- the Mamba (S6) selective scan of Gu & Dao (2023)::

      delta_t = softplus(delta_t + delta_bias)          (input dependent, per channel)
      A_bar_t = exp(delta_t * A)                         (zero-order hold on A, A < 0)
      B_bar_t x_t ~= delta_t * B_t * x_t                 (Euler step on B, as in Mamba)
      h_t     = A_bar_t * h_{t-1} + B_bar_t x_t          (state (d_inner, d_state) per step)
      y_t     = C_t . h_t + D * x_t,   y_t *= silu(z_t)

  ``A`` is diagonal (``-exp(A_log)``, S4D-real initialisation); ``B_t``, ``C_t``
  and ``delta_t`` are functions of the input. The scan always runs in float32
  with autocast disabled, whatever the input dtype (bf16/fp16 autocast safe).
  When ``mamba_ssm`` is importable and the tensors are on CUDA, its fused
  kernel is used instead (same signature); otherwise
  :func:`selective_scan_torch`, an exact two-level chunked scan: a sequential
  recurrence of ``chunk`` steps run for all chunks at once, a sequential pass
  over the ``ceil(T / chunk)`` chunk boundary states, and a correction of every
  state by the within-chunk cumulative decay. All exponentials have
  non-positive arguments, so it is numerically stable, and it takes
  ``~2*sqrt(T)`` Python steps instead of ``T``. :func:`selective_scan_ref` is
  the naive step-by-step loop used as the test reference.
* :class:`MambaMixer` -- the Mamba-1 block: ``in_proj`` (d -> 2*d_inner, split
  into x and the gate z), causal depthwise ``conv1d`` (kernel ``d_conv``) +
  SiLU on x, ``x_proj`` -> (dt low-rank, B, C), ``dt_proj`` (rank -> d_inner),
  selective scan, gate ``y * silu(z)``, ``out_proj`` (d_inner -> d). The
  initialisation follows the Mamba paper (dt bias = softplus^-1 of a
  log-uniform dt in [1e-3, 0.1]; ``A_log = log(1..d_state)``; ``D = 1``).
* :class:`MambaBlock` -- pre-norm residual block ``x + Mixer(RMSNorm(x))``
  (equivalent to mamba_ssm's fused add+RMSNorm ``Block``: the residual stream
  is kept in float32, ``residual_in_fp32``); a :class:`MambaColumn` stacks
  ``n_layers`` of them and (unless ``final_norm=False``) ends with an RMSNorm.
* :class:`BiMambaBackend` -- XLSR-Mamba's dual-column bidirectional back-end
  (Xiao & Das, "XLSR-Mamba: A Dual-Column Bidirectional State Space Model for
  Spoofing Attack Detection", IEEE SPL 2025): the SSL features are projected
  1024 -> 144 (Linear + BatchNorm + SELU); a forward column reads the sequence
  in time order and a separate backward column (own weights) reads it
  time-reversed (its output is flipped back); each column's output is
  attention-pooled over time; the two pooled vectors are concatenated,
  linearly fused to ``d_model`` (the embedding) and a linear layer gives the
  two logits.

Reproducing the released XLSR-Mamba / DPDA-GA checkpoints
----------------------------------------------------------
The original ``MixerModel`` (mamba_blocks.py) differs from the clean
formulation above in three ways; :class:`BiMambaBackend` reproduces each with
an option (all off by default, all on in
:mod:`dpda.models.published.mamba`'s ``model_config``):

* ``shared_final_norm=True`` -- one final RMSNorm (``norm_f``) serves both
  columns (the columns then have no ``norm_f`` of their own);
* ``final_residual="input"`` -- the final fused add+norm is called with the
  back-end input instead of the last block's output:
  ``norm_f(x + s)`` where ``s`` is the residual stream that *entered* the last
  block (so the last block's mixer has no effect on the output) and ``x`` is
  the *unflipped* input, also for the backward column, whose stream is in
  reversed time order and is not flipped back (the attention pooling is
  order-invariant);
* ``input_dropout`` -- the original applies its dropout (p=0.1) to the
  column input as well as before the classifier.

Defaults (XLSR-Mamba): ``d_model=144``, ``n_layers=6`` per direction (6
forward + 6 backward blocks), ``d_state=16``, ``d_conv=4``, ``expand=2``
(``d_inner=288``), ``dt_rank=ceil(144/16)=9`` -- about 1.94 M back-end
parameters (1.75 M in the 12 Mamba blocks).

Why one file of about 500 lines: the selective scan, the Mamba block and the bidirectional
back-end are one algorithm whose equations (above) are followed line by line; split, the
equations and the code that implements them would sit in different files.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

try:  # optional fused CUDA kernel; never required
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_ssm_scan  # type: ignore
except Exception:  # noqa: BLE001  # pragma: no cover - any import failure means "not available"
    _mamba_ssm_scan = None

__all__ = [
    "AttentivePooling",
    "BiMambaBackend",
    "MambaBlock",
    "MambaColumn",
    "MambaMixer",
    "RMSNorm",
    "has_mamba_ssm",
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_torch",
]


def has_mamba_ssm() -> bool:
    """True when ``mamba_ssm``'s fused selective-scan kernel could be imported."""
    return _mamba_ssm_scan is not None


def _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """Cast to float32 and expand B/C to (b, l, d, n) / (b, l, n) layouts."""
    u = u.float()
    delta = delta.float()
    A = A.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    B = B.float()
    C = C.float()
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError("B and C must have shape (batch, d_state, length)")
    return u, delta, A, B, C


def _skip_and_gate(y: torch.Tensor, u: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor]) -> torch.Tensor:
    """Mamba's output: add the skip ``D * u`` and gate with ``silu(z)`` (float32, (b, d, l))."""
    if D is not None:
        y = y + D.float()[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.float())
    return y


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Naive step-by-step selective scan (reference for the tests).

    Shapes: ``u, delta, z``: (b, d, l); ``A``: (d, n); ``B, C``: (b, n, l);
    ``D, delta_bias``: (d,). Returns ``y`` (b, d, l) in ``u``'s dtype.
    """
    dtype = u.dtype
    with torch.autocast(device_type=u.device.type, enabled=False):
        u, delta, A, B, C = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        b, d, length = u.shape
        h = u.new_zeros(b, d, A.shape[1])
        ys = []
        for t in range(length):
            a_bar = torch.exp(delta[:, :, t, None] * A)  # (b, d, n)
            bx = delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]  # (b, d, n)
            h = a_bar * h + bx
            ys.append((h * C[:, None, :, t]).sum(-1))  # (b, d)
        y = torch.stack(ys, dim=-1)
        y = _skip_and_gate(y, u, D, z)
    return y.to(dtype)


def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """Exact chunked selective scan in plain PyTorch (float32 accumulation).

    Same arguments as :func:`selective_scan_ref`; ``chunk_size`` defaults to
    ``ceil(sqrt(length))``. Memory: a handful of (b, l, d, n) float32 tensors.
    """
    dtype = u.dtype
    with torch.autocast(device_type=u.device.type, enabled=False):
        u, delta, A, B, C = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        b, d, length = u.shape
        n = A.shape[1]
        if length == 0:
            return u.to(dtype)
        L = int(chunk_size) if chunk_size else max(1, math.ceil(math.sqrt(length)))
        L = min(L, length)
        nc = math.ceil(length / L)
        pad = nc * L - length

        # time-major layouts: (b, l, d, n)
        dt = delta.transpose(1, 2)  # (b, l, d)
        dA = dt.unsqueeze(-1) * A  # (b, l, d, n), <= 0
        dBu = (dt * u.transpose(1, 2)).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2)  # (b, l, d, n)
        Ct = C.transpose(1, 2)  # (b, l, n)
        if pad:
            # padding at the end: decay 1 (dA = 0) and no input, so it cannot change earlier outputs
            dA = F.pad(dA, (0, 0, 0, 0, 0, pad))
            dBu = F.pad(dBu, (0, 0, 0, 0, 0, pad))
            Ct = F.pad(Ct, (0, 0, 0, pad))
        dA = dA.reshape(b, nc, L, d, n)
        dBu = dBu.reshape(b, nc, L, d, n)

        # 1) local recurrences, all chunks at once (state enters each chunk as zero)
        a_bar = torch.exp(dA)
        h = dBu.new_zeros(b, nc, d, n)
        local = []
        for i in range(L):
            h = a_bar[:, :, i] * h + dBu[:, :, i]
            local.append(h)
        h_local = torch.stack(local, dim=2)  # (b, nc, L, d, n)

        # 2) carry the boundary states across chunks
        cum = torch.cumsum(dA, dim=2)  # within-chunk cumulative log decay, <= 0
        decay = torch.exp(cum)
        if nc > 1:
            carry = dBu.new_zeros(b, d, n)
            carries = [carry]
            for c in range(nc - 1):
                carry = decay[:, c, -1] * carry + h_local[:, c, -1]
                carries.append(carry)
            h_in = torch.stack(carries, dim=1)  # state entering chunk c: (b, nc, d, n)
            h_all = h_local + decay * h_in.unsqueeze(2)
        else:
            h_all = h_local

        # 3) read-out y_t = C_t . h_t
        y = torch.einsum("bcldn,bcln->bcld", h_all, Ct.reshape(b, nc, L, n))
        y = y.reshape(b, nc * L, d)[:, :length].transpose(1, 2)  # (b, d, l)
        y = _skip_and_gate(y, u, D, z)
    return y.to(dtype)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
    use_cuda_kernel: bool = True,
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """Selective scan: ``mamba_ssm``'s CUDA kernel if available and on CUDA, else the torch scan."""
    if use_cuda_kernel and _mamba_ssm_scan is not None and u.is_cuda:  # pragma: no cover - needs mamba_ssm
        return _mamba_ssm_scan(
            u.contiguous(),
            delta.contiguous(),
            A.float().contiguous(),
            B.contiguous(),
            C.contiguous(),
            None if D is None else D.float(),
            None if z is None else z.contiguous(),
            None if delta_bias is None else delta_bias.float(),
            delta_softplus,
        )
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size)


class RMSNorm(nn.Module):
    """Root-mean-square layer norm, weight only (computed in float32, as mamba_ssm's ``rms_norm_ref``)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        rstd = 1.0 / torch.sqrt(xf.square().mean(dim=-1, keepdim=True) + self.eps)
        return (xf * rstd * self.weight.float()).to(x.dtype)


class MambaMixer(nn.Module):
    """Mamba-1 selective SSM mixer: (B, T, d_model) -> (B, T, d_model)."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: Union[int, str] = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_cuda_kernel: bool = True,
        chunk_size: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.use_cuda_kernel = use_cuda_kernel
        self.chunk_size = chunk_size

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

        # dt_proj: weight ~ U(-r^-0.5, r^-0.5); bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max]
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real initialisation: A = -(1, 2, ..., d_state) for every channel
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        xz = self.in_proj(x).transpose(1, 2)  # (B, 2*d_inner, T)
        u, z = xz.chunk(2, dim=1)
        u = F.silu(self.conv1d(u)[..., :length])  # causal depthwise conv
        x_dbl = self.x_proj(u.transpose(1, 2))  # (B, T, r + 2n)
        dt, Bm, Cm = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # (B, d_inner, T); bias added in the scan
        A = -torch.exp(self.A_log.float())
        y = selective_scan(
            u,
            delta,
            A,
            Bm.transpose(1, 2),
            Cm.transpose(1, 2),
            self.D,
            z,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
            use_cuda_kernel=self.use_cuda_kernel,
            chunk_size=self.chunk_size,
        )
        return self.out_proj(y.transpose(1, 2).to(xz.dtype))


class MambaBlock(nn.Module):
    """Pre-norm residual Mamba block: ``x + Mixer(RMSNorm(x))``.

    With ``residual_in_fp32`` the sum (the residual stream) is float32, as in
    mamba_ssm's ``Block`` with ``residual_in_fp32=True``.
    """

    def __init__(self, d_model: int, norm_eps: float = 1e-5, residual_in_fp32: bool = True, **mixer_kwargs) -> None:
        super().__init__()
        self.residual_in_fp32 = residual_in_fp32
        self.norm = RMSNorm(d_model, eps=norm_eps)
        self.mixer = MambaMixer(d_model, **mixer_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mixer(self.norm(x))
        if self.residual_in_fp32:
            return x.float() + out.float()
        return x + out


class MambaColumn(nn.Module):
    """``n_layers`` Mamba blocks followed by a final RMSNorm (one scan direction).

    ``final_norm=False`` leaves the norm out (the back-end then owns a shared one).
    """

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        norm_eps: float = 1e-5,
        residual_in_fp32: bool = True,
        final_norm: bool = True,
        **mixer_kwargs,
    ) -> None:
        super().__init__()
        self.residual_in_fp32 = residual_in_fp32
        self.layers = nn.ModuleList(
            [
                MambaBlock(d_model, norm_eps=norm_eps, residual_in_fp32=residual_in_fp32, **mixer_kwargs)
                for _ in range(n_layers)
            ]
        )
        self.norm_f = RMSNorm(d_model, eps=norm_eps) if final_norm else None

    def stream(self, x: torch.Tensor, n_blocks: Optional[int] = None) -> torch.Tensor:
        """The residual stream after the first ``n_blocks`` blocks (all by default; 0 gives ``x``)."""
        if self.residual_in_fp32:
            x = x.float()
        for layer in self.layers[: len(self.layers) if n_blocks is None else n_blocks]:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stream(x)
        return x if self.norm_f is None else self.norm_f(x)


class AttentivePooling(nn.Module):
    """Softmax attention pooling over time: (B, T, D) -> (B, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.score(x).float(), dim=1)  # (B, T, 1), fp32 softmax
        return (w * x.float()).sum(dim=1).to(x.dtype)


class BiMambaBackend(nn.Module):
    """Dual-column bidirectional Mamba back-end: SSL features (B, T, in_dim) -> logits (B, 2).

    ``forward(feats)`` returns ``(logits, embedding)``; the embedding is the
    fused ``d_model`` vector that feeds the linear classifier.

    ``shared_final_norm``, ``final_residual="input"`` and ``input_dropout``
    reproduce the original XLSR-Mamba ``MixerModel`` (see the module docstring);
    ``residual_in_fp32`` keeps the residual streams in float32 (mamba_ssm's
    ``Block``); ``norm_eps`` is the eps of every RMSNorm.
    """

    FINAL_RESIDUALS = ("output", "input")

    def __init__(
        self,
        in_dim: int = 1024,
        d_model: int = 144,
        n_layers: int = 6,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: Union[int, str] = "auto",
        dropout: float = 0.0,
        num_classes: int = 2,
        use_cuda_kernel: bool = True,
        chunk_size: Optional[int] = None,
        norm_eps: float = 1e-5,
        residual_in_fp32: bool = True,
        shared_final_norm: bool = False,
        final_residual: str = "output",
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if final_residual not in self.FINAL_RESIDUALS:
            raise ValueError(f"final_residual must be one of {self.FINAL_RESIDUALS}, got {final_residual!r}")
        if final_residual == "input" and n_layers < 1:
            raise ValueError("final_residual='input' needs n_layers >= 1")
        self.final_residual = final_residual
        self.proj = nn.Linear(in_dim, d_model)
        self.first_bn = nn.BatchNorm2d(num_features=1)
        self.selu = nn.SELU(inplace=False)
        self.input_dropout = nn.Dropout(input_dropout)
        mixer = dict(
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            dt_rank=dt_rank,
            use_cuda_kernel=use_cuda_kernel,
            chunk_size=chunk_size,
        )
        column = dict(norm_eps=norm_eps, residual_in_fp32=residual_in_fp32, final_norm=not shared_final_norm)
        self.forward_column = MambaColumn(d_model, n_layers, **column, **mixer)
        self.backward_column = MambaColumn(d_model, n_layers, **column, **mixer)
        self.norm_f = RMSNorm(d_model, eps=norm_eps) if shared_final_norm else None
        self.pool_forward = AttentivePooling(d_model)
        self.pool_backward = AttentivePooling(d_model)
        self.fusion = nn.Linear(2 * d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_classes)
        self.embedding_dim = d_model

    def _final_norm(self, column: MambaColumn) -> RMSNorm:
        norm = self.norm_f if self.norm_f is not None else column.norm_f
        assert norm is not None
        return norm

    def columns(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalised outputs of the two columns for the column input ``x`` (B, T, d_model).

        With ``final_residual="output"`` both are in time order; with ``"input"``
        (the original XLSR-Mamba) the backward one stays in reversed order.
        """
        nf, nb = self._final_norm(self.forward_column), self._final_norm(self.backward_column)
        if self.final_residual == "input":
            # norm_f(x + residual entering the last block); x unflipped for both columns
            base = x.float() if self.forward_column.residual_in_fp32 else x
            h_f = nf(base + self.forward_column.stream(x, len(self.forward_column.layers) - 1))
            h_b = nb(base + self.backward_column.stream(x.flip(1), len(self.backward_column.layers) - 1))
            return h_f, h_b
        h_f = nf(self.forward_column.stream(x))
        h_b = nb(self.backward_column.stream(x.flip(1))).flip(1)
        return h_f, h_b

    def forward(self, feats: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.proj(feats)  # (B, T, d)
        x = self.selu(self.first_bn(x.unsqueeze(1)).squeeze(1))
        h_f, h_b = self.columns(self.input_dropout(x))
        pooled = torch.cat([self.pool_forward(h_f), self.pool_backward(h_b)], dim=-1)
        emb = self.fusion(pooled)
        logits = self.classifier(self.dropout(emb))
        return logits, emb
