"""Deploying a trained countermeasure: ONNX export, torch-free scoring, and what ``dpda serve`` shares.

* :mod:`dpda.deploy.rules`: the decision rules of ``dpda detect`` (threshold
  source, warnings), importable without torch.
* :mod:`dpda.deploy.card`: the model card (architecture, training data,
  threshold, calibration, provenance) of a checkpoint or an ONNX file.
* :mod:`dpda.deploy.onnx_scorer`: :class:`~dpda.deploy.onnx_scorer.OnnxScorer`,
  a scorer for exported models that needs only numpy and onnxruntime, and
  :func:`~dpda.deploy.onnx_scorer.load_scorer` (``.onnx`` or a torch checkpoint).
* :mod:`dpda.deploy.analysis`: per-window scores with their times, and the
  torch-free twin of :func:`dpda.detection.detect_files`.
* :mod:`dpda.deploy.batcher`: one model, one queue, windows of concurrent
  requests packed into shared batches.
* :mod:`dpda.deploy.export`: ``dpda export`` (needs torch and onnx).

Nothing here imports torch at import time except :mod:`dpda.deploy.export`.
"""
