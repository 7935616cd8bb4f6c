"""Where a minibench cell's results live: its run folder, and the tracked results archive.

``runs/`` (a grid's ``--out``) is not tracked, so it is lost with the checkout; the archive is the
small, committed record of every finished cell, from which ``bench/minibench.py`` rebuilds every
table, plot and paired statistic without the run folders. This module is the one place that knows
both layouts; ``bench/minibench.py`` reads a cell through :class:`CellStore` only.

Run folder (``OUT/<method>/seed<k>/``, written by ``bench/minibench.py`` and ``dpda train``)::

    result.json            what the tables are built from (written when the cell is finished)
    bench_wall.json        measured wall time: {"train": s, "score": s}
    bench_env.json         provenance recorded when the cell started training (commit, CPU, threads)
    summary.json, env.json, config.yaml, metrics.jsonl, scores/<split>.txt, model.pt, checkpoints/, ...

Archive (``ARCHIVE/<name of OUT>/<method>/seed<k>/``, by default ``docs/results/minibench/...``)::

    cell.json              the result, every epoch record, dev metrics, summary, wall times, the cell's
                           config and the run's resolved config, provenance, and a checksum per score file
    eval.txt.gz            the run's scores/eval.txt, gzip with mtime 0 (same run => same bytes)
    ood_dev.txt.gz         the run's scores/ood_dev.txt

``cell.json`` is written last, so a cell folder without it is an interrupted archive and does not
count. Checkpoints, models and audio are never archived. Paths inside the archived JSON are written
relative to ``<minibench>``, ``<out>`` and ``<repo>``, so archiving the same run from another checkout
gives the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import subprocess
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from dpda.fileio import atomic_path, atomic_write_text

#: the format tag of ``cell.json``
FORMAT = "dpda-minibench-cell/1"
CELL_FILE = "cell.json"
RESULT_FILE = "result.json"
WALLS_FILE = "bench_wall.json"
PROVENANCE_FILE = "bench_env.json"
#: the scored splits of a cell
SPLITS = ("eval", "ood_dev")
#: what the tables compare between a fresh run and the archived one of the same cell
AGREEMENT_KEYS = ("eer", "best_epoch", "epochs_run")


class ArchiveError(SystemExit):
    """A missing, corrupt or mismatched archive file; the message names the file."""


# ----------------------------------------------------------------------------- bytes and provenance


def gzip_bytes(data: bytes) -> bytes:
    """gzip ``data`` deterministically: no file name, mtime 0, level 9 (same input => same bytes)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path`` through a temporary file (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _cpu_model() -> Optional[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(repo: Path, *args: str) -> Optional[str]:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


#: environment variables that select CPU kernels (recorded in a cell's provenance)
NUMERICS_ENV = ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "ATEN_CPU_CAPABILITY")


def machine_provenance(repo: Path, recorded: str) -> Dict[str, Any]:
    """This checkout's commit (and whether src/, bench/ or configs/ differ from it) and this machine's CPU.

    ``numerics_env``: the variables that choose kernels, and so last bits, without changing the code:
    OpenBLAS's (``OPENBLAS_CORETYPE``, set to Haswell on some AMD EPYC machine images here), NumPy's
    and ATen's SIMD dispatch."""
    import numpy
    import torch

    status = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", "src", "bench", "configs")
    return {
        "recorded": recorded,
        "commit": _git(repo, "rev-parse", "HEAD"),
        "code_modified": None if status is None else bool(status),
        "cpu_model": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "numerics_env": {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ},
        "platform": platform.platform(),
    }


def record_provenance(run_dir: Path, repo: Path, recorded: str = "training start") -> Dict[str, Any]:
    """``run_dir/bench_env.json``: written once (the first time the cell trains), then read back."""
    path = run_dir / PROVENANCE_FILE
    if path.exists():
        return json.loads(path.read_text())
    prov = machine_provenance(repo, recorded)
    atomic_write_text(path, json.dumps(prov, indent=1, sort_keys=True))
    return prov


def _relative_paths(obj: Any, subs: Sequence[Tuple[str, str]]) -> Any:
    """``obj`` with every string's path prefixes replaced by their placeholders (longest prefix first)."""
    if isinstance(obj, str):
        for prefix, name in subs:
            if obj == prefix or obj.startswith(prefix + os.sep):
                return name + obj[len(prefix):]
            obj = obj.replace(prefix + os.sep, name + os.sep)
        return obj
    if isinstance(obj, dict):
        return {k: _relative_paths(v, subs) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_relative_paths(v, subs) for v in obj]
    return obj


def path_placeholders(minibench: Path, out: Path, repo: Path) -> List[Tuple[str, str]]:
    subs = [(str(Path(minibench).resolve()), "<minibench>"), (str(Path(out).resolve()), "<out>"),
            (str(Path(repo).resolve()), "<repo>")]
    return sorted(subs, key=lambda s: -len(s[0]))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArchiveError(f"{path}: missing ({what})") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ArchiveError(f"{path}: unreadable ({what}): {e}") from None


# ----------------------------------------------------------------------------- writing


def epoch_records(run_dir: Path) -> List[Dict[str, Any]]:
    """The run's per-epoch records from ``metrics.jsonl``, one per epoch (a resumed run's repeat: the last one)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    by_epoch: Dict[int, Dict[str, Any]] = {}
    for r in records:
        if r.get("type") == "epoch":
            by_epoch[r["epoch"]] = r
    return [by_epoch[e] for e in sorted(by_epoch)]


def write_cell(run_dir: Path, dest: Path, *, cell_config: Mapping[str, Any], minibench: Path, out: Path,
               repo: Path) -> Dict[str, Any]:
    """Archive the finished run ``run_dir`` into ``dest``; returns what ``cell.json`` holds.

    ``cell_config`` is the cell's config as ``bench/minibench.py`` built it (base + overrides + seed), kept
    to tell an archived cell from a changed recipe. The provenance is ``bench_env.json`` of the run (written
    now, marked as such, for a run trained before it existed).
    """
    result_path = run_dir / RESULT_FILE
    if not result_path.exists():
        raise ArchiveError(f"{result_path}: missing: {run_dir} is not a finished cell")
    subs = path_placeholders(minibench, out, repo)
    result = json.loads(result_path.read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("final_dev_eer", "final_dev_loss"):  # results written before the field existed
        if result.get(key) is None and summary.get(key) is not None:
            result[key] = summary[key]
    env_path = run_dir / "env.json"
    scores: Dict[str, Any] = {}
    blobs: Dict[str, bytes] = {}
    for split in SPLITS:
        data = (run_dir / "scores" / f"{split}.txt").read_bytes()
        name = f"{split}.txt.gz"
        blobs[name] = gzip_bytes(data)
        scores[split] = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "lines": data.count(b"\n")}
    cell = {
        "format": FORMAT,
        "method": result["method"], "seed": result["seed"],
        "result": result,
        "epochs": epoch_records(run_dir),
        "summary": {k: v for k, v in summary.items() if k not in ("run_dir", "plots")},
        "walls": json.loads((run_dir / WALLS_FILE).read_text()),
        "cell_config": _relative_paths(dict(cell_config), subs),
        "run_config": _relative_paths(_load_yaml(run_dir / "config.yaml"), subs),
        "provenance": {
            "run_env": _relative_paths(json.loads(env_path.read_text()), subs) if env_path.exists() else None,
            "bench": record_provenance(run_dir, repo, "archive (not recorded when the cell trained)")},
        "scores": scores,
    }
    for name, blob in blobs.items():
        write_bytes_atomic(dest / name, blob)
    atomic_write_text(dest / CELL_FILE, json.dumps(cell, indent=1, sort_keys=True) + "\n")
    return cell


def _load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


# ----------------------------------------------------------------------------- reading


def read_cell(dest: Path) -> Dict[str, Any]:
    """``dest/cell.json``, checked: its format and the fields the tables read."""
    path = dest / CELL_FILE
    cell = _read_json(path, "the archived cell")
    if not isinstance(cell, dict) or cell.get("format") != FORMAT:
        found = cell.get("format") if isinstance(cell, dict) else type(cell).__name__
        raise ArchiveError(f"{path}: not an archived minibench cell (format {found!r}, expected {FORMAT!r})")
    missing = [k for k in ("result", "walls", "scores", "cell_config") if not isinstance(cell.get(k), dict)]
    missing += [f"result.{k}" for k in ("method", "seed", "eer", "per_epoch") if k not in cell.get("result", {})]
    if missing:
        raise ArchiveError(f"{path}: incomplete archived cell, no {', '.join(missing)}")
    return cell


def read_scores_text(dest: Path, cell: Mapping[str, Any], split: str) -> bytes:
    """The uncompressed score file of ``split``, checked against the checksum in ``cell.json``."""
    entry = cell["scores"].get(split)
    if not entry:
        raise ArchiveError(f"{dest / CELL_FILE}: no score file of {split} in the archived cell")
    path = dest / entry["file"]
    try:
        data = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise ArchiveError(f"{path}: missing (the archived {split} scores listed in {dest / CELL_FILE})") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError; a truncated file an EOFError
        raise ArchiveError(f"{path}: corrupt gzip file ({e})") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ArchiveError(f"{path}: corrupt: its content does not match the sha256 in {dest / CELL_FILE}")
    return data


def parse_scores(data: bytes, source: Path) -> "OrderedDict[str, float]":
    """``UTT_ID SCORE`` lines (what ``dpda score`` writes) into ``{utt_id: score}``."""
    scores: "OrderedDict[str, float]" = OrderedDict()
    for no, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            scores[fields[0]] = float(fields[1])
        except (IndexError, ValueError):
            raise ArchiveError(f"{source}: line {no}: expected 'UTT_ID SCORE', got {line!r}") from None
    return scores


# ----------------------------------------------------------------------------- one view of both


class CellStore:
    """Where a grid's cells are read from: the run folder ``out`` and the archive ``archive_root/<out.name>``.

    A cell is finished when it is archived or has ``result.json`` in ``out``. Which one the tables read:
    ``prefer="archive"`` (the default) the archive when the cell has one, else the run folder;
    ``prefer="runs"`` (``--retrain``) the run folder only, the archive being what a rerun is compared to.
    ``archive_root=None``: no archive (the run folder alone).
    """

    def __init__(self, out: Path, archive_root: Optional[Path] = None, prefer: str = "archive") -> None:
        if prefer not in ("archive", "runs"):
            raise ValueError(f"prefer must be 'archive' or 'runs', got {prefer!r}")
        self.out = Path(out)
        self.archive = Path(archive_root) / self.out.name if archive_root is not None else None
        self.prefer = prefer
        self._cells: Dict[Tuple[str, int], Dict[str, Any]] = {}

    # where things are
    def run_dir(self, method: str, seed: int) -> Path:
        return self.out / method / f"seed{seed}"

    def archive_dir(self, method: str, seed: int) -> Optional[Path]:
        return self.archive / method / f"seed{seed}" if self.archive is not None else None

    def in_runs(self, method: str, seed: int) -> bool:
        return (self.run_dir(method, seed) / RESULT_FILE).exists()

    def in_archive(self, method: str, seed: int) -> bool:
        dest = self.archive_dir(method, seed)
        return dest is not None and (dest / CELL_FILE).exists()

    def source(self, method: str, seed: int) -> Optional[str]:
        """``"archive"``, ``"runs"`` or None (not finished): where the tables read this cell from."""
        if self.prefer == "archive" and self.in_archive(method, seed):
            return "archive"
        return "runs" if self.in_runs(method, seed) else None

    def cell(self, method: str, seed: int) -> Dict[str, Any]:
        """The archived cell (read and checked once)."""
        key = (method, seed)
        if key not in self._cells:
            self._cells[key] = read_cell(self.archive_dir(method, seed))
        return self._cells[key]

    # what the tables read
    def result(self, method: str, seed: int) -> Dict[str, Any]:
        if self.source(method, seed) == "archive":
            return json.loads(json.dumps(self.cell(method, seed)["result"]))  # a copy: callers may annotate it
        return json.loads((self.run_dir(method, seed) / RESULT_FILE).read_text())

    def runs_result(self, method: str, seed: int) -> Dict[str, Any]:
        return json.loads((self.run_dir(method, seed) / RESULT_FILE).read_text())

    def seconds(self, method: str, seed: int) -> float:
        """Wall time measured so far (training + scoring) of the cell, from where it is read (else its run folder)."""
        if self.source(method, seed) == "archive":
            walls = self.cell(method, seed)["walls"]
        else:
            path = self.run_dir(method, seed) / WALLS_FILE
            walls = json.loads(path.read_text()) if path.exists() else {}
        return float(walls.get("train", 0.0)) + float(walls.get("score", 0.0))

    def started(self, method: str, seed: int) -> bool:
        """Whether the run folder holds an unfinished cell's work (a checkpoint, scores or measured time)."""
        run_dir = self.run_dir(method, seed)
        return (run_dir / "checkpoints" / "last.pt").exists() or (run_dir / "scores").exists() or (
            run_dir / WALLS_FILE).exists()

    def dev_metric(self, result: Mapping[str, Any], by: str) -> Optional[float]:
        """A finished cell's dev metric ``by`` (``final_dev_eer``, ...): from its result, else the run's summary."""
        value = result.get(by)
        if value is None and self.source(result["method"], result["seed"]) == "runs":
            path = self.run_dir(result["method"], result["seed"]) / "summary.json"
            value = json.loads(path.read_text()).get(by) if path.exists() else None
        return None if value is None else float(value)

    def scores(self, method: str, seed: int, split: str) -> Optional[Tuple["OrderedDict[str, float]", Path]]:
        """The cell's per-utterance scores of ``split`` and the file they came from (None when it has none)."""
        if self.source(method, seed) == "archive":
            dest = self.archive_dir(method, seed)
            cell = self.cell(method, seed)
            data = read_scores_text(dest, cell, split)
            path = dest / cell["scores"][split]["file"]
            return parse_scores(data, path), path
        path = self.run_dir(method, seed) / "scores" / f"{split}.txt"
        if not path.exists():
            return None
        from dpda.evaluation import read_scores

        return read_scores(path), path

    # archive
    def archive_run(self, method: str, seed: int, *, cell_config: Mapping[str, Any], minibench: Path,
                    repo: Path) -> Path:
        """Archive the finished run of a cell (replacing an archived one); returns the archive folder."""
        dest = self.archive_dir(method, seed)
        if dest is None:
            raise ValueError("no archive folder given")
        self._cells.pop((method, seed), None)
        write_cell(self.run_dir(method, seed), dest, cell_config=cell_config, minibench=minibench, out=self.out,
                   repo=repo)
        return dest

    def config_difference(self, method: str, seed: int, cell_config: Mapping[str, Any], minibench: Path,
                          repo: Path) -> List[str]:
        """``KEY: archived -> now`` for each setting where the archived cell's config differs from ``cell_config``."""
        now = _relative_paths(dict(cell_config), path_placeholders(minibench, self.out, repo))
        return _diff(self.cell(method, seed)["cell_config"], json.loads(json.dumps(now)))

    def agreement(self, method: str, seed: int) -> Optional[Dict[str, Any]]:
        """The archived and the run-folder result of a cell side by side, when it has both (else None)."""
        if not (self.in_archive(method, seed) and self.in_runs(method, seed)):
            return None
        cell = self.cell(method, seed)
        archived, fresh = cell["result"], self.runs_result(method, seed)
        prov_path = self.run_dir(method, seed) / PROVENANCE_FILE
        fresh_prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
        same = all(archived.get(k) == fresh.get(k) for k in AGREEMENT_KEYS)
        return {
            "method": method, "seed": seed, "identical": same,
            "archived": {k: archived.get(k) for k in AGREEMENT_KEYS},
            "runs": {k: fresh.get(k) for k in AGREEMENT_KEYS},
            "eval_diff": fresh["eer"]["eval"] - archived["eer"]["eval"],
            "archived_cpu": (cell.get("provenance", {}).get("bench") or {}).get("cpu_model"),
            "runs_cpu": fresh_prov.get("cpu_model"),
            "archived_commit": (cell.get("provenance", {}).get("bench") or {}).get("commit"),
            "runs_commit": fresh_prov.get("commit"),
        }


def _diff(old: Any, new: Any, prefix: str = "") -> List[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: List[str] = []
        for k in sorted(set(old) | set(new), key=str):
            where = f"{prefix}.{k}" if prefix else str(k)
            if k not in old:
                out.append(f"{where}: (absent) -> {new[k]!r}")
            elif k not in new:
                out.append(f"{where}: {old[k]!r} -> (absent)")
            else:
                out += _diff(old[k], new[k], where)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


__all__ = ["AGREEMENT_KEYS", "ArchiveError", "CELL_FILE", "CellStore", "FORMAT", "epoch_records", "gzip_bytes",
           "machine_provenance", "parse_scores", "read_cell", "read_scores_text", "record_provenance", "write_cell"]


def as_store(out: Any) -> CellStore:
    """``out`` itself when it is a :class:`CellStore`, else a store of the run folder ``out`` alone (no archive)."""
    return out if isinstance(out, CellStore) else CellStore(Path(out))
