"""Published XLS-R + AASIST checkpoints (SSL_Anti-spoofing, dpda_ga): original key names, output parity.

The reference files (``published/aasist_backend_ref.{npz,json}``) hold the back-end state dict of the
original ``Model`` under its own names, a random SSL-feature input and the original outputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dpda.models import build_model
from dpda.models.published import FORMATS
from dpda.models.published.aasist import expected_backend_shapes, map_backend
from dpda.models.ssl import XLSR_300M_HF_CONFIG, SSLAASISTBackend

ATOL = 1e-5
NAMES = ("ssl_aasist", "dpda_ga-aasist")


@pytest.fixture(scope="module")
def meta(reference_dir):
    return json.loads((reference_dir / "published" / "aasist_backend_ref.json").read_text())


@pytest.fixture(scope="module")
def ref(reference_dir):
    with np.load(reference_dir / "published" / "aasist_backend_ref.npz") as z:
        return {k: np.array(z[k]) for k in z.files}


@pytest.fixture(scope="module")
def original_state(ref):
    return {k: torch.from_numpy(v) for k, v in ref.items() if not k.startswith("ref__")}


def _backend(meta, name="ssl_aasist") -> SSLAASISTBackend:
    return SSLAASISTBackend(in_dim=meta["hyper_parameters"]["ssl_out_dim"], **FORMATS[name].model_config)


def _diff(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().double().numpy() - b.astype(np.float64)).max())


@pytest.fixture(scope="module")
def run(meta, ref, original_state):
    """Reference weights loaded strictly through map_backend; eval forward with encoder hooks."""
    backend = _backend(meta)
    backend.load_state_dict(map_backend(original_state), strict=True)
    backend.eval()
    seen = {}

    def hook(_module, inputs, output):
        seen["encoder_input"] = inputs[0]
        seen["encoder_output"] = output

    handle = backend.encoder.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits, embedding = backend(torch.from_numpy(ref["ref__input_ssl_features"]))
    finally:
        handle.remove()
    return {"backend": backend, "logits": logits, "last_hidden": embedding, **seen}


def test_formats_registered(meta):
    ssl, dpda = FORMATS["ssl_aasist"], FORMATS["dpda_ga-aasist"]
    assert ssl.repos == (meta["source"]["repo"],)
    assert dpda.repos == (meta["cross_checked_copy"]["repo"],)
    for fmt in (ssl, dpda):
        assert fmt.architecture == "xlsr_aasist"
        assert fmt.map_backend is map_backend
    assert dpda.model_config == ssl.model_config  # same back-end code (dpda_ga copies it unchanged)


def test_crop_windows(meta, ref):
    """SSL_Anti-spoofing's window gives the reference's T frames; dpda_ga's is longer."""

    def frames(n: int) -> int:
        for k, s in zip(XLSR_300M_HF_CONFIG["conv_kernel"], XLSR_300M_HF_CONFIG["conv_stride"]):
            n = (n - k) // s + 1
        return n

    crop = FORMATS["ssl_aasist"].crop_samples
    assert f"{crop}-sample" in meta["full_model"]["frontend"]
    assert frames(crop) == ref["ref__input_ssl_features"].shape[1]
    assert FORMATS["dpda_ga-aasist"].crop_samples > crop


def test_model_config_matches_hyper_parameters(meta):
    hp = meta["hyper_parameters"]
    cfg = FORMATS["ssl_aasist"].model_config
    assert cfg["proj_dim"] == hp["ll_out"] == hp["filts"][0]
    assert [list(f) for f in cfg["filts"]] == hp["filts"][1:]
    assert list(cfg["gat_dims"]) == hp["gat_dims"]
    assert list(cfg["pool_ratios"]) == hp["pool_ratios"]
    assert list(cfg["temperatures"]) == hp["temperatures"]
    assert cfg["dropout"] == hp["dropouts"]["drop"]
    assert cfg["dropout_way"] == hp["dropouts"]["drop_way"]
    assert cfg["pool_dropout"] == hp["dropouts"]["graphpool_drop"]
    backend = _backend(meta)
    assert tuple(backend.pos_S.shape) == tuple(hp["pos_S_shape"])
    assert len(backend.encoder) == hp["n_residual_blocks"]


def test_keys_and_shapes_are_the_original_ones(meta, original_state):
    listed = {e["key"]: tuple(e["shape"]) for e in meta["state_dict"]["keys"]}
    assert len(listed) == meta["state_dict"]["n_keys"]
    assert {k: tuple(v.shape) for k, v in original_state.items()} == listed
    assert {k: tuple(v) for k, v in expected_backend_shapes().items()} == listed
    mapped = map_backend(original_state)
    assert set(mapped) == set(listed)
    assert all(mapped[k] is original_state[k] for k in mapped)  # identity: no copies, no reshapes
    assert sum(v.numel() for v in mapped.values()) == meta["state_dict"]["n_elements"]


def test_backend_of_full_model_takes_the_mapped_state(meta, original_state):
    """``build_model("xlsr_aasist", **model_config).backend`` has the original layout (built on meta)."""
    with torch.device("meta"):
        model = build_model(FORMATS["dpda_ga-aasist"].architecture, **FORMATS["dpda_ga-aasist"].model_config)
    own = {k: tuple(v.shape) for k, v in model.backend.state_dict().items()}
    assert own == {k: tuple(v.shape) for k, v in map_backend(original_state).items()}


def test_logits_parity(run, ref):
    assert tuple(run["logits"].shape) == ref["ref__logits"].shape
    assert _diff(run["logits"], ref["ref__logits"]) <= ATOL


def test_intermediate_parity(run, ref):
    for name in ("encoder_input", "encoder_output", "last_hidden"):
        assert tuple(run[name].shape) == ref[f"ref__{name}"].shape, name
        assert _diff(run[name], ref[f"ref__{name}"]) <= ATOL, name


def test_float64_parity(meta, ref, original_state):
    backend = _backend(meta, "dpda_ga-aasist")
    backend.load_state_dict(map_backend(original_state), strict=True)
    backend.double().eval()
    with torch.no_grad():
        logits, _ = backend(torch.from_numpy(ref["ref__input_ssl_features"]).double())
    assert _diff(logits, ref["ref__logits_f64"]) <= 1e-12  # same maths in fp64: rounding only


def test_renamed_key_is_named(original_state):
    state = dict(original_state)
    state["GAT_layer_S.att_weights"] = state.pop("GAT_layer_S.att_weight")
    with pytest.raises(KeyError) as info:
        map_backend(state)
    message = str(info.value)
    assert "unknown key(s) GAT_layer_S.att_weights" in message
    assert "missing key(s) GAT_layer_S.att_weight" in message


def test_front_end_keys_are_rejected(original_state):
    state = dict(original_state)
    state["ssl_model.model.mask_emb"] = torch.zeros(1024)
    with pytest.raises(KeyError, match=r"ssl_model\.model\.mask_emb"):
        map_backend(state)


def test_wrong_shape_is_named(original_state):
    state = dict(original_state)
    good = tuple(state["pos_S"].shape)
    state["pos_S"] = state["pos_S"][:, :-1]
    bad = tuple(state["pos_S"].shape)
    with pytest.raises(ValueError) as info:
        map_backend(state)
    assert f"pos_S {bad} (expected {good})" in str(info.value)
    assert "LL.weight" not in str(info.value)
