"""The torch side of scoring: a model on a device, fed batches of windows.

Score convention
    Every dpda model maps ``(B, T)`` float32 waveforms at its sample rate
    (16 kHz) to logits ``(B, 2)`` with class 1 = bona fide. The score of an
    input window is ``logits[:, 1]`` (higher = more bona fide), which is what
    the official AASIST scoring writes; the EER threshold and the calibration
    stored in a model card refer to this score.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from dpda.audio import AASIST_NUM_SAMPLES, load_audio
from dpda.devices import DeviceError, place_rank
from dpda.errors import PathLike
from dpda.inference.card import ModelCard, load_model_card
from dpda.inference.errors import ScoringError
from dpda.inference.windows import WindowSpec, score_windows
from dpda.models import DEFAULT_SAMPLE_RATE


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """The device to score on: ``"auto"`` (or None) is CUDA when available, else the CPU.

    Raises :class:`ScoringError` for a name torch does not know, for CUDA on a
    machine without a visible GPU and for ``cuda:N`` beyond the visible GPUs
    (instead of "invalid device ordinal" from deep inside CUDA). The rules are
    :func:`dpda.devices.place_rank`'s for one process.
    """
    try:
        return place_rank("auto" if device is None else str(device)).device
    except DeviceError as e:
        raise ScoringError(f"--device: {e}") from None


class Scorer:
    """Batched scoring of waveforms with a countermeasure model.

    Args:
        model: maps ``(B, T)`` float32 to logits ``(B, 2)`` (or a tuple whose
            first element is the logits); class 1 = bona fide.
        sample_rate: rate in Hz the model expects (audio is resampled to it).
        crop_samples: window length in samples (the training crop).
        mode: ``"fixed"`` (first window, repeat-padded) or ``"full"`` (mean of
            ``logit[:, 1]`` over sliding windows); see :mod:`dpda.inference.windows`.
        hop: hop between sliding windows in samples (``"full"`` mode only;
            default ``crop_samples``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        batch_size: windows per forward pass.
        amp: autocast the forward pass (float16 on CUDA, bfloat16 on CPU);
            scores are returned as float32/float64 all the same.
    """

    def __init__(
        self,
        model: nn.Module,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        crop_samples: int = AASIST_NUM_SAMPLES,
        mode: str = "fixed",
        hop: Optional[int] = None,
        device: Union[str, torch.device, None] = "cpu",
        batch_size: int = 32,
        amp: bool = False,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.spec = WindowSpec(int(crop_samples), mode, None if hop is None else int(hop))
        self.sample_rate = int(sample_rate)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.amp = bool(amp)
        self.card: Optional[ModelCard] = None  # set by from_checkpoint
        self.info: Dict[str, Any] = {}  # the card as a dict (threshold, calibration, sample_rate, ...)
        self.forward_windows = 0  # windows run through the model (for tests and statistics)

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def crop_samples(self) -> int:
        return self.spec.crop_samples

    @property
    def hop(self) -> Optional[int]:
        return self.spec.hop

    @classmethod
    def from_checkpoint(
        cls,
        path: PathLike,
        *,
        mode: str = "fixed",
        hop: Optional[int] = None,
        device: Union[str, torch.device, None] = "cpu",
        batch_size: int = 32,
        amp: bool = False,
    ) -> "Scorer":
        """A scorer for a model file or run directory; its model card is ``.card`` (as a dict, ``.info``)."""
        model, card = load_model_card(path, device="cpu")
        scorer = cls(
            model,
            sample_rate=card.sample_rate,
            crop_samples=card.crop_samples,
            mode=mode,
            hop=hop,
            device=device,
            batch_size=batch_size,
            amp=amp,
        )
        scorer.card = card
        scorer.info = card.as_dict()
        return scorer

    def describe(self) -> str:
        """One line identifying the scoring setup (written in partial files, checked on resume)."""
        model = self.info.get("path") or type(self.model).__name__
        if self.info.get("path"):
            model = os.path.abspath(model)
        return f"model={model} mode={self.mode} crop={self.crop_samples} hop={self.hop} sr={self.sample_rate} amp={self.amp}"

    def windows(self, waveform: np.ndarray) -> np.ndarray:
        """``(num_windows, crop_samples)`` inputs of a waveform at ``sample_rate``."""
        return self.spec(waveform)

    # -- forward passes -------------------------------------------------------------------------

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @torch.no_grad()
    def forward(self, batch: np.ndarray) -> np.ndarray:
        """``logit[:, 1]`` of a ``(B, crop_samples)`` batch, as float64."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, non_blocking=True)
        with self._autocast():
            out = self.model(x)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        if logits.ndim != 2 or logits.shape[0] != x.shape[0] or logits.shape[1] < 2:
            raise ScoringError(f"model returned shape {tuple(logits.shape)}; expected logits (B, 2)")
        self.forward_windows += int(x.shape[0])
        return logits[:, 1].float().cpu().numpy().astype(np.float64)

    def score_windows(
        self, items: Iterable[Tuple[Any, np.ndarray]], on_batch: Optional[Callable[[int], None]] = None
    ) -> Iterator[Tuple[Any, float]]:
        """Score ``(key, windows)`` pairs (windows from :meth:`windows`); yield ``(key, score)`` in order.

        Windows of consecutive items share batches of ``batch_size`` windows
        (:func:`dpda.inference.windows.score_windows`); an item is yielded as
        soon as all its windows are scored. ``on_batch(n)`` is called after
        each forward pass of ``n`` windows (progress displays).
        """
        return score_windows(self.forward, items, batch_size=self.batch_size, crop_samples=self.crop_samples,
                             on_batch=on_batch)

    def score_waveforms(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Scores (float64) of waveforms already at ``sample_rate``."""
        out = [s for _, s in self.score_windows((i, self.windows(w)) for i, w in enumerate(waveforms))]
        return np.asarray(out, dtype=np.float64)

    def score_file(self, path: PathLike) -> float:
        """Score of one audio file (any format libsndfile reads, resampled); raises AudioError."""
        return float(self.score_waveforms([load_audio(path, self.sample_rate)])[0])


__all__ = ["Scorer", "resolve_device"]
