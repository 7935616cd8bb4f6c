"""Published checkpoints of the field's XLS-R countermeasures, under their original key names.

A released checkpoint of the DPDA paper code (ductuantruong/dpda_ga), tcm_add,
SSL_Anti-spoofing or XLSR-Mamba is the state dict of the repository's full
``Model``: the fairseq wav2vec 2.0 front-end under ``ssl_model.model.*`` and the
back-end at the top level under the repository's own module names. Each
:class:`PublishedFormat` maps the back-end keys onto a dpda architecture's
``model.backend``; the front-end goes through
:mod:`dpda.models.fairseq_convert` (no fairseq needed).

One module per back-end registers its formats (``conformer_tcm``, ``aasist``,
``mamba``, and ``official_aasist`` for clovaai/aasist's raw-waveform models);
:data:`FORMATS` lists them by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

import torch

BackendMap = Callable[[Mapping[str, torch.Tensor]], Dict[str, torch.Tensor]]


@dataclass(frozen=True)
class PublishedFormat:
    """How one published checkpoint layout becomes a dpda model.

    Attributes:
        name: the format's name on the command line (``dpda import NAME ...``).
        architecture: the dpda model registry name it imports into.
        repos: the original repositories (owner/name) whose checkpoints have this layout.
        crop_samples: the inference window the original code used (samples at 16 kHz).
        map_backend: original back-end state dict (keys without ``ssl_model.model.``) -> the state dict of
            ``model.backend`` of ``architecture``; raises ``KeyError``/``ValueError`` naming offending keys.
        model_config: keyword options of ``build_model(architecture, ...)`` that reproduce the original.
        notes: one line for ``dpda models list``.
        front_end: ``"xlsr"`` (the checkpoint holds a fairseq XLS-R under ``ssl_model.model.*`` and
            ``map_backend`` maps the rest onto ``model.backend``) or ``"none"`` (``map_backend`` maps the
            whole state dict onto the model, e.g. the raw-waveform AASIST).
    """

    name: str
    architecture: str
    repos: Tuple[str, ...]
    crop_samples: int
    map_backend: BackendMap
    model_config: Dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    front_end: str = "xlsr"


FORMATS: Dict[str, PublishedFormat] = {}


def register_format(fmt: PublishedFormat) -> PublishedFormat:
    """Add a format to :data:`FORMATS` (names are unique)."""
    if fmt.name in FORMATS:
        raise ValueError(f"published format {fmt.name!r} is registered twice")
    FORMATS[fmt.name] = fmt
    return fmt


#: keys listed in an error message before "... and N more"
LISTED = 8


def listing(keys: List[str]) -> str:
    """The first :data:`LISTED` keys, comma-separated, and how many more there are."""
    shown = ", ".join(keys[:LISTED])
    return shown + (f" ... and {len(keys) - LISTED} more" if len(keys) > LISTED else "")


def check_layout(state: Mapping[str, Any], expected: Mapping[str, Sequence[int]], what: str) -> None:
    """``state`` has exactly the keys of ``expected``, each a tensor of that shape.

    Raises:
        KeyError: unknown keys (listed first, with a hint for front-end or ``module.`` prefixes) or missing keys.
        ValueError: values that are not tensors, or ``key (shape) (expected (shape))`` for wrong shapes.
    """
    unknown = [k for k in state if k not in expected]
    missing = [k for k in expected if k not in state]
    if unknown or missing:
        parts = []
        if unknown:
            hint = ""
            if any(k.startswith("ssl_model.") for k in unknown):
                hint = " (the XLS-R front-end keys ssl_model.model.* must be split off first)"
            elif any(k.startswith("module.") for k in unknown):
                hint = " (strip the DataParallel 'module.' prefix first)"
            parts.append(f"unknown key(s) {listing(unknown)}{hint}")
        if missing:
            parts.append(f"missing key(s) {listing(missing)}")
        raise KeyError(f"{what}: " + "; ".join(parts))
    not_tensors = [k for k in expected if not isinstance(state[k], torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{what}: not a tensor: {listing(not_tensors)}")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(shape)})"
             for k, shape in expected.items() if tuple(state[k].shape) != tuple(shape)]
    if wrong:
        raise ValueError(f"{what}: wrong shape(s): {listing(wrong)}")
