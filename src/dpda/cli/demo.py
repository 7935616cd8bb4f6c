"""``dpda demo``: the whole pipeline on a small synthetic corpus, in a few minutes on a CPU.

Builds a procedural corpus (:mod:`dpda.data.synthetic`: source-filter
"speech" and imitation vocoder artefacts; nothing in it is real speech),
trains the same small model twice, ``dual`` (both paths, mean loss: the
paper's DPDA baseline) and ``dpda`` (PCGrad), with batched RawBoost (algo 4)
as the augmented path, scores the in-domain test split and the
channel-shifted one, and prints a comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict

from dpda import allocator

DESCRIPTION = """\
Run dpda end to end on a small SYNTHETIC corpus generated on the fly (no
download): train 'dual' (no alignment) and 'dpda' (PCGrad) with a small LFCC-LCNN,
RawBoost algo 4 as the augmented path, score an in-domain and a channel-shifted
test split, and print EERs, conflict ratios and epochs. The corpus is not speech:
the numbers only show that the pipeline works. See the README for the real
ASVspoof recipes."""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("demo", help="end-to-end demo on a synthetic corpus (minutes on a CPU)", description=DESCRIPTION)
    p.add_argument("--out", default="dpda-demo", metavar="DIR",
                   help="where the corpus and runs are kept (default ./dpda-demo); the PCGrad run is DIR/dpda")
    p.add_argument("--epochs", type=int, default=5, help="training epochs per run (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corpus and of both runs")
    p.add_argument("--quick", action="store_true", help="a smaller corpus and 2 epochs (for tests)")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    p.set_defaults(func=run)


def _config(out: Path, corpus: Path, mode: str, epochs: int, seed: int, seconds: float):
    from dpda.config import from_dict
    from dpda.train.config import RunConfig, validate

    return validate(from_dict(RunConfig, {
        "name": f"demo_{mode}", "seed": seed, "device": "cpu", "runs_dir": str(out),
        "model": {"name": "lcnn", "config": {"dropout": 0.3}},
        "data": {"format": "generic", "train": {"protocol": str(corpus / "train.csv")},
                 "dev": {"protocol": str(corpus / "dev.csv")}, "crop_samples": int(seconds * 16000),
                 "batch_size": 16, "eval_batch_size": 64, "num_workers": 0},
        "augment": {"where": "device", "rawboost_algo": 4},
        # the synthetic corpus is balanced, so the classes get equal weights (ASVspoof configs use 0.9 / 0.1)
        "train": {"mode": mode, "aligner": {"name": "pcgrad"}, "epochs": epochs, "bonafide_weight": 0.5, "spoof_weight": 0.5,
                  "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 1e-4},
                  "patience": 0, "top_k": 2, "log_every": 5},
    }))


def _eer_on(run_dir: Path, csv: Path, out: Path) -> float:
    from dpda.data import load_manifest
    from dpda.inference import score_and_evaluate

    _, report = score_and_evaluate(load_manifest("generic", csv), run_dir, out, fmt="generic", num_workers=0,
                                   batch_size=64, device="cpu", progress=False)
    return float(report["eer"])


def run(args: argparse.Namespace) -> int:
    import torch

    from dpda.data.synthetic import make_synthetic_corpus
    from dpda.train.trainer import Trainer

    allocator.keep_freed_memory()  # the demo trains on the CPU (dpda.allocator)
    out = Path(args.out)
    epochs = 2 if args.quick else args.epochs
    sizes = dict(n_train=160, n_dev=40, n_test=80, seconds=1.0) if args.quick else {}
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    t0 = time.time()
    log(f"[1/3] synthetic corpus in {out / 'corpus'} (not speech; see dpda.data.synthetic)")
    corpus_info = make_synthetic_corpus(out / "corpus", seed=args.seed, **sizes)
    seconds = float(corpus_info.get("seconds", sizes.get("seconds", 2.0)))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results: Dict[str, Any] = {}
    for i, mode in enumerate(("dual", "dpda"), start=1):
        log(f"[2/3] training '{mode}' ({'mean of both paths' if mode == 'dual' else 'PCGrad'}), {epochs} epochs")
        run_dir = out / mode
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        t_run = time.time()
        summary = Trainer(_config(out, out / "corpus", mode, epochs, args.seed, seconds), run_dir,
                          progress=not args.json, log=log).fit()
        hist = summary["history"]
        results[mode] = {
            "run_dir": str(run_dir),
            "train_seconds": round(time.time() - t_run, 1),
            "epochs": len(hist),
            "best_epoch": summary.get("best_epoch"),
            "conflict_rate": round(sum(h["conflict_rate"] * h["steps"] for h in hist) / max(1, sum(h["steps"] for h in hist)), 4),
            "dev_eer": round(float(summary.get("final_dev_eer", float("nan"))), 3),  # of model.pt, not of one epoch
            "final_model": summary.get("final_model", {}),
            "plots": summary.get("plots", {}),
        }
    log("[3/3] scoring the test splits")
    for mode in ("dual", "dpda"):
        run_dir = out / mode
        results[mode]["eer_test"] = round(_eer_on(run_dir, out / "corpus" / "test.csv", run_dir / "scores_test.txt"), 3)
        results[mode]["eer_test_shifted"] = round(
            _eer_on(run_dir, out / "corpus" / "test_shifted.csv", run_dir / "scores_test_shifted.txt"), 3)
    report = {"corpus": str(out / "corpus"), "synthetic": True, "seconds_total": round(time.time() - t0, 1), "runs": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print()
    print_table(results)
    print(f"\nplots: {Path(results['dpda']['run_dir']) / 'plots'} (and {Path(results['dual']['run_dir']) / 'plots'})")
    print(f"try:   dpda detect --model {results['dpda']['run_dir']} {out / 'corpus' / 'audio' / 'test'}/*.flac")
    print(f"total: {report['seconds_total']:.0f} s")
    return 0


def _model_label(final: Dict[str, Any]) -> str:
    """'avg 2,3' or 'epoch 2': which weights model.pt holds (train.final_model)."""
    epochs = final.get("epochs") or []
    if not epochs:
        return "?"
    return f"avg {','.join(map(str, epochs))}" if final.get("chosen") == "average" else f"epoch {epochs[0]}"


def print_table(results: Dict[str, Dict[str, Any]]) -> None:
    """The demo's comparison table; every EER is of the run's model.pt (the 'model' column says which weights)."""
    print("dpda demo on a SYNTHETIC corpus (not speech: this shows the pipeline, not detection quality)")
    print(f"{'run':<6} {'model':>9} {'EER test %':>10} {'EER shifted %':>13} {'dev EER %':>9} {'conflicts':>9} "
          f"{'epochs':>6} {'train s':>7}")
    for mode, r in results.items():
        print(f"{mode:<6} {_model_label(r.get('final_model', {})):>9} {r['eer_test']:>10.2f} {r['eer_test_shifted']:>13.2f} "
              f"{r['dev_eer']:>9.2f} {100 * r['conflict_rate']:>8.1f}% {r['epochs']:>6} {r['train_seconds']:>7.0f}")
    print("model: the weights in model.pt ('avg 2,3': the mean of epochs 2 and 3; train.final_model chose them on dev);\n"
          "       every EER column is that model's, so 'dev EER' need not equal any epoch's line above")
