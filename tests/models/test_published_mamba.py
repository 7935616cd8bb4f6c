"""Published XLSR-Mamba / DPDA-GA Mamba back-end: strict import under the original names and output parity.

The reference (``published/mamba_backend_ref.{npz,json}``) holds the original
back-end's state dict and its outputs on fixed SSL features; see its README.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch

from dpda.models import build_model
from dpda.models.mamba import BiMambaBackend
from dpda.models.published import FORMATS
from dpda.models.published.mamba import MODEL_CONFIG, map_backend, original_shapes
from tests.models.test_ssl import TINY_SSL

TOL = 1e-5


@pytest.fixture(scope="module")
def ref(reference_dir: Path) -> Dict[str, np.ndarray]:
    z = np.load(reference_dir / "published" / "mamba_backend_ref.npz")
    return {k: np.array(z[k]) for k in z.files}


@pytest.fixture(scope="module")
def meta(reference_dir: Path) -> dict:
    return json.loads((reference_dir / "published" / "mamba_backend_ref.json").read_text())


def _state(ref: Dict[str, np.ndarray]) -> Dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in ref.items() if not k.startswith("ref__")}


def _max_diff(a: torch.Tensor, b: np.ndarray) -> float:
    b = torch.from_numpy(b)
    assert a.shape == b.shape
    return (a.float() - b).abs().max().item()


def test_formats_registered():
    xm, dg = FORMATS["xlsr_mamba"], FORMATS["dpda_ga-mamba"]
    assert xm.repos == ("swagshaw/XLSR-Mamba",) and dg.repos == ("ductuantruong/dpda_ga",)
    assert xm.architecture == dg.architecture == "xlsr_mamba"
    assert (xm.crop_samples, dg.crop_samples) == (64600, 66800)
    assert xm.map_backend is map_backend and dg.map_backend is map_backend
    assert xm.model_config == dg.model_config == MODEL_CONFIG


def test_original_key_table_matches_reference(ref, meta):
    keys = [(e["key"], tuple(e["shape"])) for e in meta["state_dict"]["keys"]]
    assert list(original_shapes().items()) == keys  # every key, shape and the original order
    assert [k for k in ref if not k.startswith("ref__")] == [k for k, _ in keys]
    hp = meta["hyper_parameters"]
    assert (MODEL_CONFIG["d_model"], MODEL_CONFIG["n_layers"]) == (hp["emb_size"], hp["n_layer_per_direction"])
    assert (MODEL_CONFIG["d_state"], MODEL_CONFIG["d_conv"], MODEL_CONFIG["expand"]) == (
        hp["d_state"],
        hp["d_conv"],
        hp["expand"],
    )
    assert MODEL_CONFIG["dt_rank"] == hp["dt_rank"] and MODEL_CONFIG["norm_eps"] == hp["norm_epsilon"]
    assert MODEL_CONFIG["residual_in_fp32"] == hp["residual_in_fp32"] and MODEL_CONFIG["dropout"] == hp["dropout"]


def test_reference_loads_strictly_and_reproduces_outputs(ref):
    torch.manual_seed(0)
    backend = BiMambaBackend(**FORMATS["xlsr_mamba"].model_config)
    mapped = map_backend(_state(ref))
    assert set(mapped) == set(backend.state_dict())
    backend.load_state_dict(mapped, strict=True)
    backend.eval()
    feats = torch.from_numpy(ref["ref__input_ssl_features"])
    with torch.no_grad():
        x = backend.selu(backend.first_bn(backend.proj(feats).unsqueeze(1)).squeeze(1))
        h_f, h_b = backend.columns(x)
        pooled = torch.cat([backend.pool_forward(h_f), backend.pool_backward(h_b)], dim=-1)
        logits, emb = backend(feats)
    assert _max_diff(x, ref["ref__mamba_input"]) <= TOL
    assert _max_diff(pooled, ref["ref__pooled_fb_concat"]) <= TOL
    assert _max_diff(emb, ref["ref__embedding"]) <= TOL
    assert _max_diff(logits, ref["ref__logits"]) <= TOL


def test_full_model_takes_the_format_config(ref):
    model = build_model("xlsr_mamba", ssl_config=TINY_SSL, **FORMATS["dpda_ga-mamba"].model_config)
    expected = {k: tuple(v.shape) for k, v in map_backend(_state(ref)).items() if k != "proj.weight"}
    got = {k: tuple(v.shape) for k, v in model.backend.state_dict().items() if k != "proj.weight"}
    assert got == expected and "proj.weight" in model.backend.state_dict()


def test_renamed_and_misshaped_keys_are_named(ref):
    state = _state(ref)
    renamed = dict(state)
    renamed["conformer.norm_f.gain"] = renamed.pop("conformer.norm_f.weight")
    with pytest.raises(KeyError) as e:
        map_backend(renamed)
    assert "conformer.norm_f.gain" in str(e.value) and "conformer.norm_f.weight" in str(e.value)

    wrong = dict(state)
    key = "conformer.backward_layers.2.mixer.x_proj.weight"
    wrong[key] = wrong[key][:-1]
    with pytest.raises(ValueError, match=r"conformer\.backward_layers\.2\.mixer\.x_proj\.weight"):
        map_backend(wrong)

    with pytest.raises(KeyError, match="ssl_model"):
        map_backend({**state, "ssl_model.model.mask_emb": torch.zeros(1024)})
