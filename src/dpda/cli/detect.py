"""``dpda detect``: is this audio file bona fide or spoofed?"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any, Dict, Optional

DESCRIPTION = """\
Score audio files of any length, format and sample rate with a trained
countermeasure and decide 'bonafide' or 'spoof' for each.

score        the model's bona fide logit, logit[:, 1] (higher = more bona fide);
             with --mode full (default) the mean over sliding windows of the
             training crop length covering the whole file; with --mode fixed the
             first window only (repeat-padded), as in 'dpda score'.
P(bona fide) sigmoid(a * score + b) with the calibration (a, b) fitted on the dev
             set and stored in the checkpoint; 'uncalibrated' (null in JSON)
             when the checkpoint has none: a raw logit is not a probability.
decision     'bonafide' when score >= threshold, else 'spoof': this one rule
             decides, and the output states it. The threshold is --threshold if
             given (a finite number), else the dev-set EER threshold stored in
             the checkpoint, else the score where the calibrated P(bona fide) is
             0.5. A checkpoint with neither is refused unless --threshold is
             given (no threshold is made up).
             P(bona fide) does not decide: it is reported beside the decision.
             The EER threshold and P = 0.5 are different operating points, so
             for a score between them the two disagree (P < 0.5 and
             'bonafide', or P >= 0.5 and 'spoof'); such a row is marked '*'
             (JSON: probability_disagrees).

A file that cannot be used (missing, corrupt, truncated: fewer samples than
its header says) is reported with its problem and the others are still
scored. Warnings, the file still scored: 'too short' (shorter than the
model's input window, the training crop: repeat-padded) and 'silent' (peak
amplitude below 1e-4, -80 dBFS, all-zero files included). They are listed
under the table (JSON: a 'warnings' list per file).

A progress line (windows scored) is shown on stderr, when it is a terminal,
for files long enough to take several batches; --no-progress hides it.

Exit code: 0 when every file was scored, 1 when any failed, 2 when the model
or the options cannot be used."""

EPILOG = """\
examples:
  dpda detect --model runs/dpda_aasist clip.wav interview.mp3
  dpda detect --model runs/dpda_aasist/model.pt --threshold 1.5 *.flac
  dpda detect --model runs/dpda_aasist --json suspicious.ogg > verdict.json
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "detect",
        help="decide bona fide / spoof for audio files",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="RUN_DIR|CKPT", help="training run directory, checkpoint file, or an ONNX file from 'dpda export' (scored with onnxruntime, without PyTorch)")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, mp3, ogg, ...; any sample rate and length)")
    p.add_argument("--threshold", type=float, metavar="T", help="decision threshold on the score, a finite number (default: the checkpoint's dev-set EER threshold); write --threshold=-2 or --threshold -2")
    p.add_argument("--json", action="store_true", help="print one JSON object {model, threshold, threshold_source, decision_rule, calibrated, mode, results: [{file, score, probability, decision, probability_disagrees, warnings} | {file, error}]}")
    p.add_argument("--mode", choices=("full", "fixed"), default="full", help="full (default): mean logit[:, 1] over sliding windows of the whole file; fixed: first window only")
    p.add_argument("--hop", type=int, metavar="SAMPLES", help="hop between sliding windows in samples (default: the window length)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda", help="device to run the model on (default auto)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="windows per forward pass (default 16)")
    p.add_argument("--no-progress", action="store_true", help="do not show the progress line of long files on stderr")
    p.set_defaults(func=run)


def _prob(p: Optional[float]) -> str:
    return "uncalibrated" if p is None else f"{p:.4f}"


def print_table(report: Dict[str, Any]) -> None:
    print(f"model:     {report['model']}")
    print(f"decision:  {report['decision_rule']}")
    if report["calibrated"]:
        print("P(bona fide): calibrated probability, reported beside the decision; it does not decide")
    else:
        print("P(bona fide): uncalibrated (the checkpoint stores no calibration)")
    rows = report["results"]
    width = max([4] + [len(r["file"]) for r in rows])
    print()
    print(f"{'file':<{width}}  {'score':>10}  {'P(bona fide)':>12}  decision")
    for r in rows:
        if "error" in r:
            print(f"{r['file']:<{width}}  {'-':>10}  {'-':>12}  error: {r['error']}")
        else:
            mark = " *" if r["probability_disagrees"] else ""
            print(f"{r['file']:<{width}}  {r['score']:>10.4f}  {_prob(r['probability']):>12}  {r['decision']}{mark}")
    if any(r.get("probability_disagrees") for r in rows):
        print()
        print("* P(bona fide) and the decision disagree: the decision follows the threshold on the score")
        print(f"  ({report['threshold']:.6g}, {report['threshold_source']}), not P(bona fide) = 0.5")
    notes = [(r["file"], w) for r in rows for w in r.get("warnings", ())]
    if notes:
        print()
        for name, w in notes:
            print(f"warning: {name}: {w}")


def run(args: argparse.Namespace) -> int:
    from dpda.errors import DpdaError

    if args.batch_size < 1:
        raise DpdaError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.hop is not None and args.hop < 1:
        raise DpdaError(f"--hop must be >= 1 sample, got {args.hop}")
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise DpdaError(f"--threshold must be a finite number, got {args.threshold}")
    if str(args.model).lower().endswith(".onnx"):  # onnxruntime alone: torch is never imported on this path
        from dpda.deploy.cli_support import detect_onnx

        report = detect_onnx(args.files, args.model, args.threshold, mode=args.mode, hop=args.hop,
                             batch_size=args.batch_size, progress=not args.no_progress)
    else:
        from dpda.inference import detect_files

        report = detect_files(
            args.files, args.model, args.threshold,
            mode=args.mode, hop=args.hop, device=args.device, batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 1 if any("error" in r for r in report["results"]) else 0
