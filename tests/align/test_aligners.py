"""Aligner behaviour beyond the reference vectors."""

from __future__ import annotations

import math

import pytest
import torch

from dpda.align import ALIGNERS, build_aligner


def naive_pcgrad(grads, reduction="mean", eps=0.0):
    """Straightforward per-vector PCGrad (identity visiting order)."""
    projected = []
    for i in range(grads.shape[0]):
        gi = grads[i].clone()
        for j in range(grads.shape[0]):
            d = gi @ grads[j]
            if d < 0:
                gi = gi - d / (grads[j] @ grads[j] + eps) * grads[j]
        projected.append(gi)
    stacked = torch.stack(projected)
    return stacked.mean(0) if reduction == "mean" else stacked.sum(0)


def naive_gradvac(grads, rho, beta=0.5, ema="positive", eps=1e-8):
    out = []
    for i in range(grads.shape[0]):
        pc = grads[i].clone()
        for j in range(grads.shape[0]):
            if j == i:
                continue
            phi = float(pc @ grads[j] / (pc.norm() * grads[j].norm() + eps))
            t = float(rho[i, j])
            if phi < t:
                pc = pc + grads[j] * pc.norm() * (t * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - t**2)) / (
                    grads[j].norm() * math.sqrt(1 - t**2) + eps)
            if ema == "always" or phi > 0:
                rho[i, j] = (1 - beta) * t + beta * phi
        out.append(pc)
    return torch.stack(out).mean(0)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_pcgrad_equals_per_vector_loop(k):
    g = torch.randn(k, 300, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    g[1] = -0.7 * g[0] + 0.3 * g[1]  # make sure there are conflicts
    for reduction in ("mean", "sum"):
        out = build_aligner("pcgrad", reduction=reduction)(g)
        torch.testing.assert_close(out, naive_pcgrad(g, reduction), rtol=1e-10, atol=1e-12)


def test_gradvac_equals_per_vector_loop_over_steps():
    gen = torch.Generator().manual_seed(0)
    aligner = build_aligner("gradvac")
    rho = torch.zeros(3, 3, dtype=torch.float64)
    for _ in range(6):
        g = torch.randn(3, 200, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(aligner(g), naive_gradvac(g, rho), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(aligner.state_dict()["rho"][0], rho)


def test_no_conflict_pcgrad_is_the_mean_and_stats():
    g = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    aligner = build_aligner("pcgrad")
    torch.testing.assert_close(aligner(g), g.mean(0))
    s = aligner.last_stats
    assert s["conflict"] is False and s["cos"] == pytest.approx(0.5) and s["dot"] == pytest.approx(1.0)
    assert s["norms"] == pytest.approx([math.sqrt(2), math.sqrt(2)])
    g2 = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    out = aligner(g2)
    assert aligner.last_stats["conflict"] is True and aligner.last_stats["n_projections"] == 2
    # both projected gradients are orthogonal to the other original one
    assert float(out @ g2[0]) >= -1e-6 and float(out @ g2[1]) >= -1e-6


def test_mean_and_sum_are_gradients_of_mean_and_sum_loss():
    w = torch.randn(10, requires_grad=True)
    x1, x2 = torch.randn(10), torch.randn(10)
    l1, l2 = (w * x1).sum() ** 2, (w * x2).sin().sum()
    g1, = torch.autograd.grad(l1, w, retain_graph=True)
    g2, = torch.autograd.grad(l2, w, retain_graph=True)
    g_mean, = torch.autograd.grad((l1 + l2) / 2, w, retain_graph=True)
    torch.testing.assert_close(build_aligner("none")(torch.stack([g1, g2])), g_mean)
    torch.testing.assert_close(build_aligner("sum")(torch.stack([g1, g2])), 2 * g_mean)


@pytest.mark.parametrize("name", ["none", "sum", "weighted", "pcgrad", "gradvac", "cagrad", "mgda"])
def test_low_precision_grads_are_aligned_in_float32(name):
    g = torch.randn(2, 64, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    out = build_aligner(name)(g)
    assert out.dtype == torch.float32 and out.shape == (64,) and torch.isfinite(out).all()


def test_cagrad_c_zero_is_the_mean():
    g = torch.randn(2, 50, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(build_aligner("cagrad", c=0.0, solver="exact")(g), g.mean(0), rtol=1e-5, atol=1e-6)


def test_mgda_result_has_minimum_norm():
    g = torch.randn(3, 40, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    aligner = build_aligner("mgda")
    out = aligner(g)
    w = torch.tensor(aligner.last_stats["weights"], dtype=torch.float64)
    assert float(w.sum()) == pytest.approx(1.0) and bool((w >= 0).all())
    gen = torch.Generator().manual_seed(4)
    for _ in range(200):
        v = torch.rand(3, generator=gen, dtype=torch.float64)
        assert float((v / v.sum()) @ g @ ((v / v.sum()) @ g)) >= float(out @ out) - 1e-9


def test_gradvac_segments_keep_one_target_per_segment():
    g = torch.randn(2, 30, generator=torch.Generator().manual_seed(5))
    whole = build_aligner("gradvac")(g)
    seg = build_aligner("gradvac", granularity="segments")
    torch.testing.assert_close(seg(g, segments=[(0, 30)]), whole)
    seg.reset()
    seg(g, segments=[(0, 10), (10, 30)])
    assert seg.state_dict()["rho"].shape == (2, 2, 2)
    with pytest.raises(ValueError, match="segment"):
        seg(g, segments=[(0, 30)])
    with pytest.raises(ValueError, match="needs the gradient segments"):
        build_aligner("gradvac", granularity="segments")(g)


def test_weighted_is_the_gradient_of_the_weighted_loss():
    w = torch.randn(10, requires_grad=True, dtype=torch.float64)
    x1, x2 = torch.randn(10, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    l1, l2 = (w * x1).sum() ** 2, (w * x2).sin().sum()
    g = torch.stack(torch.autograd.grad(l1, w, retain_graph=True) + torch.autograd.grad(l2, w, retain_graph=True))
    g_weighted, = torch.autograd.grad(0.3 * l1 + 0.7 * l2, w)
    aligner = build_aligner("weighted", weights=[0.3, 0.7])
    torch.testing.assert_close(aligner(g), g_weighted)
    assert aligner.last_stats["weights"] == [0.3, 0.7] and "cos" in aligner.last_stats
    torch.testing.assert_close(build_aligner("weighted")(g), build_aligner("none")(g))  # default 0.5 / 0.5
    torch.testing.assert_close(build_aligner("weighted", weights=[1, 0])(g), g[0])  # recorded path only
    # an entry only the first path reaches gets its weighted contribution (the weighted loss's gradient)
    has = torch.ones(2, 10, dtype=torch.bool)
    has[1, 7:] = False
    g[1, 7:] = 0
    torch.testing.assert_close(aligner(g, has_grad=has)[7:], 0.3 * g[0, 7:])
    k3 = torch.randn(3, 10, dtype=torch.float64)
    torch.testing.assert_close(build_aligner("weighted", weights=[1, 2, 3])(k3), k3[0] + 2 * k3[1] + 3 * k3[2])


@pytest.mark.parametrize(("weights", "message"), [
    ([0.5, -0.1], r"weights\[1\] must be finite and >= 0"),
    ([0.5, float("nan")], r"weights\[1\] must be finite"),
    ([0, 0], "must not all be zero"),
    (["a", 1], r"weights\[0\] must be a number"),
    ([True, 1], r"weights\[0\] must be a number"),
    (0.5, "one number per path"),
    ("0.5", "one number per path"),
    ([], "one number per path"),
])
def test_weighted_rejects_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        build_aligner("weighted", weights=weights)


def test_weighted_needs_one_weight_per_task():
    with pytest.raises(ValueError, match="3 weights for 2 task gradients"):
        build_aligner("weighted", weights=[1, 1, 1])(torch.randn(2, 5))


def test_build_aligner_errors():
    assert {"none", "sum", "weighted", "pcgrad", "gradvac", "cagrad", "mgda"} <= set(ALIGNERS)
    with pytest.raises(ValueError, match="unknown aligner 'pcgard'"):
        build_aligner("pcgard")
    with pytest.raises(ValueError, match="bad options for aligner 'pcgrad'"):
        build_aligner("pcgrad", beta=0.5)
    with pytest.raises(ValueError, match="shape"):
        build_aligner("pcgrad")(torch.zeros(5))
    with pytest.raises(ValueError, match="stateless"):
        build_aligner("pcgrad").load_state_dict({"rho": 1})


@pytest.mark.parametrize("name", ["none", "sum", "weighted", "pcgrad", "gradvac", "cagrad", "mgda"])
def test_inplace_writes_the_same_update_into_the_first_row(name):
    g = torch.randn(2, 100, generator=torch.Generator().manual_seed(6))
    g[1] -= 1.5 * g[0]
    expected = build_aligner(name)(g.clone())
    buf = g.clone()
    out = build_aligner(name)(buf, inplace=True)
    assert out.data_ptr() == buf[0].data_ptr()
    torch.testing.assert_close(buf[0], expected, rtol=1e-5, atol=1e-6)


def test_inplace_with_partial_gradients():
    g = torch.randn(2, 50, generator=torch.Generator().manual_seed(7))
    has = torch.ones(2, 50, dtype=torch.bool)
    has[1, 40:] = False
    g[1, 40:] = 0
    for name in ("pcgrad", "cagrad", "weighted"):
        expected = build_aligner(name)(g.clone(), has_grad=has)
        buf = g.clone()
        build_aligner(name)(buf, has_grad=has, inplace=True)
        torch.testing.assert_close(buf[0], expected, rtol=1e-5, atol=1e-6)
