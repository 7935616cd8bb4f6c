"""A small *synthetic* anti-spoofing corpus, generated procedurally for ``dpda demo``.

.. warning::

   Nothing in this corpus is speech. The "bona fide" files are buzzes and hisses
   from a textbook source-filter model, and the "spoofs" are the same kind of
   signal passed through crude, hand-written imitations of vocoder artefacts.
   No real recordings, TTS or voice conversion systems are involved. Results on
   this corpus say nothing about real deepfake detection. It exists so that the
   demo and the smoke tests can run the whole pipeline (data -> augmentation ->
   training -> scoring) on a CPU in minutes, with nothing to download.

:func:`make_synthetic_corpus` writes, under ``out_dir``::

    audio/<split>/<utt_id>.flac     16-bit mono FLAC, all exactly ``seconds`` long
    train.csv dev.csv test.csv test_shifted.csv
    corpus.json                     parameters and counts (written last)

Each CSV is a ``generic`` protocol (see :mod:`dpda.data.generic`) with header
``path,label,speaker,attack,utt_id``. Paths are relative to the CSV's folder,
labels are ``bonafide``/``spoof``, and ``attack`` is ``-`` for bona fide.
``test_shifted.csv`` also has a ``condition`` column.

Splits
------
* ``train`` (speakers ``S01``-``S08``), ``dev`` (``S09``-``S11``), ``test``
  (``S12``-``S15``): in-domain, and the speakers do not overlap between splits.
  Half the files of each split are bona fide. The spoofs are spread evenly over
  the four attack systems, which all appear in every split.
* ``test_shifted``: the ``test`` utterances (file ``i`` has the same content,
  label, speaker and attack as ``test`` file ``i`` when the two splits are the
  same size) sent through a telephone-like channel. Its ``condition`` value is
  ``tel-<quant>-<noise><snr>``, e.g. ``tel-mulaw-pink15``: a band-pass filter
  with random edges (200-400 Hz to 3.0-3.6 kHz); then coloured noise
  (``white``/``pink``/``brown``) at 10, 15 or 20 dB SNR; then quantisation,
  either 8-bit mu-law (``mulaw``) or 7-bit linear PCM (``pcm7``), at a random
  level.

Reproducibility: every file comes from its own
``np.random.SeedSequence(seed, spawn_key=...)``. The corpus therefore depends
only on the parameters, not on ``workers``. When ``out_dir`` already holds a
complete corpus made with the same parameters (its ``corpus.json`` matches and
every file exists), that corpus is reused and nothing is written.

The signals themselves (what "bona fide" and each attack sound like) are
described and made in :mod:`dpda.data.synthesis`.
"""

from __future__ import annotations

import csv
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from dpda.data.synthesis import (  # the signal model; the plan below uses its seed codes
    _CONTENT_CODE,
    _PLAN_CODE,
    ATTACKS,
    CORPUS_VERSION,
    SPEAKERS,
    SPLITS,
    _rng,
    synthesize_utterance,
)
from dpda.fileio import atomic_path

__all__ = [
    "ATTACKS",
    "CORPUS_VERSION",
    "SPLITS",
    "SPEAKERS",
    "make_synthetic_corpus",
    "synthesize_utterance",
]


def _split_plan(seed: int, split: str, count: int) -> List[Tuple[str, Optional[str], str]]:
    """``(label, attack, speaker)`` per file: half bona fide, attacks and speakers cycled, shuffled."""
    speakers = SPEAKERS[split]
    attacks = list(ATTACKS)
    n_bona = (count + 1) // 2
    rows: List[Tuple[str, Optional[str], str]] = []
    for i in range(n_bona):
        rows.append(("bonafide", None, speakers[i % len(speakers)]))
    for i in range(count - n_bona):
        rows.append(("spoof", attacks[i % len(attacks)], speakers[(i // len(attacks) + i) % len(speakers)]))
    order = _rng(seed, _PLAN_CODE, _CONTENT_CODE[split]).permutation(count)
    return [rows[j] for j in order]


def _job(args: Tuple) -> Optional[str]:
    seed, split, index, label, attack, speaker, seconds, sr, path = args
    import soundfile as sf

    x, condition = synthesize_utterance(
        seed, split, index, label, attack, speaker, seconds=seconds, sample_rate=sr
    )
    with atomic_path(path) as tmp:
        sf.write(tmp, x, sr, format="FLAC", subtype="PCM_16")
    return condition


def _complete(out_dir: Path, params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The stored ``corpus.json`` when it matches ``params`` and every file is there."""
    meta_path = out_dir / "corpus.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("params") != params:
        return None
    for split in SPLITS:
        proto = out_dir / f"{split}.csv"
        if not proto.is_file():
            return None
        with open(proto, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if len(rows) != params[f"n_{split}"]:
            return None
        if not all((out_dir / r["path"]).is_file() for r in rows):
            return None
    return meta


def make_synthetic_corpus(
    out_dir: Union[str, os.PathLike],
    *,
    n_train: int = 400,
    n_dev: int = 100,
    n_test: int = 200,
    n_test_shifted: Optional[int] = None,
    seconds: float = 2.0,
    sample_rate: int = 16000,
    seed: int = 0,
    workers: Optional[int] = None,
) -> Dict[str, Any]:
    """Write the synthetic corpus under ``out_dir`` (see the module docstring), or reuse it.

    ``n_test_shifted`` defaults to ``n_test``. ``workers`` is the number of
    processes: ``None`` means one per CPU (at most 8), and ``1`` or ``0`` means
    in this process. The result does not depend on it.

    Returns a dict with ``out_dir``, ``protocols`` (split -> CSV path),
    ``counts`` (split -> {"bonafide", "spoof", "attacks": {id: n}}),
    ``params``, ``reused`` (True if an existing corpus was kept) and
    ``seconds_taken``.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if n_test_shifted is None:
        n_test_shifted = n_test
    sizes = {"train": n_train, "dev": n_dev, "test": n_test, "test_shifted": n_test_shifted}
    for name, value in sizes.items():
        if int(value) != value or value < 0:
            raise ValueError(f"n_{name} must be a non-negative integer, got {value!r}")
    if not seconds > 0.2:
        raise ValueError(f"seconds must be > 0.2, got {seconds!r}")
    if int(sample_rate) != sample_rate or sample_rate < 8000:
        raise ValueError(f"sample_rate must be an integer >= 8000, got {sample_rate!r}")
    params = {
        "version": CORPUS_VERSION,
        **{f"n_{k}": int(v) for k, v in sizes.items()},
        "seconds": float(seconds),
        "sample_rate": int(sample_rate),
        "seed": int(seed),
    }
    protocols = {split: str(out_dir / f"{split}.csv") for split in SPLITS}

    meta = _complete(out_dir, params)
    if meta is not None:
        return {
            "out_dir": str(out_dir), "protocols": protocols, "counts": meta["counts"],
            "params": params, "reused": True, "seconds_taken": time.perf_counter() - start,
        }

    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / "corpus.json"
    if meta_path.exists():
        meta_path.unlink()  # an interrupted run must not look complete

    jobs = []
    rows: Dict[str, List[List[str]]] = {}
    for split in SPLITS:
        (out_dir / "audio" / split).mkdir(parents=True, exist_ok=True)
        rows[split] = []
        for i, (label, attack, speaker) in enumerate(_split_plan(seed, split, sizes[split])):
            utt = f"{split}_{i:05d}"
            rel = f"audio/{split}/{utt}.flac"
            rows[split].append([rel, label, speaker, attack or "-", utt])
            jobs.append((int(seed), split, i, label, attack, speaker, float(seconds), int(sample_rate),
                         str(out_dir / rel)))

    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    workers = max(1, min(int(workers), len(jobs) // 4 or 1))
    conditions: Optional[List[Optional[str]]] = None
    if workers > 1:
        try:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                conditions = list(pool.map(_job, jobs, chunksize=8))
        except (OSError, PermissionError, NotImplementedError):  # no process support (sandboxes)
            conditions = None
    if conditions is None:
        conditions = [_job(j) for j in jobs]

    counts: Dict[str, Any] = {}
    k = 0
    for split in SPLITS:
        header = ["path", "label", "speaker", "attack", "utt_id"]
        if split == "test_shifted":
            header.append("condition")
        attack_counts: Dict[str, int] = {}
        for row in rows[split]:
            if split == "test_shifted":
                row.append(conditions[k] or "-")
            k += 1
            if row[3] != "-":
                attack_counts[row[3]] = attack_counts.get(row[3], 0) + 1
        with atomic_path(out_dir / f"{split}.csv") as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(header)
                w.writerows(rows[split])
        n_bona = sum(r[1] == "bonafide" for r in rows[split])
        counts[split] = {"bonafide": n_bona, "spoof": len(rows[split]) - n_bona,
                         "attacks": dict(sorted(attack_counts.items()))}

    meta = {
        "description": "synthetic toy anti-spoofing corpus (not speech, not TTS); demo / smoke tests only",
        "params": params,
        "counts": counts,
        "speakers": {s: list(SPEAKERS[s]) for s in SPLITS},
        "attacks": ATTACKS,
    }
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return {
        "out_dir": str(out_dir), "protocols": protocols, "counts": counts, "params": params,
        "reused": False, "seconds_taken": time.perf_counter() - start,
    }
