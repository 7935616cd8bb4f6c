"""``dpda import``: convert a released checkpoint of the field into a dpda model file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dpda.errors import DpdaError

DESCRIPTION = """\
Convert a released checkpoint (the original repository's state dict, original
key names) into a dpda model file that dpda score / detect / evaluate use on
a current stack (transformers, no fairseq). Every key is mapped and loaded
strictly: an unknown, missing or mis-shaped key stops the import and is named.
The model file records where it came from (format, file SHA-256, original
repositories) and the inference window the original code used. 'dpda models
list' shows the formats. dpda ships no weights: it converts the files you have.

A released checkpoint holds no decision threshold: give 'dpda detect'
--threshold T, or read the EER threshold from 'dpda score --evaluate' on a
labelled dev set."""

EPILOG = """\
examples:
  dpda import dpda_ga-conformer_tcm best_model.pth --out tcm_dpda.pt
  dpda import ssl_aasist LA_model.pth --out ssl_aasist_la.pt
  dpda import clovaai-aasist AASIST.pth --out aasist.pt
  dpda score --model tcm_dpda.pt --format itw --protocol release_in_the_wild/meta.csv --out itw.txt --evaluate
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("import", help="convert a released checkpoint (dpda_ga, tcm_add, SSL-AASIST, XLSR-Mamba, AASIST)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("format", metavar="FORMAT", help="published format (see 'dpda models list')")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="the released .pth / .pt file")
    p.add_argument("--out", required=True, metavar="MODEL.pt", help="dpda model file to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow torch.load(weights_only=False) for checkpoints holding pickled objects "
                        "(runs code from the file: only for files you trust)")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dpda.models.published.importer import import_checkpoint
    from dpda.inference.card import model_payload
    from dpda.inference.modelfile import save_checkpoint

    out = Path(args.out)
    if out.exists() and not args.force:
        raise DpdaError(f"{out} exists; pass --force to overwrite it")
    model, info = import_checkpoint(args.format, args.checkpoint, trust_pickle=args.trust_pickle)
    save_checkpoint(out, model_payload(info["model_name"], info["model_config"], model, info["sample_rate"],
                                       info["crop_samples"], provenance=info["provenance"]))
    summary = {"out": str(out), "model_name": info["model_name"], "crop_samples": info["crop_samples"],
               "parameters": sum(p.numel() for p in model.parameters()), **info["provenance"]}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {out}: {info['model_name']} from {args.format} ({info['provenance']['file']}, "
              f"sha256 {info['provenance']['sha256'][:12]}...), window {info['crop_samples']} samples")
    return 0
