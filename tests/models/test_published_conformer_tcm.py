"""The released XLS-R + Conformer-TCM back-end (tcm_add / dpda_ga) under its original key names.

Reads ``published/conformer_tcm_backend_ref.{npz,json}`` from the reference
directory: the original back-end's state dict, an input of SSL features, and
the original code's logits and CLS embedding for it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch

from dpda.models import build_model
from dpda.models.conformer import ConformerTCMBackend
from dpda.models.published import FORMATS
from dpda.models.published.conformer_tcm import map_backend

FORMAT_NAMES = ("dpda_ga-conformer_tcm", "tcm_add")


@pytest.fixture(scope="module")
def ref(reference_dir: Path) -> Dict[str, np.ndarray]:
    path = reference_dir / "published" / "conformer_tcm_backend_ref.npz"
    if not path.is_file():
        pytest.fail(f"{path} is missing from the reference directory")
    with np.load(path) as z:
        return {k: np.array(z[k]) for k in z.files}


@pytest.fixture(scope="module")
def meta(reference_dir: Path) -> dict:
    return json.loads((reference_dir / "published" / "conformer_tcm_backend_ref.json").read_text())


def _state(ref: Dict[str, np.ndarray]) -> Dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v.copy()) for k, v in ref.items() if not k.startswith("ref__")}


def _backend(name: str, in_dim: int) -> ConformerTCMBackend:
    return ConformerTCMBackend(in_dim=in_dim, **FORMATS[name].model_config)


def test_formats_registered(meta):
    for name, repo in zip(FORMAT_NAMES, (meta["cross_checked_copy"]["repo"], meta["source"]["repo"])):
        fmt = FORMATS[name]
        assert fmt.architecture == "xlsr_conformer_tcm" and fmt.repos == (repo,)
        assert fmt.crop_samples == 66800 and fmt.map_backend is map_backend
        hp = meta["hyper_parameters"]
        cfg = fmt.model_config
        assert (cfg["dim"], cfg["heads"], cfg["kernel_size"], cfg["n_blocks"], cfg["ff_mult"]) == (
            hp["emb_size"], hp["heads"], hp["kernel_size"], hp["num_encoders"], hp["ff_mult"]
        )
        assert cfg["conv_expansion"] == hp["conv_expansion_factor"] and cfg["pos_emb_rows"] == hp["positional_emb_rows"]
    # the dpda architecture's own back-end takes the same options
    with torch.device("meta"):
        model = build_model("xlsr_conformer_tcm", **FORMATS["tcm_add"].model_config)
    assert isinstance(model.backend, ConformerTCMBackend)


def test_keys_match_the_json(ref, meta):
    listed = [(e["key"], tuple(e["shape"])) for e in meta["state_dict"]["keys"]]
    state = _state(ref)
    assert [(k, tuple(state[k].shape)) for k, _ in listed] == listed
    mapped = map_backend(state)
    assert len(mapped) == len(state) == meta["state_dict"]["n_keys"]
    target = _backend("tcm_add", meta["hyper_parameters"]["ssl_out_dim"]).state_dict()
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in target.items()}


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_logits_match_the_original(ref, meta, name):
    torch.manual_seed(0)
    backend = _backend(name, ref["ref__input_ssl_features"].shape[-1])
    backend.load_state_dict(FORMATS[name].map_backend(_state(ref)), strict=True)
    backend.eval()
    with torch.no_grad():
        logits, emb = backend(torch.from_numpy(ref["ref__input_ssl_features"]))
    want = torch.from_numpy(ref["ref__logits"])
    assert logits.shape == want.shape
    assert (logits - want).abs().max().item() <= 1e-5
    assert (emb - torch.from_numpy(ref["ref__embedding"])).abs().max().item() <= 1e-5
    assert (logits.double() - torch.from_numpy(ref["ref__logits_f64"])).abs().max().item() <= 1e-5


def test_renamed_key_is_named(ref):
    state = _state(ref)
    victim = next(k for k in state if k.endswith("attn.fn.ht_norm.weight"))
    renamed = victim.replace("ht_norm", "ht_nrm")
    state[renamed] = state.pop(victim)
    with pytest.raises(KeyError, match=re.escape(renamed)):
        map_backend(state)
    del state[renamed]
    with pytest.raises(KeyError, match=re.escape(victim)):
        map_backend(state)


@pytest.mark.parametrize("suffix", ["attn.fn.qkv.weight", "conv.net.4.conv.weight", "conformer.class_token"])
def test_wrong_shape_is_named(ref, suffix):
    state = _state(ref)
    victim = next(k for k in state if k.endswith(suffix))
    state[victim] = state[victim][..., :-1].clone()
    with pytest.raises(ValueError, match=re.escape(victim)) as err:
        map_backend(state)
    assert str(err.value).count("conformer.") == 1  # only that key is blamed


def test_frontend_and_extra_keys_are_rejected(ref):
    state = _state(ref)
    state["ssl_model.model.mask_emb"] = torch.zeros(1024)
    with pytest.raises(KeyError, match=re.escape("ssl_model.model.mask_emb")):
        map_backend(state)
    state = _state(ref)
    extra = "conformer.encoder_blocks.0.attn.fn.qkv.bias"
    state[extra] = torch.zeros(state["conformer.encoder_blocks.0.attn.fn.qkv.weight"].shape[0])
    with pytest.raises(KeyError, match=re.escape(extra)):
        map_backend(state)
