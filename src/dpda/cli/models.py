"""``dpda models``: the registered countermeasure models."""

from __future__ import annotations

import argparse
import json

DESCRIPTION = """\
List the registered models with the parameter counts of their full-size
configurations (built on PyTorch's meta device: no memory, no weights).
Every model maps (B, T) 16 kHz waveforms to (B, 2) logits, class 1 = bona fide."""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("models", help="list the registered models and their sizes", description=DESCRIPTION)
    msub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    lst = msub.add_parser("list", help="print every model name with its parameter counts", description=DESCRIPTION)
    lst.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    lst.set_defaults(func=run_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def parameter_counts(name: str) -> dict:
    """Total and trainable parameter elements of a model's full-size configuration."""
    import torch

    from dpda.models import build_model

    with torch.device("meta"):
        model = build_model(name)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": total, "trainable": trainable, "class": type(model).__name__}


def run_list(args: argparse.Namespace) -> int:
    from dpda.models import model_names

    rows = {}
    for name in model_names():
        try:
            rows[name] = parameter_counts(name)
        except Exception as e:  # a missing optional dependency must not hide the other models
            rows[name] = {"error": f"{type(e).__name__}: {e}"}
    formats = published_format_rows()
    if args.json:
        print(json.dumps({"models": rows, "published_formats": formats}, indent=2))
        return 0
    print(f"{'model':<20} {'parameters':>13} {'trainable':>13}  class")
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:<20} {'-':>13} {'-':>13}  unavailable ({r['error']})")
        else:
            print(f"{name:<20} {r['parameters']:>13,} {r['trainable']:>13,}  {r['class']}")
    print("\npublished checkpoints (dpda import FORMAT CHECKPOINT --out MODEL.pt):")
    print(f"{'format':<24} {'imports into':<20} {'window':>7}  released by")
    for name, f in formats.items():
        print(f"{name:<24} {f['architecture']:<20} {f['crop_samples']:>7}  {', '.join(f['repos'])}"
              + (f"  ({f['notes']})" if f["notes"] else ""))
    return 0


def published_format_rows() -> dict:
    """Every published format: the architecture it imports into, its inference window and origin."""
    from dpda.models.published.importer import published_formats

    return {name: {"architecture": f.architecture, "crop_samples": f.crop_samples, "repos": list(f.repos),
                   "notes": f.notes} for name, f in sorted(published_formats().items())}
