"""clovaai/aasist's official AASIST and AASIST-L weights (``models/weights/AASIST.pth``, ``AASIST-L.pth``).

They are plain state dicts of the whole raw-waveform model under the original
module names, which dpda's :class:`~dpda.models.aasist.AASIST` keeps: the keys
load unchanged (strictly; shapes checked by the importer). The official code
scores the first 64600 samples (repeat-padded).
"""

from __future__ import annotations

from typing import Dict, Mapping

import torch

from dpda.audio.crop import AASIST_NUM_SAMPLES
from dpda.models.published import PublishedFormat, register_format


def map_whole_model(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The official state dict as it is (a ``state_dict`` wrapper is unwrapped by the importer)."""
    return dict(state)


for _name, _notes in (("aasist", "AASIST (Jung et al., ICASSP 2022), official weights"),
                      ("aasist-l", "AASIST-L (85k parameters), official weights")):
    register_format(PublishedFormat(
        name=f"clovaai-{_name}", architecture=_name, repos=("clovaai/aasist",), crop_samples=AASIST_NUM_SAMPLES,
        map_backend=map_whole_model, notes=_notes, front_end="none",
    ))
