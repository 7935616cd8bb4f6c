"""``dpda serve``: a web page and an HTTP API for screening audio with a trained model."""

from __future__ import annotations

import argparse
import math
import sys

from dpda.errors import DpdaError

DESCRIPTION = """\
Serve a model over HTTP: a page at / to drop or record a clip and see the
verdict, P(bona fide) and a per-window timeline; POST /v1/detect (multipart
field 'file') for programs; GET /v1/model (the model card); GET /health;
OpenAPI docs at /docs.

The decision, threshold, calibration and warnings follow 'dpda detect' (see
'dpda detect --help'). MODEL is a run directory, a checkpoint, or an ONNX file
from 'dpda export' (served with onnxruntime alone, without PyTorch).

All requests share one model: the windows of concurrent uploads are queued
and scored in shared batches of --batch-size windows. Uploads larger than
--max-mb or longer than --max-seconds are refused (413); uploads are written
to a temporary directory and deleted once decoded.

Binds to 127.0.0.1 (this machine only) unless --host says otherwise.
Needs pip install -e '.[serve]'."""

EPILOG = """\
examples:
  dpda serve --model runs/lcnn_dpda
  dpda serve --model lcnn.onnx --port 8080
  curl -F file=@clip.wav http://127.0.0.1:8000/v1/detect
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("serve", help="web page and HTTP API for screening audio", description=DESCRIPTION,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="RUN_DIR|CKPT|FILE.onnx", help="the model to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--threshold", type=float, metavar="T", help="decision threshold on the score (default: the model's)")
    p.add_argument("--mode", choices=("full", "fixed"), default="full", help="full (default): sliding windows over the whole file")
    p.add_argument("--hop", type=int, metavar="SAMPLES", help="hop between windows in samples (default: the window length)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda", help="device for PyTorch models (default auto)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="windows per forward pass (default 16)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longest recording accepted, in seconds (default 600)")
    p.add_argument("--max-mb", type=float, default=100.0, help="largest upload accepted, in MB (default 100)")
    p.add_argument("--max-queued-windows", type=int, default=2048, metavar="N",
                   help="windows waiting for the model at most; beyond, requests get 503 'busy' (default 2048)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise DpdaError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.hop is not None and args.hop < 1:
        raise DpdaError(f"--hop must be >= 1 sample, got {args.hop}")
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise DpdaError(f"--threshold must be a finite number, got {args.threshold}")
    if not args.max_seconds > 0 or not args.max_mb > 0 or args.max_queued_windows < 1:
        raise DpdaError("--max-seconds, --max-mb and --max-queued-windows must be positive")
    try:
        import uvicorn

        from dpda.serve.app import ServeSettings, create_app
    except ImportError as e:
        raise DpdaError(f"dpda serve needs the serve extra ({e.name} is missing): pip install -e '.[serve]'") from None
    from dpda.deploy.onnx_scorer import load_scorer

    scorer = load_scorer(args.model, mode=args.mode, hop=args.hop, device=args.device, batch_size=args.batch_size)
    settings = ServeSettings(max_seconds=args.max_seconds, max_bytes=int(args.max_mb * 1e6), threshold=args.threshold,
                             max_queued_windows=args.max_queued_windows)
    app = create_app(scorer, settings)
    print(f"dpda serve: {scorer.info.get('model_name')} from {args.model}; open http://{args.host}:{args.port}/ "
          "(Ctrl+C stops)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"dpda serve: warning: bound to {args.host}: anyone who can reach it can upload audio "
              "(there is no authentication)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
