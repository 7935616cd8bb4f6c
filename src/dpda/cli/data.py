"""``dpda data``: inspect and validate corpus protocols."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
from typing import Dict, List, Optional, TextIO

from dpda.data import FORMAT_MODULES, FORMATS

#: problems listed in the readable summary before "... and N more"
MAX_LISTED = 50
#: values listed per counted field before "... and N more values"
MAX_VALUES = 40


def _format_summaries() -> Dict[str, str]:
    """First docstring line of each corpus module, by format name."""
    out = {}
    for fmt in FORMATS:
        try:
            doc = importlib.import_module(f"dpda.data.{FORMAT_MODULES[fmt]}").__doc__ or ""
        except ImportError:  # pragma: no cover - a module being written elsewhere
            doc = ""
        first = doc.strip().splitlines()[0].rstrip(".") if doc.strip() else ""
        out[fmt] = first.replace("``", "")
    return out


def _formats_epilog() -> str:
    lines = ["formats:"]
    for fmt, summary in _format_summaries().items():
        lines.append(f"  {fmt:<13} {summary}")
    lines.append("")
    lines.append("Each format's layout and audio path rules are documented in the module")
    lines.append("dpda.data.<module> (python -m pydoc dpda.data.asvspoof2021).")
    return "\n".join(lines)


def register(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add the ``data`` command (with its ``check`` sub-command)."""
    formatter = argparse.RawDescriptionHelpFormatter
    data = subparsers.add_parser(
        "data",
        help="inspect and validate corpus protocols and audio",
        description=textwrap.fill(break_on_hyphens=False, text=
            "Inspect and validate corpus protocols (ASVspoof 2019/2021/5, In-the-Wild, "
            "Fake-or-Real, generic CSV or folder) and their audio files."
        ),
        epilog=_formats_epilog() + "\n\nRun 'dpda data check --help' for the options.",
        formatter_class=formatter,
    )
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    def _no_subcommand(args: argparse.Namespace) -> int:
        data.print_help()
        return 2

    data.set_defaults(func=_no_subcommand)

    check = sub.add_parser(
        "check",
        help="parse a protocol, report bad lines, missing audio and counts",
        description=textwrap.fill(break_on_hyphens=False, text=
            "Parse a corpus protocol and report every problem: malformed lines (with their "
            "line numbers), unknown labels, duplicate utterance ids and missing audio files. "
            "Prints the number of utterances and counts per label, attack and condition field. "
            "Exits 0 when no problem is found, 1 otherwise."
        ),
        epilog=_formats_epilog(),
        formatter_class=formatter,
    )
    check.add_argument(
        "--format", "-f", required=True, choices=FORMATS, metavar="FORMAT",
        help="corpus format, one of: " + ", ".join(FORMATS),
    )
    check.add_argument(
        "--protocol", "-p", required=True, metavar="PATH",
        help="protocol / key / metadata file (for 'for': the split folder, e.g. for-norm/testing; "
             "for 'generic': a CSV file or a folder of audio)",
    )
    check.add_argument(
        "--root", "-r", default=None, metavar="DIR",
        help="audio folder (default: the protocol's folder; ASVspoof formats also look in DIR/flac)",
    )
    check.add_argument(
        "--subset", default=None, metavar="S",
        help="keep only utterances whose 'subset' condition is S (e.g. eval, progress, "
             "hidden_track for ASVspoof 2021 keys)",
    )
    check.add_argument(
        "--no-audio", action="store_true",
        help="do not check that the audio files exist (only parse the protocol)",
    )
    check.add_argument(
        "--decode", action="store_true",
        help="also open each audio file's header (soundfile.info) and report unreadable files",
    )
    check.add_argument(
        "--json", action="store_true",
        help="print one JSON object (counts and every problem) instead of the readable summary",
    )
    check.set_defaults(func=run_check)
    return data


def _counts_block(title: str, counts: Dict[str, int], out: List[str]) -> None:
    out.append(f"{title} ({len(counts)} value{'s' if len(counts) != 1 else ''}):")
    items = list(counts.items())
    width = max((len(k) for k, _ in items[:MAX_VALUES]), default=0)
    for value, n in items[:MAX_VALUES]:
        out.append(f"  {value + ':':<{width + 1}} {n}")
    if len(items) > MAX_VALUES:
        out.append(f"  ... and {len(items) - MAX_VALUES} more values")


def format_report(report) -> str:
    """The readable summary of a :class:`dpda.data.check.CheckReport`."""
    out: List[str] = []
    head = f"file: {report.protocol} (format {report.format}"
    if report.subset is not None:
        head += f", subset {report.subset}"
    out.append(head + ")")
    if report.root is not None:
        out.append(f"root: {report.root}")
    out.append(f"utterances: {len(report.manifest)}")
    if len(report.manifest):
        _counts_block("label", report.label_counts, out)
        _counts_block("attack", report.attack_counts, out)
        for name, counts in report.condition_counts.items():
            _counts_block(name, counts, out)
    if report.audio_checked:
        line = f"audio: {len(report.manifest) - len(report.missing_audio)} of {len(report.manifest)} files found"
        if report.decoded:
            line += f", {len(report.unreadable_audio)} unreadable"
        out.append(line)
    elif not report.audio_requested:
        out.append("audio: not checked (--no-audio)")
    else:
        out.append("audio: not checked (the protocol could not be read)")
    for note in report.notes:
        out.append(f"note: {note}")
    problems = report.problems
    if problems:
        out.append(f"problems ({len(problems)}):")
        for p in problems[:MAX_LISTED]:
            out.append(f"  {p}")
        if len(problems) > MAX_LISTED:
            out.append(f"  ... and {len(problems) - MAX_LISTED} more")
        out.append(f"FAILED: {len(problems)} problem(s) found")
    else:
        out.append("OK: no problems found")
    return "\n".join(out)


def run_check(args: argparse.Namespace, stream: Optional[TextIO] = None) -> int:
    """Run ``dpda data check``; returns 0 when no problem was found, else 1."""
    from dpda.data.check import check_corpus

    stream = stream or sys.stdout
    if args.no_audio and args.decode:
        print("dpda data check: error: --decode needs the audio check; drop --no-audio", file=sys.stderr)
        return 2
    report = check_corpus(
        args.format, args.protocol, args.root,
        check_audio=not args.no_audio, decode=args.decode, subset=args.subset,
    )
    if args.json:
        stream.write(json.dumps(report.to_dict(), indent=None) + "\n")
    else:
        stream.write(format_report(report) + "\n")
    return 0 if report.ok else 1
