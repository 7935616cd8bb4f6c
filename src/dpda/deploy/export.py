"""``dpda export``: a checkpoint to an ONNX file that onnxruntime scores without PyTorch.

The graph: input ``waveform`` ``(batch, samples)`` float32 at the model's
rate, both axes variable; output ``logits`` ``(batch, 2)``, class 1 = bona
fide (the score is ``logits[:, 1]``). Exported with torch's TorchScript-based
exporter (``dynamo=False``, which needs only the ``onnx`` package) at
:data:`OPSET`.

Metadata (``metadata_props``): :data:`dpda.deploy.onnx_scorer.INFO_KEY` holds
the checkpoint's info as JSON (``model_name``, ``model_config``,
``sample_rate``, ``crop_samples``, ``threshold``, ``calibration``,
provenance, the run's training data, and ``export``: source file and
SHA-256, opset, the parity check); flat keys ``dpda.sample_rate``,
``dpda.window_samples``, ``dpda.threshold``, ``dpda.calibration_a`` /
``_b`` and ``dpda.score`` repeat the essentials for other tools.

Parity: before the file is written, onnxruntime (CPU) and torch score the
same inputs, of the model's window length (``crop_samples``) and of a longer,
odd length (which proves the variable time axis); the largest absolute
difference of the logits must be at most ``atol`` (1e-4) or nothing is
written. An architecture that cannot be exported (:data:`NOT_EXPORTABLE`, or
an exporter failure) raises :class:`ExportError` saying why.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
import torch.nn as nn

from dpda.errors import DpdaError, PathLike
from dpda.deploy.onnx_scorer import INFO_KEY, INPUT_NAME, OUTPUT_NAME

OPSET = 17
#: largest absolute difference of the logits allowed between onnxruntime and torch
PARITY_ATOL = 1e-4

#: architectures that cannot be exported with a variable-length input, and why
NOT_EXPORTABLE = {
    "xlsr_mamba": (
        "its Mamba back-end runs the selective scan as a Python loop over chunks whose count depends on the "
        "input length; tracing for ONNX fixes that count, so the graph would accept a single input length "
        "(ONNX Runtime fails on any other), and dpda export requires a variable-length time axis"
    ),
}


class ExportError(DpdaError, RuntimeError):
    """The model cannot be exported, or the exported graph does not reproduce the PyTorch logits."""


class _LogitsOnly(nn.Module):
    """The model with its logits as the only output (models may also return an embedding)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        out = self.model(waveform)
        return out[0] if isinstance(out, (tuple, list)) else out


def parity_inputs(crop_samples: int, seed: int = 0) -> List[np.ndarray]:
    """Speech-like test batches: ``(2, crop_samples)`` and ``(3, crop_samples + crop_samples // 3 + 7)`` float32.

    Harmonics with a wandering pitch plus noise, peak about 0.5, so that the
    inputs exercise the model as audio does (not an all-zero tensor).
    """
    rng = np.random.default_rng(seed)
    batches = []
    for rows, length in ((2, crop_samples), (3, crop_samples + crop_samples // 3 + 7)):
        t = np.arange(length) / 16000.0
        batch = []
        for _ in range(rows):
            f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
            phase = 2 * np.pi * np.cumsum(f0) / 16000.0
            x = sum(np.sin(k * phase) / k for k in range(1, 6)) + 0.05 * rng.standard_normal(length)
            batch.append(0.5 * x / np.max(np.abs(x)))
        batches.append(np.asarray(batch, dtype=np.float32))
    return batches


def check_parity(model: nn.Module, onnx_path: PathLike, crop_samples: int) -> Dict[str, Any]:
    """Max |logits_onnxruntime - logits_torch| over :func:`parity_inputs`, per input length."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    per_length = {}
    for batch in parity_inputs(crop_samples):
        with torch.no_grad():
            ref = _LogitsOnly(model)(torch.from_numpy(batch)).double().numpy()
        try:
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        except Exception as e:  # onnxruntime's own error types
            raise ExportError(
                f"the exported graph fails on an input of {batch.shape[1]} samples (the time axis is not "
                f"variable-length): {str(e).splitlines()[0][:300]}"
            ) from None
        per_length[int(batch.shape[1])] = float(np.max(np.abs(got.astype(np.float64) - ref)))
    return {"max_abs_diff": max(per_length.values()), "per_length": per_length, "atol": PARITY_ATOL,
            "runtime": f"onnxruntime {ort.__version__} CPU", "torch": torch.__version__}


def _metadata(info: Dict[str, Any], source: Path, parity: Dict[str, Any]) -> Dict[str, str]:
    from dpda import __version__
    from dpda.deploy.card import file_sha256, run_training_data

    stored = {k: v for k, v in info.items() if k not in ("path", "model_format")}
    stored["training_data"] = info.get("training_data") or run_training_data(source)
    stored["export"] = {"source_file": source.name, "source_sha256": file_sha256(source), "opset": OPSET,
                        "dpda_version": __version__, "parity": parity}
    cal = info.get("calibration") or {}
    flat = {
        INFO_KEY: json.dumps(stored, default=str),
        "dpda.sample_rate": str(int(info.get("sample_rate") or 16000)),
        "dpda.window_samples": str(int(info.get("crop_samples") or 0)),
        "dpda.score": "logits[:, 1]; class 1 = bona fide, higher = more bona fide",
        "dpda.threshold": "" if info.get("threshold") is None else repr(float(info["threshold"])),
        "dpda.calibration_a": "" if "a" not in cal else repr(float(cal["a"])),
        "dpda.calibration_b": "" if "b" not in cal else repr(float(cal["b"])),
    }
    return flat


def export_onnx(model_path: PathLike, out: PathLike, *, check: bool = True) -> Dict[str, Any]:
    """Export a checkpoint (file or run directory) to ``out`` (see the module docstring).

    Returns ``{"out", "model_name", "sample_rate", "crop_samples",
    "parity"}``. Raises :class:`ExportError` (nothing written) when the
    architecture cannot be exported or the parity check fails; ``check=False``
    skips the parity check (``parity`` is then None).
    """
    try:
        import onnx
    except ImportError:
        raise ExportError("dpda export needs the onnx package: pip install -e '.[serve]' (or pip install onnx onnxruntime)") from None
    from dpda.inference import Scorer

    scorer = Scorer.from_checkpoint(model_path, device="cpu")
    info, model = scorer.info, scorer.model.eval()
    name = info.get("model_name")
    if name in NOT_EXPORTABLE:
        raise ExportError(f"{name} cannot be exported to ONNX: {NOT_EXPORTABLE[name]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    example = torch.from_numpy(parity_inputs(scorer.crop_samples)[0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _LogitsOnly(model).eval(), (example,), str(partial), input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch", 1: "samples"},
                                                          OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET, dynamo=False,
            )
        parity = check_parity(model, partial, scorer.crop_samples) if check else None
        if parity is not None and not parity["max_abs_diff"] <= PARITY_ATOL:
            raise ExportError(
                f"onnxruntime's logits differ from torch's by up to {parity['max_abs_diff']:.3g} "
                f"(allowed {PARITY_ATOL:g}; per input length: {parity['per_length']}); nothing written"
            )
        graph = onnx.load(str(partial))
        for key, value in _metadata(info, Path(info["path"]), parity).items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        graph.doc_string = f"dpda {name} countermeasure: waveform (batch, samples) -> logits (batch, 2)"
        onnx.save(graph, str(partial))
        os.replace(partial, out)
    except ExportError as e:
        partial.unlink(missing_ok=True)
        raise ExportError(f"{name} cannot be exported to ONNX: {e}") from None
    except Exception as e:
        partial.unlink(missing_ok=True)
        raise ExportError(
            f"{name} cannot be exported to ONNX: torch.onnx.export failed: {type(e).__name__}: "
            f"{str(e).splitlines()[0][:300]}"
        ) from None
    return {"out": str(out), "model_name": name, "sample_rate": scorer.sample_rate,
            "crop_samples": scorer.crop_samples, "parity": parity}


__all__ = ["ExportError", "NOT_EXPORTABLE", "OPSET", "PARITY_ATOL", "check_parity", "export_onnx", "parity_inputs"]
