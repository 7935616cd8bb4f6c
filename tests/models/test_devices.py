"""Every registered model on any device: no tensor created off the input's device, state that moves.

The guard (:func:`tests.devices.implicit_tensors_on_meta`) runs a forward pass
(training and eval mode) and a backward pass of each architecture with CPU
inputs while every tensor created without an explicit device lands on
``meta``. Before the fix, AASIST's frequency masking drew its block with
``torch.randint(...)`` and the XLS-R front-end its LayerDrop decision with
``torch.rand(())``, both on the default device: meta tensors here, and on a
machine whose default device is not the model's, a crash or a silent
host round trip.

The ``device``-parametrized tests check that ``model.to(device)`` moves every
parameter and buffer (the non-persistent sinc filter bank and LFCC matrices
included), that no sub-module keeps a plain tensor attribute that ``.to()``
would leave behind, and that a forward/backward pass keeps everything on the
device.
"""

from __future__ import annotations

from typing import Any, Dict, List, Set

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dpda.models import build_model, model_names
from dpda.models.sinc import SincConv
from tests.devices import assert_on, implicit_tensors_on_meta, on_devices
from tests.models.test_ssl import TINY_SSL as SSL_TEST_CONFIG

pytest.importorskip("transformers")  # the XLS-R models wrap transformers' Wav2Vec2Model

#: the tiny random wav2vec 2.0 of test_ssl.py, with ``layerdrop > 0`` so that training mode takes the LayerDrop draw
TINY_SSL: Dict[str, Any] = {**SSL_TEST_CONFIG, "layerdrop": 0.5}
TINY_AASIST: Dict[str, Any] = dict(filts=[70, [1, 4], [4, 4], [4, 8], [8, 8]], gat_dims=[8, 8])

#: a small configuration of every registered model (a new model must add one here)
TINY_CONFIGS: Dict[str, Dict[str, Any]] = {
    "aasist": TINY_AASIST,
    "aasist-l": TINY_AASIST,
    "rawnet2": dict(first_conv=128, filts=[20, [20, 20], [20, 16], [16, 16]], gru_node=16, nb_fc_node=16),
    "lcnn": {},  # 270k parameters: small already
    "xlsr_aasist": dict(
        ssl_config=TINY_SSL, proj_dim=12, filts=((1, 4), (4, 4), (4, 8), (8, 8)), attention_dim=8, gat_dims=(8, 8)
    ),
    "xlsr_conformer_tcm": dict(ssl_config=TINY_SSL, dim=16, n_blocks=2, heads=2, kernel_size=7),
    "xlsr_mamba": dict(ssl_config=TINY_SSL, d_model=16, n_layers=2, d_state=4),
}

#: XLS-R front-end options that take other forward code paths (tried on xlsr_mamba, the smallest back-end)
SSL_VARIANTS: Dict[str, Dict[str, Any]] = {
    "weighted-layers": dict(ssl_layer="weighted"),
    "truncated-layer": dict(ssl_layer=1),
    "checkpointing": dict(gradient_checkpointing=True),
    "frozen": dict(freeze_ssl=True),
    "normalised-input": dict(normalize_waveform=True),
    "spec-augment": dict(
        ssl_config=dict(
            TINY_SSL,
            apply_spec_augment=True,
            mask_time_prob=0.5,
            mask_time_length=2,
            mask_feature_prob=0.3,
            mask_feature_length=2,
        )
    ),
}

#: non-persistent buffers (absent from state dicts, so only ``.to()`` moves them) the walk below must see
NON_PERSISTENT: Dict[str, Set[str]] = {
    "aasist": {"conv_time.band_pass"},
    "aasist-l": {"conv_time.band_pass"},
    "rawnet2": {"sinc.band_pass"},
    "lcnn": {"frontend.window", "frontend.fbank", "frontend.dct"},
    "xlsr_aasist": set(),
    "xlsr_conformer_tcm": set(),
    "xlsr_mamba": set(),
}

NUM_SAMPLES = 16000  # 1 s at 16 kHz: above every model's minimum length


def tiny(name: str, **overrides: Any) -> nn.Module:
    """``name`` in its small configuration, built on the CPU with a fixed seed."""
    torch.manual_seed(0)
    return build_model(name, **{**TINY_CONFIGS[name], **overrides})


def wave(batch: int = 2, device: Any = "cpu") -> torch.Tensor:
    """Noise waveforms ``(batch, NUM_SAMPLES)``, float32, amplitude ~0.1."""
    g = torch.Generator(device="cpu").manual_seed(1)
    return (0.1 * torch.randn(batch, NUM_SAMPLES, generator=g, device="cpu")).to(device)


def train_kwargs(name: str) -> Dict[str, Any]:
    """Forward options of a training step: AASIST's frequency masking on, as when training."""
    return {"freq_aug": True} if name in ("aasist", "aasist-l") else {}


def forward_backward(model: nn.Module, x: torch.Tensor, name: str) -> List[torch.Tensor]:
    """A training step (forward with the training options, cross-entropy, backward) and an eval forward.

    Returns the tensors produced: training logits ``(B, 2)``, eval logits and embedding ``(B, E)``.
    """
    labels = torch.arange(x.shape[0], device=x.device) % 2
    model.train()
    logits = model(x, **train_kwargs(name))
    F.cross_entropy(logits.float(), labels).backward()
    model.eval()
    with torch.no_grad():
        eval_logits, embedding = model(x, return_embedding=True)
    return [logits, eval_logits, embedding]


def plain_tensor_attributes(model: nn.Module) -> List[str]:
    """``module.attr`` names of tensors held as plain attributes (neither parameter nor buffer) anywhere."""
    found = []
    for module_name, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Tensor):
                found.append(f"{module_name or '<model>'}.{attr} on {value.device}")
    return found


def test_every_registered_model_has_a_tiny_config():
    assert set(TINY_CONFIGS) == set(model_names()) == set(NON_PERSISTENT)


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_forward_and_backward_create_no_tensor_off_the_input_device(name):
    model = tiny(name)
    x = wave()
    with implicit_tensors_on_meta():
        outputs = forward_backward(model, x, name)
    assert_on("cpu", *outputs)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None for g in grads)
    assert_on("cpu", *grads)


@pytest.mark.parametrize("variant", list(SSL_VARIANTS))
def test_ssl_front_end_options_create_no_tensor_off_the_input_device(variant):
    model = tiny("xlsr_mamba", **SSL_VARIANTS[variant])
    with implicit_tensors_on_meta():
        outputs = forward_backward(model, wave(), "xlsr_mamba")
    assert_on("cpu", *outputs)


def test_frequency_masking_with_a_generator_is_reproducible_under_the_guard():
    sinc = SincConv(out_channels=70, kernel_size=129)
    x = wave(batch=1)
    with implicit_tensors_on_meta():
        masked = sinc(x, mask=True, generator=torch.Generator(device="cpu").manual_seed(5))
    again = sinc(x, mask=True, generator=torch.Generator(device="cpu").manual_seed(5))
    assert masked.device.type == "cpu"
    assert torch.equal(masked, again)
    zeroed = (masked.abs().sum(dim=-1) == 0).squeeze(0)  # (70,) channels whose filter was masked
    assert 0 < int(zeroed.sum()) < 20  # a block of U{0..19} filters (11 with this seed)


def test_frequency_masking_without_a_generator_follows_the_global_cpu_rng():
    sinc = SincConv(out_channels=70, kernel_size=129)
    x = wave(batch=1)
    torch.manual_seed(11)
    with implicit_tensors_on_meta():
        first = sinc(x, mask=True)
    torch.manual_seed(11)
    assert torch.equal(first, sinc(x, mask=True))


@on_devices
@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_to_device_moves_all_state_and_forward_stays_there(name, device):
    model = tiny(name)
    assert plain_tensor_attributes(model) == [], "plain tensor attributes do not follow .to(device)"
    persistent = set(model.state_dict())
    non_persistent = {n for n, _ in model.named_buffers() if n not in persistent}
    assert non_persistent == NON_PERSISTENT[name]

    model.to(device)
    want = torch.device(device).type
    state = [*model.named_parameters(), *model.named_buffers()]
    assert [n for n, t in state if t.device.type != want] == [], f"left off {device} by .to()"
    assert plain_tensor_attributes(model) == []

    outputs = forward_backward(model, wave(device=device), name)
    assert_on(device, *outputs)
    assert all(torch.isfinite(t).all() for t in outputs)
    assert_on(device, *[p.grad for p in model.parameters()])


def test_frozen_front_end_skips_no_layer_in_training_mode():
    """A frozen front-end runs as in eval mode: its LayerDrop (``layerdrop=0.5`` here) stays off."""
    model = tiny("xlsr_mamba", freeze_ssl=True)
    x = wave()
    model.eval()
    with torch.no_grad():
        expected = model.ssl(x)
    model.train()
    with torch.no_grad():
        for _ in range(4):  # with LayerDrop on, 4 draws of 2 layers would skip one with probability 1 - 2**-8
            assert torch.equal(model.ssl(x), expected)
