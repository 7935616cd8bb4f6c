"""``dpda train``: train a countermeasure (single / dual / dpda) from a YAML config."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dpda import allocator
from dpda.devices import place_from_env
from dpda.errors import DpdaError

#: settings ``--resume`` may change: where the run continues, not what it computes
RESUME_OVERRIDES = ("device", "data.num_workers")

DESCRIPTION = """\
Train a countermeasure from a YAML configuration (see configs/ and
docs/training.md). Modes (train.mode): 'single' trains on the augmented path
only (the classic RawBoost recipe), 'dual' on both paths with the mean loss
(the paper's DPDA baseline), 'dpda' on both paths with gradient alignment
(train.aligner.name: pcgrad, gradvac, cagrad, mgda, sum, weighted, none).

Every run directory holds the resolved config.yaml, env.json, metrics.jsonl,
checkpoints/, plots/ and, at the end, model.pt (usable by dpda score/detect).
Ctrl-C or SIGTERM stops a run after the current step with a checkpoint at that
step (exit code 130); a second one stops at once. A run stopped or killed at
any point continues with --resume RUN_DIR and ends with the
same weights as an uninterrupted one (on the same kind of device; --resume RUN_DIR
--set device=cpu continues a GPU run on the CPU, with reseeded augmentation).

Multi-GPU / multi-node: launch with torchrun, one process per GPU (rank r on
cuda:LOCAL_RANK, NCCL; with device=cpu, gloo), e.g.
  torchrun --nproc_per_node 4 -m dpda train configs/xlsr_conformer_tcm_dpda.yaml"""

EPILOG = """\
examples:
  dpda train configs/aasistl_dpda_pcgrad.yaml --set data.train.root=/data/LA/ASVspoof2019_LA_train
  dpda train configs/aasistl_dpda_pcgrad.yaml --set train.aligner.name=gradvac --set train.epochs=20
  dpda train --resume runs/aasistl_dpda_pcgrad-20261125-101500
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("train", help="train a countermeasure (single / dual / dpda)", description=DESCRIPTION,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", metavar="CONFIG.yaml", help="run configuration (not needed with --resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (YAML syntax), e.g. train.epochs=3 (repeatable; with --resume only "
                        "device and data.num_workers)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--init-from", metavar="MODEL", help="start from the weights (and architecture options) of a dpda "
                   "model file: a run's model.pt or one written by 'dpda import' (same as --set model.init_from=MODEL)")
    p.add_argument("--run-dir", metavar="DIR", help="run directory (default: RUNS_DIR/NAME-DATE-TIME)")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="STEPS",
                   help="also checkpoint every STEPS steps inside an epoch (default 500; 0: epoch ends only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from dpda.config import load_config
    from dpda.train.config import RunConfig, check_buildable, validate
    from dpda.train.ranks import join_process_group, leave_process_group
    from dpda.train.trainer import Trainer, new_run_dir

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise DpdaError(f"{run_dir}: not a run directory (no config.yaml)")
        if args.config:
            raise DpdaError("--resume continues a run with its own config.yaml; do not pass CONFIG")
        changed = sorted({o.split("=", 1)[0].strip() for o in args.overrides} - set(RESUME_OVERRIDES))
        if changed:
            raise DpdaError(f"--resume keeps the run's config.yaml; only {', '.join(RESUME_OVERRIDES)} may change "
                            f"(where it runs, not what it computes), not {', '.join(changed)}")
        config_path = run_dir / "config.yaml"
    else:
        if not args.config:
            raise DpdaError("give a CONFIG.yaml (or --resume RUN_DIR)")
        config_path = Path(args.config)
    if args.init_from and args.resume:
        raise DpdaError("--init-from starts a new run; a resumed run continues from its own checkpoint")
    values = {"model.init_from": str(args.init_from)} if args.init_from else {}
    cfg = validate(load_config(RunConfig, config_path, args.overrides, values))
    check_buildable(cfg)
    placement = place_from_env(cfg.device)  # stops here, before any work, if the ranks do not fit the GPUs
    if placement.device.type == "cpu":
        allocator.keep_freed_memory()  # no re-faulting of activation buffers every step (dpda.allocator)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        import torch

        if placement.device.type == "cuda":
            torch.cuda.set_device(placement.device)
        join_process_group(placement.backend)
    if not args.resume:
        run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(cfg)
        if (run_dir / "checkpoints" / "last.pt").exists():
            raise DpdaError(f"{run_dir} already holds a run; use --resume {run_dir} or another --run-dir")
    finished = False
    try:
        trainer = Trainer(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress,
                          checkpoint_every=args.checkpoint_every)
        summary = trainer.fit()
        finished = True
    finally:
        # after a finished run the ranks leave together (rank 0 averages, validates and writes the
        # final model after the others are done); after an error each leaves on its own
        freed = leave_process_group(barrier=finished) if dist.is_initialized() else True
        if finished and not freed:
            print("warning: the process group outlived destroy_process_group (something still holds it); "
                  "this process may abort while exiting, after its work is saved", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    return 0
