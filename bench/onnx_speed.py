"""Scoring speed per file on the CPU: onnxruntime (an exported model) against torch (the checkpoint).

For each architecture (default: lcnn, rawnet2, aasist-l at full size; untrained weights, speed does
not depend on them), exports a checkpoint with ``dpda export`` and scores ``--files`` clips of
``--seconds`` s each (16 kHz, full-utterance sliding windows of the model's 64600 samples, batch 16)
with :class:`dpda.inference.Scorer` (torch, eval, no_grad) and with
:class:`dpda.deploy.onnx_scorer.OnnxScorer`; prints milliseconds per file (median of ``--repeats``
passes over the files) and the ratio. Both runtimes use their default CPU thread counts.

    python bench/onnx_speed.py
    python bench/onnx_speed.py --models lcnn aasist-l --seconds 30 --files 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dpda.deploy.export import export_onnx
from dpda.deploy.onnx_scorer import OnnxScorer
from dpda.inference import Scorer
from dpda.models import build_model
from dpda.train.checkpoint import inference_payload, save_checkpoint



def per_file_ms(score, waves, repeats: int) -> float:
    score(waves[0])  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for w in waves:
            score(w)
        times.append((time.perf_counter() - t0) / len(waves))
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["lcnn", "rawnet2", "aasist-l"])
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = int(args.seconds * 16000)
    waves = [(0.3 * np.sin(np.arange(n) * (0.05 + 0.01 * i)) + 0.03 * rng.standard_normal(n)).astype(np.float32)
             for i in range(args.files)]
    print(f"{args.files} files of {args.seconds:g} s, windows of 64600 samples, batch 16, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"{'model':<10}  {'torch ms/file':>13}  {'onnxruntime ms/file':>19}  {'speed-up':>8}  {'max |diff|':>10}")
    with tempfile.TemporaryDirectory(prefix="dpda-onnx-speed-") as tmp:
        for name in args.models:
            torch.manual_seed(0)
            ckpt = Path(tmp) / f"{name}.pt"
            save_checkpoint(ckpt, inference_payload(name, {}, build_model(name).eval(), 16000, 64600, threshold=0.0))
            export_onnx(ckpt, Path(tmp) / f"{name}.onnx")
            pt = Scorer.from_checkpoint(ckpt, mode="full", device="cpu", batch_size=16)
            ox = OnnxScorer(Path(tmp) / f"{name}.onnx", mode="full", batch_size=16)
            t_pt = per_file_ms(lambda w: pt.forward(pt.windows(w)), waves, args.repeats)
            t_ox = per_file_ms(lambda w: ox.window_scores(ox.windows(w)), waves, args.repeats)
            diff = max(float(np.max(np.abs(pt.forward(pt.windows(w)) - ox.window_scores(ox.windows(w))))) for w in waves)
            print(f"{name:<10}  {t_pt:>13.0f}  {t_ox:>19.0f}  {t_pt / t_ox:>7.2f}x  {diff:>10.2e}", flush=True)


if __name__ == "__main__":
    main()
