"""``dpda evaluate``: EER, t-DCF and DCF of a score file against a corpus key."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional

from dpda.data import FORMATS, load_manifest
from dpda.errors import DpdaError

DESCRIPTION = """\
Score a countermeasure: join a score file with a corpus key by utterance id and
print the EER (and min t-DCF with ASV scores, minDCF/actDCF/Cllr for ASVspoof 5),
pooled, per attack and per condition (codec, transmission, vocoder type, ...).

The score file has one line per trial, 'UTT_ID SCORE', higher = more bona fide;
extra columns are ignored. UTT_ID is the key's utterance id, or the audio file
name (27913.wav, LA_E_123.flac) or relative path (flac/LA_E_123.flac), with or
without extension, when every id of the file is written that way and the key
gives no two trials the same one; a note on stderr says which form matched.
Evaluation is refused (exit 2) when the score file misses trials of the key,
scores a trial twice, or scores ids the key does not know, and when a score is
not a finite number. Metrics follow the official ASVspoof evaluation code
exactly (tie handling included)."""

EPILOG = """\
examples:
  dpda evaluate --scores scores.txt --format asvspoof2019 \\
      --protocol LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.eval.trl.txt
  dpda evaluate --scores scores.txt --format asvspoof2021 --subset eval \\
      --protocol keys/LA/CM/trial_metadata.txt \\
      --asv-scores keys/LA/ASV/ASVTorch_Kaldi/score.txt --asv-key keys/LA/ASV/trial_metadata.txt
  dpda evaluate --scores itw_scores.txt --format itw --protocol release_in_the_wild/meta.csv --json
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "evaluate",
        help="compute EER / t-DCF / DCF of a score file against a key",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scores", required=True, metavar="SCORES",
        help="score file: 'UTT_ID SCORE' per line (higher = bona fide); UTT_ID may also be the audio file name or path",
    )
    p.add_argument("--protocol", required=True, metavar="KEY", help="key / protocol file (or directory for --format for)")
    p.add_argument("--format", required=True, choices=FORMATS, metavar="F", help="corpus format of the key, one of: " + ", ".join(FORMATS))
    p.add_argument("--subset", metavar="S", help="evaluate only trials of this subset (ASVspoof 2021: progress, eval, hidden_track)")
    p.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE", help="evaluate only trials whose field equals VALUE (repeatable), e.g. codec=alaw, attack=A07")
    p.add_argument("--score-column", type=int, default=2, metavar="N", help="1-based column of the score in the score file (default 2; AASIST's 'UTT SRC KEY SCORE' files: 4)")
    p.add_argument("--asv-scores", metavar="FILE", help="ASV scores for the t-DCF: lines with 'target'/'nontarget'/'spoof' and the score last (ASVspoof 2019), or aligned with --asv-key (ASVspoof 2021)")
    p.add_argument("--asv-key", metavar="FILE", help="ASVspoof 2021 ASV trial_metadata.txt aligned line by line with --asv-scores")
    p.add_argument("--by", action="append", metavar="FIELD", help="condition field to break the results down by (repeatable; default per format: codec, transmission, vocoder, ...)")
    p.add_argument("--json", action="store_true", help="print one JSON object (EERs in percent) instead of the table")
    p.add_argument("--plot", metavar="PNG", help="write a DET curve to this file")
    p.set_defaults(func=run)


def _filters(args: argparse.Namespace) -> Dict[str, str]:
    where: Dict[str, str] = {}
    for item in args.where:
        if "=" not in item:
            raise DpdaError(f"--where expects FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        where[k.strip()] = v.strip()
    if args.subset:
        where["subset"] = args.subset
    return where


def run(args: argparse.Namespace) -> int:
    from dpda.evaluation import (
        evaluate_scores,
        join_scores,
        read_asv_scores,
        read_scores,
    )

    if args.asv_key and not args.asv_scores:
        raise DpdaError("--asv-key needs --asv-scores")
    universe = load_manifest(args.format, args.protocol)
    where = _filters(args)
    key = universe.filter(**where) if where else universe
    scores = read_scores(args.scores, args.score_column)
    joined = join_scores(key, scores, universe=universe, scores_path=args.scores)
    asv = None
    if args.asv_scores:
        asv = read_asv_scores(args.asv_scores, args.asv_key, args.subset).operating_point()
    report = evaluate_scores(joined, fmt=args.format, asv=asv, breakdown=args.by)
    report = {
        "scores": str(args.scores), "protocol": str(args.protocol), "format": args.format,
        "filters": where, "n_ignored": joined.n_ignored, "id_form": joined.id_form, **report,
    }
    if args.plot:
        from dpda.metrics import det_curve
        from dpda.plotting import plot_det

        bona, spoof = joined.split()
        frr, far, _ = det_curve(bona, spoof)
        plot_det({"pooled": (frr, far)}, args.plot, eers={"pooled": report["eer"] / 100}, title=f"DET: {args.scores}")
        report["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    if joined.id_note:
        print(f"note: {joined.id_note}", file=sys.stderr)
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _fmt(v: Optional[float], spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def print_report(r: Dict) -> None:
    filt = ", ".join(f"{k}={v}" for k, v in r["filters"].items())
    print(f"scores:   {r['scores']}")
    print(f"key:      {r['protocol']} ({r['format']}{', ' + filt if filt else ''})")
    extra = f"  ({r['n_ignored']} scored trials outside the filter ignored)" if r["n_ignored"] else ""
    print(f"trials:   {r['n_bonafide']} bona fide, {r['n_spoof']} spoof{extra}")
    print(f"EER:      {r['eer']:.3f} %   (threshold {r['threshold']:.6g})")
    if "min_tdcf" in r:
        print(f"min t-DCF (ASVspoof 2021 form):   {r['min_tdcf']:.4f}")
        print(f"min t-DCF (ASVspoof 2019 legacy): {r['min_tdcf_legacy']:.4f}")
    if "min_dcf" in r:
        print(f"minDCF:   {r['min_dcf']:.4f}   actDCF: {r['act_dcf']:.4f}   Cllr: {r['cllr']:.4f} bits")
    tables: List = []
    if r["per_attack"]:
        tables.append(("attack", r["per_attack"]))
    for field, groups in r["per_condition"].items():
        tables.append((field, groups))
    has_tdcf = "min_tdcf" in r
    for title, groups in tables:
        print()
        width = max(len(title), *(len(k) for k in groups))
        head = f"  {title:<{width}}  {'EER (%)':>8}  {'bona fide':>9}  {'spoof':>7}"
        print(head + ("  min t-DCF" if has_tdcf else ""))
        for name, g in groups.items():
            line = f"  {name:<{width}}  {_fmt(g['eer']):>8}  {g['n_bonafide']:>9}  {g['n_spoof']:>7}"
            if has_tdcf:
                line += f"  {_fmt(g.get('min_tdcf'), '.4f'):>9}"
            print(line)
    if "plot" in r:
        print(f"\nDET curve written to {r['plot']}")
