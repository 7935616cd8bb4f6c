"""The one-pass split (both paths in one vmapped forward/backward) gives the two-pass split's gradients."""

from __future__ import annotations

import contextlib
import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dpda.models import build_model
from dpda.train import DualPathEngine, weighted_cross_entropy
from dpda.train.one_pass import OnePass, unsupported_reason
from tests.devices import implicit_tensors_on_meta, on_devices
from tests.train.test_engine import Recorder, TinyNet, batch, reference_grads, trainable

#: small configurations of every family (the XLS-R front-end at its smallest)
SSL_MICRO = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
             "conv_dim": [32] * 7, "hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
             "feat_proj_dropout": 0.0, "layerdrop": 0.0}
FAMILIES = {
    "lcnn": {},
    "rawnet2": {"filts": [20, [20, 20], [20, 32], [32, 32]], "gru_node": 32, "nb_fc_node": 32, "nb_gru_layer": 2},
    "aasist-l": {},
    "xlsr_conformer_tcm": {"ssl_config": SSL_MICRO, "dim": 32, "n_blocks": 1},
    "xlsr_aasist": {"ssl_config": SSL_MICRO, "proj_dim": 24, "filts": [[1, 8], [8, 8], [8, 16], [16, 16]],
                    "attention_dim": 16, "gat_dims": [16, 8]},
    "xlsr_mamba": {"ssl_config": SSL_MICRO, "d_model": 32, "n_layers": 1},
}


def without_dropout(model: nn.Module) -> nn.Module:
    """Dropout off (the two procedures draw masks from different streams), BatchNorm still in training mode."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "attn_dropout", None), float):
            m.attn_dropout = 0.0
    return model


def loss64(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    weight = torch.tensor([0.1, 0.9], dtype=logits.dtype, device=logits.device)
    return F.cross_entropy(logits, y, weight=weight)


def running_stats(model: nn.Module):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("name, kernels", [
    (name, True) for name in ("lcnn", "rawnet2", "aasist-l", "xlsr_conformer_tcm", "xlsr_aasist")
] + [(name, False) for name in ("lcnn", "aasist-l", "xlsr_conformer_tcm")])  # functorch rules only
def test_one_pass_equals_two_passes_in_float64(name, kernels):
    """Per-path gradients and BatchNorm running statistics equal two separate passes (float64: to 1e-9), with the
    per-layer kernels (dpda.train.path_kernels) and with functorch's generic rules only."""
    torch.manual_seed(0)
    model = without_dropout(build_model(name, **FAMILIES[name])).double().train()
    x, x_aug, y = (t.double() if t.is_floating_point() else t for t in batch(b=3, t=16000))
    ref_model = copy.deepcopy(model)
    params = trainable(ref_model)
    ref = []
    for inp in (x, x_aug):
        out = ref_model(inp)
        ref.append(torch.autograd.grad(loss64(out[0] if isinstance(out, tuple) else out, y), params, allow_unused=True))
    one_model = copy.deepcopy(model)
    one_pass = OnePass(one_model, trainable(one_model), kernels=kernels)
    if not kernels and name in ("lcnn", "rawnet2"):  # functorch has no batching rule for LSTM / GRU
        with pytest.raises(RuntimeError):
            one_pass(x, x_aug, y, loss64, contextlib.nullcontext)
        return
    loss_orig, loss_aug, rows = one_pass(x, x_aug, y, loss64, contextlib.nullcontext)
    assert bool(one_pass.last_routed) == kernels, one_pass.last_routed
    for path in range(2):
        for r, g, p in zip(ref[path], rows[path], params):
            want = torch.zeros_like(p) if r is None else r
            got = torch.zeros_like(p) if g is None else g
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    want_stats, got_stats = running_stats(ref_model), running_stats(one_model)
    assert want_stats and want_stats.keys() == got_stats.keys()
    for k in want_stats:
        torch.testing.assert_close(got_stats[k], want_stats[k], rtol=1e-9, atol=1e-12, msg=k)


@on_devices
@pytest.mark.parametrize("name", list(FAMILIES))
def test_engine_one_pass_matches_two_pass_split(device, name):
    """Through the engine (float32): the two path gradients the aligner sees, the losses and the update."""
    torch.manual_seed(0)
    model = without_dropout(build_model(name, **FAMILIES[name])).to(device)
    x, x_aug, y = batch(b=3, t=16000, device=device)
    seen, outs, stats = [], [], []
    for one_pass in (False, True):
        m = copy.deepcopy(model)
        recorder = Recorder()
        engine = DualPathEngine(m, recorder, mode="split", one_pass=one_pass)
        outs.append(engine.compute_gradients(x, x_aug, y))
        assert engine.one_pass_fallback is None
        seen.append(recorder.seen.cpu())
        stats.append(running_stats(m))
    scale = float(seen[0].abs().max())
    torch.testing.assert_close(seen[1], seen[0], rtol=0, atol=2e-3 * scale)
    assert outs[1].loss_orig == pytest.approx(outs[0].loss_orig, rel=1e-4)
    assert outs[1].loss_aug == pytest.approx(outs[0].loss_aug, rel=1e-4)
    for k in stats[0]:
        torch.testing.assert_close(stats[1][k], stats[0][k], rtol=1e-3, atol=1e-4, msg=k)


@on_devices
def test_one_pass_equals_reference_on_a_net_with_frozen_and_unused_parameters(device):
    torch.manual_seed(0)
    model = TinyNet().to(device)
    x, x_aug, y = batch(device=device)
    loss_fn = weighted_cross_entropy()
    want = reference_grads(copy.deepcopy(model), x, x_aug, y, "split", loss_fn)
    recorder = Recorder()
    engine = DualPathEngine(model, recorder, loss_fn=loss_fn, mode="split", one_pass=True)
    engine.compute_gradients(x, x_aug, y)
    torch.testing.assert_close(recorder.seen.cpu(), torch.stack(want), rtol=1e-5, atol=1e-6)
    assert model.unused.grad is None and model.frozen.weight.grad is None
    assert int(model.norm.num_batches_tracked) == 2


def test_one_pass_creates_no_tensor_off_the_model_device():
    torch.manual_seed(0)
    base = TinyNet()
    results = []
    for guarded in (False, True):
        model = copy.deepcopy(base)
        engine = DualPathEngine(model, "pcgrad", mode="split", one_pass=True)
        x, x_aug, y = batch()
        with implicit_tensors_on_meta() if guarded else contextlib.nullcontext():
            engine.compute_gradients(x, x_aug, y)
        assert engine.one_pass_fallback is None
        results.append(torch.cat([p.grad.reshape(-1) for p in trainable(model) if p.grad is not None]))
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)


class WithHostRead(nn.Module):
    """A forward vmap cannot batch (it reads a value to the host); dropout consumes the random stream."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 9, stride=4)
        self.drop = nn.Dropout(0.3)
        self.rnn = nn.LSTM(4, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.drop(self.conv(x.unsqueeze(1))).transpose(1, 2)
        if float(h.abs().max()) > 1e6:  # a host read, as a guard against diverging activations would be
            h = h / 1e6
        return self.head(self.rnn(h)[0][:, -1])


def test_a_model_vmap_cannot_batch_falls_back_with_the_same_random_stream():
    torch.manual_seed(0)
    base = WithHostRead()
    x, x_aug, y = batch()
    grads, states = [], []
    for one_pass in (False, True):
        model = copy.deepcopy(base)
        engine = DualPathEngine(model, "pcgrad", mode="split", one_pass=one_pass)
        torch.manual_seed(5)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                engine.compute_gradients(x, x_aug, y)
        grads.append(torch.cat([p.grad.reshape(-1) for p in trainable(model)]))
        states.append(torch.get_rng_state())
        if one_pass:
            assert "item" in (engine.one_pass_fallback or "").lower(), engine.one_pass_fallback
            assert sum("one-pass gradients not used" in str(w.message) for w in caught) == 1
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)
    assert torch.equal(states[0], states[1])


def test_unsupported_batchnorm_configurations_are_named():
    cumulative = nn.Sequential(nn.BatchNorm1d(3, momentum=None))
    assert "momentum=None" in unsupported_reason(cumulative)
    sync = nn.Sequential(nn.Conv1d(1, 3, 3), nn.SyncBatchNorm(3))
    assert "SyncBatchNorm" in unsupported_reason(sync)
    assert unsupported_reason(TinyNet()) is None
    with pytest.warns(UserWarning, match="momentum=None"):
        DualPathEngine(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, momentum=None), nn.Linear(3, 2)),
                       "pcgrad", mode="split", one_pass=True)


def test_one_pass_default_is_on_for_cuda_only():
    engine = DualPathEngine(TinyNet(), "pcgrad", mode="split")
    assert engine._use_one_pass(torch.device("cuda")) and not engine._use_one_pass(torch.device("cpu"))
    assert not DualPathEngine(TinyNet(), "pcgrad", mode="split", one_pass=False)._use_one_pass(torch.device("cuda"))
    assert DualPathEngine(TinyNet(), "pcgrad", mode="split", one_pass=True)._use_one_pass(torch.device("cpu"))
