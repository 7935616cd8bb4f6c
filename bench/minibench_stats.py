"""Paired statistics of a minibench grid: every method against the baseline, per split and per attack.

Reads each cell's scores (archived, else its run folder's score files), aligns them with the split's
protocol and hands them to :mod:`dpda.evaluation.paired` (hierarchical bootstrap over seeds and test
trials; Student-t over seeds).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minibench_archive import as_store  # noqa: E402
from minibench_report import SPLITS  # noqa: E402


def split_manifest(minibench: Path, split: str):
    from dpda.data import load_manifest

    return load_manifest("asvspoof2019", minibench / "protocols" / f"minibench.{split}.txt",
                         root=minibench / "flac" / split)


def _split_key(minibench: Path, split: str) -> Dict[str, Any]:
    """The split's trials in key order: the manifest, labels and attacks (for aligning score files)."""
    manifest = split_manifest(minibench, split)
    labels = np.array([u.label for u in manifest.utterances], dtype=object)
    attacks = np.array([u.attack or "" for u in manifest.utterances], dtype=object)
    return {"manifest": manifest, "bona": labels == "bonafide", "spoof": labels == "spoof", "attacks": attacks}


def _run_scores(out: Any, method: str, seed: int, split: str, key: Dict[str, Any]) -> Optional[np.ndarray]:
    """A run's scores of ``split`` (archived, else its score file) aligned with the key (None when it has none)."""
    from dpda.evaluation import join_scores

    got = as_store(out).scores(method, seed, split)
    if got is None:
        return None
    scores, path = got
    return join_scores(key["manifest"], scores, scores_path=path).scores


def paired_stats(grid: Dict[str, Any], results: Dict[str, List[Dict[str, Any]]], out: Any, minibench: Path,
                 n_boot: int = 2000, n_boot_attack: int = 1000, boot_seed: int = 0) -> Dict[str, Any]:
    """Every method against the baseline, per split and per attack: :func:`dpda.evaluation.paired.compare`.

    Paired over the seeds both have; from the score files (hierarchical bootstrap over seeds and test
    trials) when every run has them, else from the per-seed EERs (a bootstrap over seeds only, flagged).
    ``out``: the :class:`CellStore` (or run folder) the score files are read from.
    """
    from dpda.evaluation.paired import Trials, compare, compare_eers

    base = grid["baseline"]
    by_seed = {m: {r["seed"]: r for r in rs} for m, rs in results.items()}
    stats: Dict[str, Any] = {"baseline": base, "n_boot": n_boot, "n_boot_attack": n_boot_attack, "boot_seed": boot_seed,
                             "splits": {}}
    if not by_seed.get(base):
        return stats
    for split in SPLITS:
        key = _split_key(minibench, split)
        attacks = sorted({a for a in key["attacks"][key["spoof"]] if a})
        entry: Dict[str, Any] = {"n_bona": int(key["bona"].sum()), "n_spoof": int(key["spoof"].sum()),
                                 "attack_spoofs": {a: int(((key["attacks"] == a) & key["spoof"]).sum()) for a in attacks},
                                 "methods": {}}
        for m in grid["methods"]:
            name = m["name"]
            if name == base or not by_seed.get(name):
                continue
            seeds = sorted(set(by_seed[name]) & set(by_seed[base]))
            if not seeds:
                continue
            names = (name, base)
            # a tuned row's runs live in the folder of the candidate it was tuned to
            scores = {(who, s): _run_scores(out, by_seed[who][s].get("tuned_from", who), s, split, key)
                      for who in names for s in seeds}
            if all(v is not None for v in scores.values()):
                def trials(who, mask):
                    return {s: Trials.of(scores[(who, s)][key["bona"]], scores[(who, s)][mask]) for s in seeds}

                pooled = compare(trials(name, key["spoof"]), trials(base, key["spoof"]), names=names, n_boot=n_boot,
                                 seed=boot_seed)
                per_attack = {}
                for a in attacks:
                    mask = key["spoof"] & (key["attacks"] == a)
                    per_attack[a] = compare(trials(name, mask), trials(base, mask), names=names,
                                            n_boot=n_boot_attack, seed=boot_seed).as_dict()
            else:
                pooled = compare_eers({s: by_seed[name][s]["eer"][split] for s in seeds},
                                      {s: by_seed[base][s]["eer"][split] for s in seeds}, names=names, n_boot=n_boot,
                                      seed=boot_seed)
                per_attack = {}
            entry["methods"][name] = {"pooled": pooled.as_dict(), "per_attack": per_attack}
        stats["splits"][split] = entry
    return stats
