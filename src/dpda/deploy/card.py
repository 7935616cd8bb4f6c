"""The model card of a checkpoint or ONNX file: what ``GET /v1/model`` and the page show.

Fields (all JSON-serialisable; None where the model does not record it):

* ``architecture``: the registered model name (``aasist-l``, ``lcnn``, ...)
  and its ``model_config``;
* ``format``: ``"pytorch"`` or ``"onnx"``; ``runtime``: what scores with it;
* ``sample_rate`` (Hz), ``window_samples`` / ``window_seconds`` (one input
  window, the training crop), ``hop_samples`` (between sliding windows);
* ``threshold`` and ``threshold_source`` (:func:`dpda.deploy.rules.decision_threshold`),
  ``calibration`` ``{a, b}`` (P(bona fide) = sigmoid(a * score + b));
* ``training_data``: the ``data`` section (format, train / dev protocols)
  of the run's ``config.yaml`` when the checkpoint sits in a run directory,
  else what the checkpoint records (``provenance`` of an imported model);
* ``provenance``: the file, its size and SHA-256, how the final model was
  chosen (``final_model``, ``averaged_epochs``), import provenance, the
  source checkpoint of an ONNX export and the export's parity check.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Optional

from dpda.errors import DpdaError

#: info keys that the card shows under "provenance" when present
PROVENANCE_KEYS = ("final_model", "averaged_epochs", "provenance", "export")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def run_training_data(checkpoint: Path) -> Optional[Dict[str, Any]]:
    """The ``data`` section of the ``config.yaml`` of the run a checkpoint belongs to, or None.

    A run keeps ``RUN/model.pt`` and ``RUN/checkpoints/*.pt`` beside
    ``RUN/config.yaml``; any other place has no run configuration.
    """
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        config = folder / "config.yaml"
        if config.is_file():
            try:
                import yaml

                data = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data")
            except Exception:  # a damaged config must not stop the card
                return None
            if not isinstance(data, dict):
                return None
            keep = ("format", "train", "dev", "sample_rate", "crop_samples", "max_train_utterances")
            return {"run_config": str(config), **{k: data.get(k) for k in keep if k in data}}
    return None


def model_card(info: Dict[str, Any], *, hop: Optional[int] = None, threshold: Optional[float] = None) -> Dict[str, Any]:
    """The card of a loaded model from its ``info`` (see the module docstring).

    ``hop``: the scorer's hop in samples (None: the window); ``threshold``:
    an explicit decision threshold overriding the model's (as ``--threshold``).
    A model without any threshold gets ``threshold`` None and the reason in
    ``threshold_source``.
    """
    from dpda.deploy.rules import decision_threshold

    sample_rate = int(info.get("sample_rate") or 16000)
    window = int(info.get("crop_samples") or 0)
    try:
        thr, source = decision_threshold(info, threshold)
    except DpdaError as e:
        thr, source = None, str(e)
    path = Path(info["path"]) if info.get("path") else None
    fmt = info.get("model_format", "pytorch")
    provenance: Dict[str, Any] = {"file": None if path is None else path.name}
    if path is not None and path.is_file():
        provenance.update(size_bytes=path.stat().st_size, sha256=file_sha256(path))
    provenance.update({k: info[k] for k in PROVENANCE_KEYS if info.get(k) is not None})
    training = info.get("training_data")
    if training is None and path is not None and fmt != "onnx":
        training = run_training_data(path)
    if training is None and isinstance(info.get("provenance"), dict):
        training = {"imported": info["provenance"]}
    return {
        "architecture": info.get("model_name"),
        "model_config": info.get("model_config") or {},
        "format": fmt,
        "runtime": "onnxruntime (CPU)" if fmt == "onnx" else "pytorch",
        "sample_rate": sample_rate,
        "window_samples": window,
        "window_seconds": window / sample_rate if window else None,
        "hop_samples": int(hop) if hop else window,
        "score": "logit[:, 1] of the model (class 1 = bona fide; higher = more bona fide)",
        "threshold": thr,
        "threshold_source": source,
        "calibration": info.get("calibration") or None,
        "training_data": training,
        "provenance": provenance,
    }


__all__ = ["file_sha256", "model_card", "run_training_data"]
