"""XLS-R + AASIST back-end (SSL-AASIST, Tak et al. 2022) under its original key names.

The released SSL-AASIST models (TakHemlata/SSL_Anti-spoofing ``model.py:Model``,
LA and DF checkpoints alike) and the DPDA paper's ``main.py --model aasist``
(ductuantruong/dpda_ga ``nets/aasist.py``, the same back-end code) store the
back-end at the top level of the state dict: ``LL.``, ``first_bn.``,
``first_bn1.``, ``encoder.<i>.0.``, ``attention.``, ``pos_S``, ``master1``,
``master2``, ``GAT_layer_{S,T}.``, ``HtrgGAT_layer_ST{11,12,21,22}.``,
``pool_{S,T,hS1,hT1,hS2,hT2}.`` and ``out_layer.`` -- 245 entries including the
BatchNorm ``num_batches_tracked`` counters.

:class:`~dpda.models.ssl.SSLAASISTBackend` (``model.backend`` of
``xlsr_aasist``) uses exactly these names and shapes, so the mapping is the
identity; :func:`map_backend` only checks, strictly in both directions, that
the checkpoint has this layout. Numerically the dpda back-end reproduces the
original forward pass (eval mode): LL -> max-pool (3, 3) -> ``first_bn`` + SELU
-> six residual blocks without pooling, ``bn1`` computed but not applied ->
``first_bn1`` + SELU -> 1x1-conv attention, spectral pooling (softmax over
time, + ``pos_S``) and temporal pooling (softmax over frequency) -> the AASIST
graph back-end with the un-expanded stack nodes.

Inference windows of the original code (16 kHz samples, shorter files are
repeat-padded): SSL_Anti-spoofing ``data_utils_SSL.py`` cuts 64600 samples,
dpda_ga ``data_utils.py`` 66800.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import torch

from dpda.audio.crop import AASIST_NUM_SAMPLES, DPDA_NUM_SAMPLES
from dpda.models.published import PublishedFormat, check_layout, register_format

__all__ = ["SSL_AASIST_BACKEND_CONFIG", "expected_backend_shapes", "map_backend"]

#: keyword options of :class:`~dpda.models.ssl.SSLAASISTBackend` (and of ``build_model("xlsr_aasist")``)
#: that reproduce the back-end hard-coded in SSL_Anti-spoofing's ``Model.__init__`` (``in_dim`` comes from the
#: front-end: 1024 for XLS-R 300M)
SSL_AASIST_BACKEND_CONFIG: Dict[str, Any] = {
    "proj_dim": 128,
    "filts": [[1, 32], [32, 32], [32, 64], [64, 64]],
    "attention_dim": 128,
    "gat_dims": [64, 32],
    "pool_ratios": [0.5, 0.5, 0.5, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
    "num_classes": 2,
    "dropout": 0.5,
    "dropout_way": 0.2,
    "pool_dropout": 0.3,
}

_SHAPES: Dict[str, torch.Size] = {}


def _config() -> Dict[str, Any]:
    return {k: (list(v) if isinstance(v, list) else v) for k, v in SSL_AASIST_BACKEND_CONFIG.items()}


def expected_backend_shapes() -> Dict[str, torch.Size]:
    """Original back-end key -> shape (XLS-R 300M features, 1024-dim), in dpda's state-dict order.

    Read off :class:`~dpda.models.ssl.SSLAASISTBackend` built on the meta device (no memory, no init cost).
    """
    if not _SHAPES:
        from dpda.models.ssl import SSLAASISTBackend

        with torch.device("meta"):
            backend = SSLAASISTBackend(in_dim=1024, **_config())
        _SHAPES.update({k: v.shape for k, v in backend.state_dict().items()})
    return dict(_SHAPES)


def map_backend(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """SSL-AASIST back-end state dict (original names, no ``ssl_model.model.`` keys) -> ``model.backend``'s.

    The names are the same on both sides; the result holds the same tensors in dpda's key order.

    Raises:
        KeyError: keys that the original back-end does not have (listed first) or that are missing.
        ValueError: values that are not tensors or whose shapes differ from the original ones.
    """
    expected = expected_backend_shapes()
    check_layout(state, expected, "SSL-AASIST back-end")
    return {k: state[k] for k in expected}


register_format(
    PublishedFormat(
        name="ssl_aasist",
        architecture="xlsr_aasist",
        repos=("TakHemlata/SSL_Anti-spoofing",),
        crop_samples=AASIST_NUM_SAMPLES,
        map_backend=map_backend,
        model_config=_config(),
        notes="SSL-AASIST (Tak et al. 2022), LA and DF models: XLS-R 300M + AASIST, 64600-sample window",
    )
)

register_format(
    PublishedFormat(
        name="dpda_ga-aasist",
        architecture="xlsr_aasist",
        repos=("ductuantruong/dpda_ga",),
        crop_samples=DPDA_NUM_SAMPLES,
        map_backend=map_backend,
        model_config=_config(),
        notes="DPDA-GA paper code, --model aasist: XLS-R 300M + AASIST (SSL-AASIST layout), 66800-sample window",
    )
)
