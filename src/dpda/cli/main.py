"""Entry point of the ``dpda`` command."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from dpda import __version__
from dpda.errors import DpdaError

# Each command module exposes ``register(subparsers)``; the parser it adds sets
# ``func`` (a callable taking the parsed namespace and returning an exit code).
COMMAND_MODULES = ("evaluate", "data", "augment", "models", "import_model", "train", "score", "detect", "demo",
                   "serve", "export")


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
        try:
            module = importlib.import_module(f"dpda.cli.{name}")
        except ImportError as e:  # a deployment without PyTorch still runs detect / serve with an .onnx model
            if not str(e.name or "").split(".")[0] == "torch":
                raise
            _needs_torch(sub, COMMAND_NAMES.get(name, name))
            continue
        module.register(sub)
    return parser


#: command modules whose command has another name
COMMAND_NAMES = {"import_model": "import"}


def _needs_torch(sub: "argparse._SubParsersAction", command: str) -> None:
    """Register ``command`` as one that explains that it needs PyTorch (not installed here)."""

    def refuse(args: argparse.Namespace) -> int:
        raise DpdaError(f"'dpda {command}' needs PyTorch, which is not installed here (pip install torch); "
                        "without it, 'dpda detect' and 'dpda serve' work with an .onnx model from 'dpda export'")

    p = sub.add_parser(command, help="(needs PyTorch)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=refuse)


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
