"""Convert a released checkpoint (original key names) into a dpda model, strictly.

Steps: load the file safely (``torch.load(weights_only=True)``; a fairseq
checkpoint with pickled objects needs ``trust_pickle``), take its state dict
(``model`` / ``state_dict`` / ``model_state_dict`` or the mapping itself, a
``module.`` prefix stripped), split the fairseq front-end (``ssl_model.model.*``)
from the back-end, convert the front-end to Hugging Face ``Wav2Vec2Model``
names with its configuration read from the tensor shapes, map the back-end with
the format's table, build the dpda model and load both parts with
``strict=True``. Any unmapped, missing or mis-shaped key stops the import with
a message listing the first offending keys.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

import torch
import torch.nn as nn

from dpda.errors import DpdaError, PathLike
from dpda.models.published import FORMATS, PublishedFormat, check_layout

SSL_PREFIX = "ssl_model.model."


class ImportError_(DpdaError, ValueError):
    """A checkpoint that does not match the published format it was imported as."""


def _load_formats() -> None:
    """Import the per-back-end modules (each registers its formats)."""
    import importlib

    for module in ("conformer_tcm", "aasist", "mamba", "official_aasist"):
        try:
            importlib.import_module(f"dpda.models.published.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"dpda.models.published.{module}":
                raise


def published_formats() -> Dict[str, PublishedFormat]:
    """Every registered published format, by name."""
    _load_formats()
    return dict(FORMATS)


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: PathLike, trust_pickle: bool = False) -> Dict[str, torch.Tensor]:
    """The model state dict of a checkpoint file (original names, ``module.`` stripped)."""
    from dpda.models.fairseq_convert import _strip_known_prefixes, extract_state_dict, load_fairseq_checkpoint

    try:
        checkpoint = load_fairseq_checkpoint(path, trust_pickle=trust_pickle)
    except (RuntimeError, TypeError, OSError, EOFError) as e:
        raise ImportError_(f"{path}: cannot read the checkpoint: {str(e).splitlines()[0]}") from None
    try:
        state = extract_state_dict(checkpoint)
    except (KeyError, TypeError, ValueError) as e:
        raise ImportError_(f"{path}: no model state dict found ({e})") from None
    return _strip_known_prefixes(state)


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _ssl_overrides(ssl_config: Any) -> Dict[str, Any]:
    """What differs from XLS-R 300M in a front-end configuration: the ``ssl_config`` that rebuilds it.

    Only plain values (a model file is loaded with ``weights_only=True``); bookkeeping fields of
    ``transformers`` are left out; SpecAugment is off (an imported model is for inference and fine-tuning).
    """
    from dpda.models.ssl import make_wav2vec2_config

    base = make_wav2vec2_config(None).to_dict()
    skip = {"transformers_version", "architectures", "_name_or_path", "torch_dtype", "dtype", "model_type"}
    out = {k: _plain(v) for k, v in ssl_config.to_dict().items()
           if k not in skip and _plain(base.get(k, object())) != _plain(v) and isinstance(v, (int, float, str, bool, list, tuple))}
    out["apply_spec_augment"] = False
    return out


def _load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, source: str) -> None:
    try:
        check_layout(state, {k: v.shape for k, v in module.state_dict().items()}, f"the {what} does not fit")
    except (KeyError, ValueError) as e:
        raise ImportError_(f"{source}: {str(e).strip(chr(34) + chr(39))}") from None
    module.load_state_dict(state, strict=True)


def import_checkpoint(format_name: str, path: PathLike, trust_pickle: bool = False) -> Tuple[nn.Module, Dict[str, Any]]:
    """Build the dpda model of a released checkpoint; returns ``(model in eval mode, info)``.

    ``info``: ``model_name``, ``model_config`` (rebuilds the architecture with
    ``build_model``), ``crop_samples`` (the original inference window),
    ``sample_rate`` and ``provenance`` (format, file name, SHA-256, original repos).
    """
    from dpda.models import build_model
    from dpda.models.fairseq_convert import convert_fairseq_state_dict, fairseq_cfg_to_hf_config, infer_fairseq_model_cfg
    from dpda.models.ssl import _match_pos_conv_style, _pos_conv_style

    formats = published_formats()
    if format_name not in formats:
        raise ImportError_(f"unknown published format {format_name!r}; known: {', '.join(sorted(formats))}")
    fmt = formats[format_name]
    path = Path(path)
    if not path.is_file():
        raise ImportError_(f"{path}: no such checkpoint file")
    state = read_state_dict(path, trust_pickle)
    if fmt.front_end == "none":
        return _import_whole(fmt, path, state)
    ssl_state = {k[len(SSL_PREFIX):]: v for k, v in state.items() if k.startswith(SSL_PREFIX)}
    backend_state = {k: v for k, v in state.items() if not k.startswith(SSL_PREFIX)}
    if not ssl_state:
        raise ImportError_(f"{path}: no {SSL_PREFIX}* keys: not a checkpoint of an XLS-R model of {', '.join(fmt.repos)}")
    try:
        ssl_config = fairseq_cfg_to_hf_config(infer_fairseq_model_cfg(ssl_state))
    except (KeyError, ValueError) as e:
        raise ImportError_(f"{path}: the XLS-R front-end keys are not a wav2vec 2.0 state dict ({e})") from None
    config = {"ssl_config": _ssl_overrides(ssl_config), **fmt.model_config}
    model = build_model(fmt.architecture, **config)
    try:
        hf_state, _ = convert_fairseq_state_dict(ssl_state, _pos_conv_style(model.ssl.model), strict=True,
                                                 drop_mask_emb=not hasattr(model.ssl.model, "masked_spec_embed"))
    except (KeyError, ValueError) as e:
        raise ImportError_(f"{path}: XLS-R front-end: {e}") from None
    _load_strict(model.ssl.model, _match_pos_conv_style(hf_state, _pos_conv_style(model.ssl.model)),
                 "XLS-R front-end", str(path))
    try:
        mapped = fmt.map_backend(backend_state)
    except (KeyError, ValueError) as e:
        raise ImportError_(f"{path}: the back-end is not {fmt.name}'s: {str(e).strip(chr(34) + chr(39))}") from None
    _load_strict(model.backend, mapped, f"{fmt.architecture} back-end", str(path))
    return model.eval(), _info(fmt, path, config)


def _info(fmt: PublishedFormat, path: Path, config: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "model_name": fmt.architecture,
        "model_config": config,
        "sample_rate": 16000,
        "crop_samples": fmt.crop_samples,
        "provenance": {"format": fmt.name, "file": path.name, "sha256": file_sha256(path), "repos": list(fmt.repos)},
    }


def _import_whole(fmt: PublishedFormat, path: Path, state: Dict[str, torch.Tensor]) -> Tuple[nn.Module, Dict[str, Any]]:
    """A format without an XLS-R front-end: the whole state dict maps onto the model."""
    from dpda.models import build_model

    config = dict(fmt.model_config)
    model = build_model(fmt.architecture, **config)
    try:
        mapped = fmt.map_backend(state)
    except (KeyError, ValueError) as e:
        raise ImportError_(f"{path}: not a {fmt.name} checkpoint: {e}") from None
    _load_strict(model, mapped, f"{fmt.architecture} model", str(path))
    return model.eval(), _info(fmt, path, config)
