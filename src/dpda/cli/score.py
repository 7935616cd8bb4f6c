"""``dpda score``: score every utterance of a corpus protocol with a trained model."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict

from dpda.data import FORMATS
from dpda.errors import DpdaError

DESCRIPTION = """\
Score the utterances of a protocol with a trained countermeasure and write a
score file, one 'UTT_ID SCORE' line per utterance in protocol order, ready for
'dpda evaluate'. The score is the model's bona fide logit, logit[:, 1]
(higher = more bona fide), as in the official AASIST scoring.

--mode fixed (default) scores the first crop_samples samples of each
utterance (the training crop stored in the checkpoint, e.g. 64600 = 4.04 s),
repeat-padding shorter ones, as AASIST and the DPDA paper do. --mode full
scores sliding windows covering the whole utterance and averages logit[:, 1]
over them.

Resumable: scores are appended to SCORES.partial as they are computed; if the
run is interrupted, run the same command again and only the utterances not in
SCORES.partial are scored (a line cut short is rescored). SCORES is written at
the end, atomically.

Files that cannot be read (missing, empty, corrupt, truncated) do not stop the
run: they are listed in SCORES.errors (UTT_ID<TAB>problem) and left out of SCORES; since
'dpda evaluate' refuses a score file that misses trials, fix or remove them
and run the command again (only the failed files are retried). The exit code
is then 1. When the first 20 audio files of the protocol are all missing, the
audio root is wrong: nothing is scored or written and the exit code is 2.

Audio is loaded by --workers processes (default: the usable CPUs, at most 4),
which die with the command, even after kill -9.

A progress line (rate, ETA) is shown on stderr when it is a terminal."""

EPILOG = """\
examples:
  dpda score --model runs/dpda_aasist --format asvspoof2019 \\
      --protocol LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.eval.trl.txt \\
      --root LA/ASVspoof2019_LA_eval/flac --out scores/la19_eval.txt --evaluate
  dpda score --model runs/dpda_aasist/checkpoints/epoch_012.pt --format asvspoof2021 --subset eval \\
      --protocol keys/DF/CM/trial_metadata.txt --root ASVspoof2021_DF_eval/flac \\
      --out scores/df21.txt --workers 8 --batch-size 64 --device cuda
  dpda score --model runs/x --format itw --protocol release_in_the_wild/meta.csv \\
      --out scores/itw.txt --mode full
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "score",
        help="score a corpus protocol with a trained model (resumable)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="RUN_DIR|CKPT", help="training run directory (uses its model.pt, else checkpoints/last.pt) or a checkpoint file")
    p.add_argument("--protocol", required=True, metavar="P", help="protocol / key file of the corpus (directory for --format for or a folder of audio)")
    p.add_argument("--format", required=True, choices=FORMATS, metavar="F", help="corpus format, one of: " + ", ".join(FORMATS))
    p.add_argument("--root", metavar="AUDIO_DIR", help="audio directory (default: next to the protocol, see 'dpda data check --help')")
    p.add_argument("--subset", metavar="S", help="score only utterances of this subset (ASVspoof 2021: progress, eval, hidden_track)")
    p.add_argument("--out", required=True, metavar="SCORES", help="score file to write ('UTT_ID SCORE' lines); SCORES.partial and SCORES.errors are kept beside it")
    p.add_argument("--mode", choices=("fixed", "full"), default="fixed", help="fixed: first crop_samples samples, repeat-padded (default, as AASIST); full: mean logit[:, 1] over sliding windows of the whole utterance")
    p.add_argument("--hop", type=int, metavar="SAMPLES", help="hop between sliding windows in --mode full, in samples (default: the window length, no overlap)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="windows per forward pass (default 32)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="audio loading worker processes (default: the usable CPUs, at most 4, dpda.workers.default_workers(); 0 loads in the main process)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda", help="device to run the model on (default auto: cuda when available)")
    p.add_argument("--amp", action="store_true", help="autocast the forward pass (float16 on CUDA): faster, scores may differ in the 3rd-4th digit")
    p.add_argument("--evaluate", action="store_true", help="when done, print EER (and per-attack / per-condition EERs) from the protocol's labels, as 'dpda evaluate' does")
    p.add_argument("--no-progress", action="store_true", help="do not show the progress line on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dpda.data import load_manifest
    from dpda.inference import MissingAudioError, score_manifest
    from dpda.workers import default_workers

    if args.batch_size < 1:
        raise DpdaError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers is None:
        args.workers = default_workers()
    if args.workers < 0:
        raise DpdaError(f"--workers must be >= 0, got {args.workers}")
    if args.hop is not None and args.hop < 1:
        raise DpdaError(f"--hop must be >= 1 sample, got {args.hop}")
    universe = load_manifest(args.format, args.protocol, args.root)
    manifest = universe.filter(subset=args.subset) if args.subset else universe
    if args.evaluate and not manifest.labelled:
        n = sum(1 for u in manifest if u.label is None)
        raise DpdaError(f"--evaluate needs a labelled key, but {n} utterance(s) of {args.protocol} have no bonafide/spoof label")

    try:
        summary = score_manifest(
            manifest, args.model, args.out,
            num_workers=args.workers, batch_size=args.batch_size, mode=args.mode, hop=args.hop,
            device=args.device, amp=args.amp, progress=not args.no_progress,
        )
    except MissingAudioError as e:
        if args.root is not None:
            where = f"--root is {args.root}: is that the folder holding the audio of {args.protocol}?"
        else:
            where = "no --root was given, so the audio is looked for next to the protocol; pass --root AUDIO_DIR"
        raise DpdaError(f"{e}\n{where} (see 'dpda data check --help')") from None
    except KeyboardInterrupt:
        print(f"interrupted: scores so far are in {args.out}.partial; run the same command again to resume", file=sys.stderr)
        raise
    print_summary(summary)
    if summary["n_errors"]:
        if args.evaluate:
            print("evaluation skipped: the score file misses trials ('dpda evaluate' refuses incomplete score files)", file=sys.stderr)
        return 1
    if args.evaluate:
        evaluate(args, universe, manifest)
    return 0


def print_summary(s: Dict[str, Any]) -> None:
    rate = s["n_new"] / s["seconds"] if s["seconds"] > 0 else 0.0
    resumed = f" ({s['n_resumed']} resumed from an earlier run)" if s["n_resumed"] else ""
    print(f"scored {s['n_scored']} of {s['n_total']} utterances{resumed}: {s['n_new']} new in {s['seconds']:.1f} s ({rate:.1f} utt/s)")
    print(f"scores:   {s['out']}")
    if s["n_errors"]:
        print(
            f"warning: {s['n_errors']} file(s) could not be scored; they are listed in {s['errors_path']} and\n"
            f"  missing from {s['out']}, so 'dpda evaluate' will refuse it. Fix or remove them from the\n"
            f"  protocol and run the same command again: only they are scored ({s['partial_path']} is kept).",
            file=sys.stderr,
        )


def evaluate(args: argparse.Namespace, universe: Any, key: Any) -> None:
    from dpda.cli.evaluate import print_report
    from dpda.evaluation import evaluate_score_file

    report, joined = evaluate_score_file(key, args.out, fmt=args.format, universe=universe)
    report = {
        "scores": str(args.out), "protocol": str(args.protocol), "format": args.format,
        "filters": {"subset": args.subset} if args.subset else {}, "n_ignored": joined.n_ignored, **report,
    }
    print()
    print_report(report)
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
