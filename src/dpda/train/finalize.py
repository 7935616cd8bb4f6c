"""The end of a run: the final model (top-k average or best epoch), its threshold and calibration, plots, summary.

``RUN_DIR/model.pt`` is chosen by ``train.final_model`` among the kept
epochs (:class:`~dpda.train.checkpointer.Checkpointer`): ``average`` (the
weights of the top-k epochs averaged), ``best`` (the best epoch's), or
``better`` (both evaluated on dev and compared by the monitored metric; ties
go to the average; without a dev split the average). With a dev split the
model file carries the dev EER threshold and a logistic calibration fitted on
dev scores. ``RUN_DIR/plots/*.png`` and ``RUN_DIR/summary.json`` follow.

Weight averaging: floating-point tensors of the top-k state dicts (BatchNorm
running statistics included) are averaged in float64; integer buffers
(BatchNorm's ``num_batches_tracked``) are taken from the best epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from dpda.fileio import atomic_write_text
from dpda.models import build_model
from dpda.train.checkpoint import INIT_ONLY_OPTIONS, RUN_MODEL_FILE, inference_payload, save_checkpoint
from dpda.train.checkpointer import Checkpointer
from dpda.train.config import RunConfig
from dpda.train.ranks import ranks_agree
from dpda.train.run_log import RunLog

#: what validation returns: (dev loss, dev EER in %, EER threshold (score), bona fide scores (N,), spoof scores (M,))
DevResult = Tuple[float, float, float, np.ndarray, np.ndarray]
#: validation of a model on dev (None: the model being trained)
Validate = Callable[[Optional[nn.Module]], DevResult]


def average_state_dicts(states: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Mean of floating-point tensors (in float64, cast back); other tensors from the first (best) state."""
    out = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            out[k] = sum(s[k].double() for s in states).div(len(states)).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


def describe(candidate: Dict[str, Any]) -> str:
    """'average of epochs 2, 3 (dev loss 0.9270, EER 17.00%)' for a final-model candidate."""
    epochs = candidate["epochs"]
    if candidate["kind"] == "average":
        what = f"average of epochs {', '.join(map(str, epochs))}"
    else:
        what = f"best epoch {epochs[0]}"
    dev = candidate["dev"]
    return what + (f" (dev loss {dev[0]:.4f}, EER {dev[1]:.2f}%)" if dev is not None else "")


def choose_final_model(cfg: RunConfig, checkpointer: Checkpointer, device: torch.device, validate: Optional[Validate],
                       summary: Dict[str, Any], log: Callable[[str], None]) -> Tuple[nn.Module, Dict[str, Any]]:
    """The model of ``model.pt`` by ``train.final_model``; ``validate`` is None without a dev split.

    Sets ``summary["final_model"]`` (policy, choice, the candidates' dev
    numbers). Returns the model (on ``device``) and ``{"kind", "epochs",
    "dev"}`` of the choice (``dev``: a :data:`DevResult`, or None).
    """
    policy = cfg.train.final_model
    topk = checkpointer.topk
    kinds = ["average", "best"] if policy == "better" and validate is not None and len(topk) > 1 else \
        ["best" if policy == "best" else "average"]
    states = checkpointer.load_states()
    # the weights come from the states, not from the options that load weights
    build_options = {k: v for k, v in cfg.model.config.items() if k not in INIT_ONLY_OPTIONS}
    candidates: Dict[str, Dict[str, Any]] = {}
    for kind in kinds:
        picked = topk if kind == "average" else topk[:1]
        model = build_model(cfg.model.name, **build_options).to(device)
        model.load_state_dict(average_state_dicts([states[name] for _, _, name in picked]))
        dev = validate(model) if validate is not None else None
        candidates[kind] = {"kind": kind, "epochs": [e for _, e, _ in picked], "dev": dev, "model": model}
    if len(candidates) == 2:
        key = 0 if cfg.train.monitor == "dev_loss" else 1  # index into DevResult
        avg, best = candidates["average"], candidates["best"]
        chosen = avg if avg["dev"][key] <= best["dev"][key] else best
        log(f"final model: {describe(avg)} vs {describe(best)}: took the {chosen['kind']} "
            f"(train.final_model: better, by {cfg.train.monitor})")
    else:
        chosen = next(iter(candidates.values()))
    summary["final_model"] = {
        "policy": policy, "chosen": chosen["kind"], "epochs": chosen["epochs"],
        "candidates": {k: {"epochs": c["epochs"],
                           **({"dev_loss": c["dev"][0], "dev_eer": c["dev"][1]} if c["dev"] else {})}
                       for k, c in candidates.items()},
    }
    return chosen.pop("model"), chosen


def finished_summary(cfg: RunConfig, run_dir: Path, state: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The summary of a run whose last checkpoint (``state``) is its end and whose final model is written, else None."""
    ended = state["epoch"] >= cfg.train.epochs or (0 < cfg.train.patience <= state["trainer"]["bad_epochs"])
    summary_file = run_dir / "summary.json"
    if not (ended and state["batch"] == 0 and (run_dir / RUN_MODEL_FILE).is_file() and summary_file.is_file()):
        return None
    try:
        return json.loads(summary_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # an unreadable summary: finish again


def finish_run(
    cfg: RunConfig,
    run_dir: Path,
    *,
    model: nn.Module,
    history: List[Dict[str, Any]],
    checkpointer: Checkpointer,
    stopped_early: bool,
    world: int,
    device: torch.device,
    validate: Optional[Validate],
    monitored: Callable[[Dict[str, Any]], float],
    run_log: RunLog,
) -> Dict[str, Any]:
    """Write ``model.pt``, the plots and ``summary.json`` (main rank, when an epoch was kept); return the summary.

    Args:
        model: the trained model (compared across ranks).
        history: the epoch records, in order.
        monitored: an epoch record -> the monitored value (lower is better).
    """
    summary: Dict[str, Any] = {"run_dir": str(run_dir), "epochs": len(history), "stopped_early": stopped_early,
                               "world_size": world}
    if world > 1:
        summary["ranks_in_sync"] = ranks_agree(model)
        if not summary["ranks_in_sync"]:
            run_log("warning: the ranks' weights differ at the end of training")
    if not (run_log.is_main and checkpointer.topk):
        return summary
    final, chosen = choose_final_model(cfg, checkpointer, device, validate, summary, run_log)
    threshold, calibration = None, None
    if chosen.get("dev") is not None:
        dev_loss, dev_eer, threshold, bona, spoof = chosen["dev"]
        from dpda.metrics.calibration import fit_logistic_calibration

        a, b = fit_logistic_calibration(bona, spoof)
        calibration = {"a": float(a), "b": float(b)}
        summary.update(final_dev_loss=dev_loss, final_dev_eer=dev_eer)
    save_checkpoint(run_dir / RUN_MODEL_FILE, inference_payload(
        cfg.model.name, cfg.model.config, final, cfg.data.sample_rate, cfg.data.crop_samples,
        threshold=threshold, calibration=calibration, averaged_epochs=chosen["epochs"],
        final_model=chosen["kind"]))
    best = min(history, key=monitored)
    summary.update(best_epoch=best["epoch"], averaged_epochs=chosen["epochs"], history=history)
    try:
        from dpda.plotting import plot_training

        summary["plots"] = plot_training(history, run_log.step_records(), run_dir / "plots")
    except Exception as e:  # plots must never lose a finished run
        run_log(f"warning: could not write plots: {e}")
    written = {k: v for k, v in summary.items() if k != "history"}
    atomic_write_text(run_dir / "summary.json", json.dumps(written, indent=2))
    run_log(f"finished: {len(history)} epoch(s), best epoch {best['epoch']}; model.pt is the "
            f"{describe({**chosen, 'dev': None})}: {run_dir / RUN_MODEL_FILE}")
    return summary


__all__ = ["DevResult", "Validate", "average_state_dicts", "choose_final_model", "describe", "finish_run",
           "finished_summary"]
