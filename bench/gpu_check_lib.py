"""Helpers of ``bench/gpu_check.py``: wheels, subprocess stages, a deadline, result parsing, the table.

Nothing here imports torch or dpda, so the helpers can be unit-tested (and the
wheels installed) before either is importable.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]


def tail(text: str, lines: int = 25, chars: int = 3000) -> str:
    """The last ``lines`` lines of ``text``, at most ``chars`` characters."""
    out = "\n".join(text.rstrip().splitlines()[-lines:])
    return out[-chars:]


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Deadline:
    """Wall-clock budget of the whole check; ``limit_s`` <= 0 means none."""

    def __init__(self, limit_s: float, reserve_s: float = 15.0) -> None:
        self.start = time.monotonic()
        self.limit_s = limit_s
        self.reserve_s = reserve_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return float("inf") if self.limit_s <= 0 else self.limit_s - self.elapsed()

    def timeout(self, stage_s: float) -> float:
        """Timeout of a stage: its own limit, cut so that ``reserve_s`` is left for the summary (<= 0: no time)."""
        return min(stage_s, self.remaining() - self.reserve_s)


def ensure_modules(modules: Sequence[str], wheel_dir: Path, target: Path) -> Dict[str, Any]:
    """Make ``modules`` importable, installing the wheels of ``wheel_dir`` into ``target`` if one is missing.

    Installs every ``*.whl`` of ``wheel_dir`` with ``pip install --no-index --no-deps
    --target`` (nothing is downloaded), then puts ``target`` first on ``sys.path`` and on
    ``PYTHONPATH`` (for subprocesses). Returns what was missing, installed and still missing.
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    record: Dict[str, Any] = {"missing_before": missing, "installed": [], "target": None, "ok": not missing}
    if not missing:
        return record
    wheels = sorted(wheel_dir.glob("*.whl")) if wheel_dir.is_dir() else []
    if not wheels:
        record["error"] = f"{', '.join(missing)} not importable and no wheels in {wheel_dir} (run bench/gpu_wheels.sh)"
        return record
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--no-cache-dir", "--upgrade", "--target", str(target), *map(str, wheels)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        record["error"] = f"pip install failed ({proc.returncode}): {tail(proc.stderr + proc.stdout, 15)}"
        return record
    record["installed"] = [w.name for w in wheels]
    record["target"] = str(target)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH", "")) if p)
    importlib.invalidate_caches()
    still = [m for m in missing if importlib.util.find_spec(m) is None]
    record["ok"] = not still
    if still:
        record["error"] = f"still not importable after installing the wheels: {', '.join(still)}"
    return record


def source_digest(root: Path) -> str:
    """SHA-256 (first 16 hex digits) over the paths and contents of ``root``'s ``*.py`` files."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def git_commit(repo: Path) -> Optional[str]:
    """``HEAD``'s commit (with ``+dirty`` when tracked files changed), or None without git / .git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=20)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=20)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_command(cmd: Sequence[str], timeout: float, log: Optional[Path] = None, env: Optional[Mapping[str, str]] = None,
                cwd: Path = REPO) -> Dict[str, Any]:
    """Run ``cmd`` with a timeout; returns rc, seconds, stdout, stderr and ``timed_out``.

    Both streams are appended to ``log`` (when given) under a header naming the command.
    A ``timeout`` <= 0 does not run the command (``rc`` None, ``skipped`` True).
    """
    result: Dict[str, Any] = {"cmd": " ".join(map(str, cmd)), "rc": None, "seconds": 0.0, "timed_out": False,
                              "skipped": False, "stdout": "", "stderr": ""}
    if timeout <= 0:
        result["skipped"] = True
        result["stderr"] = "not run: the time limit of the check was reached"
        return result
    t0 = time.monotonic()
    try:
        proc = subprocess.run(list(map(str, cmd)), cwd=cwd, env=dict(env) if env is not None else None,
                              capture_output=True, text=True, timeout=timeout)
        result.update(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
    except subprocess.TimeoutExpired as e:
        decode = (lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or ""))
        result.update(timed_out=True, stdout=decode(e.stdout),
                      stderr=decode(e.stderr) + f"\n[killed after {timeout:.0f} s]")
    result["seconds"] = round(time.monotonic() - t0, 2)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"\n===== {result['cmd']}\n===== rc {result['rc']}, {result['seconds']} s"
                    f"{', TIMED OUT' if result['timed_out'] else ''}\n"
                    f"--- stdout\n{result['stdout']}\n--- stderr\n{result['stderr']}\n")
    return result


def stage_record(res: Dict[str, Any], ok: bool, **extra: Any) -> Dict[str, Any]:
    """A stage's summary entry from a :func:`run_command` result (stderr tail kept when it failed)."""
    status = "ok" if ok else ("skipped" if res["skipped"] else "timeout" if res["timed_out"] else "failed")
    rec: Dict[str, Any] = {"status": status, "ok": ok, "rc": res["rc"], "seconds": res["seconds"], "cmd": res["cmd"]}
    if not ok:
        rec["stderr_tail"] = tail(res["stderr"]) or tail(res["stdout"])
    rec.update(extra)
    return rec


def parse_junit(path: Path) -> Dict[str, Any]:
    """Counts (tests, passed, failed, errors, skipped) and failing test ids from a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    return {
        "tests": counts["tests"], "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "failed": counts["failures"], "errors": counts["errors"], "skipped": counts["skipped"], "failed_tests": failed,
    }


def train_metrics(metrics_path: Path, batch_size: int, warmup: int = 3) -> Dict[str, Any]:
    """Per-step time and epoch statistics of a ``dpda train`` run from its ``metrics.jsonl``.

    Step time = ``batch_size / clips_per_s`` of each step record (the trainer's own
    timing of the step, data loading excluded); the median leaves out the first
    ``warmup`` steps when more than ``2 * warmup`` were logged (kernel selection, allocator warm-up).
    """
    steps, epochs = [], []
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("type") == "step":
            steps.append(rec)
        elif rec.get("type") == "epoch":
            epochs.append(rec)
    dts = [batch_size / r["clips_per_s"] for r in steps if r.get("clips_per_s")]
    timed = dts[warmup:] if len(dts) > 2 * warmup else dts
    n = sum(int(e.get("steps", 0)) for e in epochs)
    conflicts = sum(float(e.get("conflict_rate", 0.0)) * int(e.get("steps", 0)) for e in epochs)
    last = epochs[-1] if epochs else {}
    return {
        "steps_logged": len(steps),
        "s_per_step_median": round(statistics.median(timed), 4) if timed else None,
        "s_per_step_mean": round(statistics.fmean(timed), 4) if timed else None,
        "first_step_s": round(dts[0], 4) if dts else None,
        "conflict_rate": round(conflicts / n, 4) if n else None,
        "mean_cos": last.get("mean_cos") if n else None,
        "train_loss": last.get("train_loss"),
        "dev_eer": last.get("dev_eer"),
        "skipped_steps": sum(int(e.get("skipped", 0)) for e in epochs),
    }


def overrides(values: Mapping[str, Any]) -> List[str]:
    """``--set KEY=VALUE`` arguments; values are written as JSON, which the YAML parser reads back as given."""
    out: List[str] = []
    for key, value in values.items():
        out += ["--set", f"{key}={json.dumps(value)}"]
    return out


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def format_table(summary: Mapping[str, Any]) -> str:
    """The short end-of-run table: one line per stage, then the benchmark rows."""
    lines = [f"{'stage':<18} {'status':<8} {'seconds':>8}  result"]
    for name, st in summary.get("stages", {}).items():
        seconds = _fmt(st.get("seconds"), ".1f")
        lines.append(f"{name:<18} {st.get('status', '?'):<8} {seconds:>8}  {st.get('brief', '')}")
    bench = summary.get("stages", {}).get("bench", {}).get("results") or []
    if bench:
        procs = [k for k in bench[0]["ratio_to_plain"] if k != "plain"]
        lines += ["", "dual-path step (time and peak memory relative to the plain 2B step):",
                  f"{'model':<30} {'amp':>4} {'plain s':>8} {'plain GiB':>9} " + " ".join(f"{k:>17}" for k in procs)]
        for r in bench:
            cells = [f"{r['ratio_to_plain'][k]:.2f}x/{r['mem_over_plain'][k]:.2f}x" for k in procs]
            lines.append(f"{r['model']:<30} {r['amp']:>4} {r['median_s']['plain']:>8.3f} "
                         f"{r['peak_bytes']['plain'] / 2**30:>9.2f} " + " ".join(f"{c:>17}" for c in cells))
        lines.append("(cells: time x / memory x)")
    lines.append(f"overall: {'OK' if summary.get('ok') else 'FAILED'} in {_fmt(summary.get('seconds_total'), '.0f')} s")
    return "\n".join(lines)
