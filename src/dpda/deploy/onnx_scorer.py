"""Scoring with an exported ONNX model: numpy + onnxruntime, no torch.

An ONNX file written by ``dpda export`` has one input ``waveform`` of shape
``(batch, samples)`` float32 at the model's rate (both axes variable) and one
output ``logits`` of shape ``(batch, 2)``, class 1 = bona fide; the score of a
window is ``logits[:, 1]``, as for the PyTorch model. Its metadata
(:data:`INFO_KEY`) holds the checkpoint's ``info``: ``sample_rate`` (Hz),
``crop_samples`` (the window), ``threshold``, ``calibration``, the model
card's fields.

:class:`OnnxScorer` offers the part of :class:`dpda.inference.Scorer` that
``dpda detect`` and ``dpda serve`` use (``sample_rate``, ``crop_samples``,
``mode``, ``hop``, ``batch_size``, ``info``, ``windows``, ``forward``,
``score_windows``), with the same windows (:func:`dpda.audio.pad_or_crop`,
:func:`dpda.audio.sliding_windows`) and the same mean of ``logit[:, 1]``.
:func:`load_scorer` picks it for ``*.onnx`` and the PyTorch scorer otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np

from dpda.audio import pad_or_crop, sliding_windows
from dpda.errors import DpdaError, PathLike

#: ONNX metadata key holding the JSON of the model's info (written by dpda export)
INFO_KEY = "dpda.info"
INPUT_NAME = "waveform"
OUTPUT_NAME = "logits"
MODES = ("fixed", "full")


class OnnxModelError(DpdaError, ValueError):
    """An ONNX file cannot be used (missing, not ONNX, not written by dpda export, onnxruntime missing)."""


def is_onnx_path(path: PathLike) -> bool:
    """Whether ``path`` names an ONNX model (by its ``.onnx`` suffix)."""
    return str(path).lower().endswith(".onnx")


def read_onnx_info(session: Any, path: PathLike) -> Dict[str, Any]:
    """The ``info`` dict stored by ``dpda export`` in an onnxruntime session's model metadata."""
    meta = session.get_modelmeta().custom_metadata_map
    if INFO_KEY not in meta:
        raise OnnxModelError(f"{path}: ONNX file has no {INFO_KEY!r} metadata; was it written by 'dpda export'?")
    try:
        info = json.loads(meta[INFO_KEY])
    except ValueError as e:
        raise OnnxModelError(f"{path}: {INFO_KEY!r} metadata is not valid JSON ({e})") from None
    for key in ("sample_rate", "crop_samples"):
        if not isinstance(info.get(key), int) or info[key] <= 0:
            raise OnnxModelError(f"{path}: metadata {INFO_KEY!r} needs a positive integer {key!r}, got {info.get(key)!r}")
    return info


class OnnxScorer:
    """Batched scoring of waveforms with an ONNX model on the CPU (onnxruntime).

    Args:
        path: a ``.onnx`` file written by ``dpda export``.
        mode: ``"fixed"`` (first window, repeat-padded) or ``"full"`` (mean of
            ``logit[:, 1]`` over sliding windows), as :class:`dpda.inference.Scorer`.
        hop: hop between sliding windows in samples (default: the window).
        batch_size: windows per forward pass.
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
    """

    def __init__(self, path: PathLike, *, mode: str = "full", hop: Optional[int] = None, batch_size: int = 16,
                 threads: Optional[int] = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxModelError("scoring an .onnx model needs onnxruntime: pip install onnxruntime") from None
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if hop is not None and int(hop) < 1:
            raise ValueError(f"hop must be a positive number of samples, got {hop}")
        path = Path(path)
        if not path.is_file():
            raise OnnxModelError(f"{path}: no such ONNX file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            raise OnnxModelError(f"{path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from None
        self.info = read_onnx_info(self.session, path)
        self.info["path"] = str(path)
        self.info["model_format"] = "onnx"
        self.sample_rate = int(self.info["sample_rate"])
        self.crop_samples = int(self.info["crop_samples"])
        self.mode = mode
        self.hop = None if hop is None else int(hop)
        self.batch_size = int(batch_size)
        self.forward_windows = 0

    def describe(self) -> str:
        """One line identifying the scoring setup."""
        return (f"model={os.path.abspath(self.info['path'])} mode={self.mode} crop={self.crop_samples} "
                f"hop={self.hop} sr={self.sample_rate} runtime=onnxruntime")

    def windows(self, waveform: np.ndarray) -> np.ndarray:
        """``(num_windows, crop_samples)`` float32 inputs of ``(T,)`` samples at ``sample_rate``."""
        x = np.asarray(waveform, dtype=np.float32)
        if self.mode == "fixed":
            return pad_or_crop(x, self.crop_samples, mode="repeat")[None, :]
        return sliding_windows(x, self.crop_samples, self.hop)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """``logit[:, 1]`` of a ``(B, samples)`` float32 batch, as float64 ``(B,)``."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"expected a batch of shape (B, samples) with B >= 1, got {x.shape}")
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})
        if logits.ndim != 2 or logits.shape[0] != x.shape[0] or logits.shape[1] < 2:
            raise OnnxModelError(f"model returned shape {tuple(logits.shape)}; expected logits (B, 2)")
        self.forward_windows += int(x.shape[0])
        return logits[:, 1].astype(np.float64)

    def score_windows(self, items: Iterable[Tuple[Any, np.ndarray]],
                      on_batch: Optional[Callable[[int], None]] = None) -> Iterator[Tuple[Any, float]]:
        """``(key, mean logit[:, 1])`` for each ``(key, windows)``; windows run ``batch_size`` at a time."""
        for key, windows in items:
            windows = np.asarray(windows, dtype=np.float32)
            if windows.ndim != 2 or windows.shape[0] == 0 or windows.shape[1] != self.crop_samples:
                raise ValueError(f"{key}: expected windows of shape (n, {self.crop_samples}), got {windows.shape}")
            yield key, float(np.mean(self.window_scores(windows, on_batch)))

    def window_scores(self, windows: np.ndarray, on_batch: Optional[Callable[[int], None]] = None) -> np.ndarray:
        """``logit[:, 1]`` of each of ``(n, crop_samples)`` windows, float64 ``(n,)``."""
        out = []
        for start in range(0, windows.shape[0], self.batch_size):
            out.append(self.forward(windows[start : start + self.batch_size]))
            if on_batch is not None:
                on_batch(out[-1].shape[0])
        return np.concatenate(out)


def load_scorer(path: PathLike, *, mode: str = "full", hop: Optional[int] = None, device: Any = "auto",
                batch_size: int = 16) -> Any:
    """An :class:`OnnxScorer` for ``*.onnx`` (torch is not imported), else ``Scorer.from_checkpoint``.

    ``device`` applies to PyTorch models only (ONNX models run on the CPU).
    """
    if is_onnx_path(path):
        return OnnxScorer(path, mode=mode, hop=hop, batch_size=batch_size)
    from dpda.inference import Scorer

    return Scorer.from_checkpoint(path, mode=mode, hop=hop, device=device, batch_size=batch_size)


__all__ = ["INFO_KEY", "INPUT_NAME", "OUTPUT_NAME", "OnnxModelError", "OnnxScorer", "is_onnx_path", "load_scorer",
           "read_onnx_info"]
