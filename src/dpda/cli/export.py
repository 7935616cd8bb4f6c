"""``dpda export``: a trained model to ONNX, for deployments without PyTorch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dpda.errors import DpdaError

DESCRIPTION = """\
Export a checkpoint (or a training run's model) to an ONNX file that
onnxruntime scores on the CPU without PyTorch: 'dpda detect --model
model.onnx' and 'dpda serve --model model.onnx' never import torch.

The graph maps 'waveform' (batch, samples) float32 at the model's sample rate,
both axes variable, to 'logits' (batch, 2), class 1 = bona fide. The window
length, sample rate, decision threshold, calibration and provenance go into
the ONNX metadata ('dpda.info' as JSON, plus flat dpda.* keys).

Before anything is written, onnxruntime and torch score the same inputs (the
model's window length and a longer one); the largest absolute difference of
the logits must be at most 1e-4. An architecture that cannot be exported
(xlsr_mamba: its scan's loop is fixed to one input length by tracing) is
refused with the reason.

Needs the onnx and onnxruntime packages: pip install -e '.[serve]'."""

EPILOG = """\
examples:
  dpda export runs/lcnn_dpda --format onnx --out lcnn.onnx
  dpda detect --model lcnn.onnx clip.wav
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("export", help="export a model to ONNX (for onnxruntime, without PyTorch)", description=DESCRIPTION,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="RUN_DIR|CKPT", help="training run directory or checkpoint file")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="output format (only onnx)")
    p.add_argument("--out", required=True, metavar="FILE.onnx", help="where to write the ONNX file")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-torch parity check")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dpda.deploy.export import export_onnx

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise DpdaError(f"--out must name a .onnx file, got {out}")
    if out.exists() and not args.force:
        raise DpdaError(f"{out} exists; pass --force to overwrite it")
    report = export_onnx(args.model, out, check=not args.no_check)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    parity = report["parity"]
    check = "parity not checked" if parity is None else (
        f"onnxruntime vs torch: max |diff| of logits {parity['max_abs_diff']:.2e} (allowed {parity['atol']:g})")
    print(f"wrote {out}: {report['model_name']}, window {report['crop_samples']} samples at {report['sample_rate']} Hz; {check}")
    return 0
