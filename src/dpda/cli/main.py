"""Entry point of the ``dpda`` command."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from dpda import __version__
from dpda.errors import DpdaError

# Each command module exposes ``register(subparsers)``; the parser it adds sets
# ``func`` (a callable taking the parsed namespace and returning an exit code).
COMMAND_MODULES = ("evaluate", "data", "augment", "models", "import_model", "train", "score", "detect", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpda",
        description=(
            "dpda: robust speech deepfake (spoofing) detection with dual-path "
            "data-augmented training and gradient alignment."
        ),
        epilog="Run 'dpda COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"dpda {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"dpda.cli.{name}").register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DpdaError as e:
        print(f"dpda {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
