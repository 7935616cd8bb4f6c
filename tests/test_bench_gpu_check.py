"""bench/gpu_check.py: the whole smoke run on a CPU (every stage, the JSON summary) and its helpers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dpda.config import apply_overrides
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "gpu_check.py"
STAGES = ["wheels", "environment", "pytest", "bench", "corpus", "train_single", "train_dual", "train_dpda_joint",
          "train_dpda_split", "score", "detect"]


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lib = _load("bench_gpu_check_lib", "gpu_check_lib.py")

PROBE_TESTS = '''
import pytest

def test_cuda_probe_passes():
    assert True

def test_cuda_probe_skips():
    pytest.skip("needs CUDA")

def test_not_selected():
    raise AssertionError("-k cuda must leave this test out")
'''


def _run(args, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OUT": ""})


@pytest.mark.slow
def test_smoke_run_on_cpu_runs_every_stage(tmp_path):
    probe = tmp_path / "probe" / "test_probe.py"
    probe.parent.mkdir()
    probe.write_text(PROBE_TESTS)
    out = tmp_path / "summary.json"
    proc = _run(["--smoke", "--device", "cpu", "--out", str(out), "--work", str(tmp_path / "work"),
                 "--tests", str(probe)])
    s = json.loads(out.read_text())
    failed = {k: v.get("stderr_tail") or v.get("traceback") or v.get("brief")
              for k, v in s["stages"].items() if not v["ok"]}
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}\nfailed stages: {failed}"
    assert s["ok"] is True and s["smoke"] is True and s["device"] == "cpu"
    assert list(s["stages"]) == STAGES
    for name, st in s["stages"].items():
        assert st["status"] == "ok" and st["ok"] is True, (name, st)
        assert st["seconds"] >= 0
    env = s["stages"]["environment"]
    assert env["torch"] and env["cuda_available"] is False and env["dpda_src_digest"]
    pt = s["stages"]["pytest"]
    assert (pt["passed"], pt["skipped"], pt["failed"], pt["errors"]) == (1, 1, 0, 0)
    bench = s["stages"]["bench"]
    assert [(r["model"].split()[0], r["amp"]) for r in bench["results"]] == [
        ("xlsr_conformer_tcm", "bf16"), ("xlsr_conformer_tcm", "none"),
        ("xlsr_aasist", "bf16"), ("xlsr_aasist", "none")]
    for r in bench["results"]:
        assert set(r["ratio_to_plain"]) == {"plain", "public", "dual_joint", "dual_joint_1pass", "dual_joint_bbwd", "dual_split",
                                             "dual_split_1pass", "joint", "joint_1pass", "joint_bbwd", "split", "split_1pass"}
        assert r["batch_per_path"] == 2 and r["samples"] == 4000
        assert all(v > 0 for v in r["median_s"].values()) and all(v > 0 for v in r["peak_bytes"].values())
    for mode in ("single", "dual", "dpda_joint", "dpda_split"):
        tr = s["stages"][f"train_{mode}"]
        assert tr["steps_logged"] == 3 and tr["s_per_step_median"] > 0
        assert (tr["conflict_rate"] is None) == (mode == "single")
        assert "--set" in tr["cmd"] and "train.amp=" in tr["cmd"]
    # only the scored run keeps its model; no run keeps its checkpoints
    runs = tmp_path / "work" / "runs"
    assert (runs / "dpda_joint" / "model.pt").is_file() and not (runs / "dual" / "model.pt").exists()
    assert not any(runs.glob("*/checkpoints"))
    assert s["stages"]["score"]["n_scores"] == 4
    assert [r["decision"] in ("bonafide", "spoof") for r in s["stages"]["detect"]["results"]] == [True] * 4
    assert out.with_suffix(".log").is_file()
    assert "overall: OK" in proc.stdout and "train_dpda_split" in proc.stdout


def test_failures_are_recorded_and_the_next_stage_still_runs(tmp_path):
    out = tmp_path / "s.json"
    # cuda on this CPU machine: the environment stage fails; detect has no model; both are recorded, exit 1
    proc = _run(["--smoke", "--device", "cuda", "--out", str(out), "--work", str(tmp_path / "work"),
                 "--skip", "pytest,bench,train,score"])
    if "cuda_available\": true" in out.read_text():  # pragma: no cover - a machine with a GPU
        pytest.skip("a GPU is visible")
    assert proc.returncode == 1, proc.stderr[-2000:]
    s = json.loads(out.read_text())
    assert list(s["stages"]) == ["wheels", "environment", "corpus", "detect"]
    assert s["ok"] is False
    assert s["stages"]["environment"]["status"] == "failed"
    assert s["stages"]["corpus"]["status"] == "ok"
    assert s["stages"]["detect"]["status"] == "skipped" and "train_dpda_joint" in s["stages"]["detect"]["brief"]
    assert "overall: FAILED" in proc.stdout


def test_unknown_skip_group_is_refused():
    proc = _run(["--skip", "benchmark"])
    assert proc.returncode == 2 and "unknown group" in proc.stderr


# --------------------------------------------------------------------------- helpers
def test_run_command_records_failures_timeouts_and_the_time_limit(tmp_path):
    log = tmp_path / "log.txt"
    res = lib.run_command([sys.executable, "-c", "import sys; print('out'); sys.exit('boom')"], 30, log)
    assert res["rc"] == 1 and res["stdout"].strip() == "out" and "boom" in res["stderr"]
    rec = lib.stage_record(res, ok=False, brief="b")
    assert rec["status"] == "failed" and "boom" in rec["stderr_tail"] and rec["brief"] == "b"
    slow = lib.run_command([sys.executable, "-c", "import time; time.sleep(30)"], 0.5, log)
    assert slow["timed_out"] and slow["rc"] is None and lib.stage_record(slow, ok=False)["status"] == "timeout"
    skipped = lib.run_command([sys.executable, "-c", "pass"], 0, log)
    assert skipped["skipped"] and lib.stage_record(skipped, ok=False)["status"] == "skipped"
    text = log.read_text()
    assert "boom" in text and "TIMED OUT" in text


def test_deadline():
    assert lib.Deadline(0).remaining() == float("inf") and lib.Deadline(0).timeout(30) == 30
    d = lib.Deadline(100, reserve_s=10)
    assert 89 < d.timeout(1000) <= 90 and d.timeout(5) == 5
    assert lib.Deadline(5, reserve_s=10).timeout(30) < 0


def test_parse_junit(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="1" failures="1" skipped="2" tests="7">'
        '<testcase classname="tests.a" name="test_x[cuda]"><failure message="m"/></testcase>'
        '<testcase classname="tests.b" name="test_y[cuda]"><error message="e"/></testcase>'
        '<testcase classname="tests.c" name="test_z[cuda]"><skipped message="s"/></testcase>'
        '</testsuite></testsuites>')
    r = lib.parse_junit(xml)
    assert (r["tests"], r["passed"], r["failed"], r["errors"], r["skipped"]) == (7, 3, 1, 1, 2)
    assert r["failed_tests"] == ["tests.a::test_x[cuda]", "tests.b::test_y[cuda]"]


def test_train_metrics(tmp_path):
    path = tmp_path / "metrics.jsonl"
    times = [2.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.7]
    steps = [{"type": "step", "step": i + 1, "clips_per_s": 5 / dt} for i, dt in enumerate(times)]
    epochs = [{"type": "epoch", "epoch": 1, "steps": 6, "conflict_rate": 0.5, "mean_cos": 0.1, "train_loss": 0.7,
               "dev_eer": 40.0},
              {"type": "epoch", "epoch": 2, "steps": 2, "conflict_rate": 0.0, "mean_cos": 0.3, "train_loss": 0.6,
               "dev_eer": 30.0}]
    path.write_text("\n".join(json.dumps(r) for r in steps + epochs) + "\n")
    m = lib.train_metrics(path, batch_size=5, warmup=3)
    assert m["steps_logged"] == 8 and m["first_step_s"] == 2.0
    assert m["s_per_step_median"] == 0.5 and m["s_per_step_mean"] == pytest.approx(0.54)  # steps 4..8
    assert m["conflict_rate"] == pytest.approx(3 / 8) and m["dev_eer"] == 30.0 and m["train_loss"] == 0.6
    # single mode: the trainer counts no aligned steps, so there is no conflict rate
    path.write_text(json.dumps({"type": "step", "clips_per_s": 10.0}) + "\n"
                    + json.dumps({"type": "epoch", "steps": 0, "conflict_rate": 0.0}) + "\n")
    m = lib.train_metrics(path, batch_size=5)
    assert m["conflict_rate"] is None and m["s_per_step_median"] == 0.5


def test_overrides_round_trip_through_dpda_config():
    args = lib.overrides({"model.config.ssl_pretrained": None, "data.train": {"protocol": "/a b/train: x.csv"},
                          "model.config.ssl_config": {"conv_dim": [32, 32]}, "train.amp": "bf16", "data.batch_size": 5,
                          "name": "yes"})
    assert args[::2] == ["--set"] * 6
    data = {"model": {"config": {"ssl_pretrained": "pretrained/x.pt"}},
            "data": {"train": {"protocol": "p", "root": "r"}}}
    apply_overrides(data, args[1::2])
    assert data == {"model": {"config": {"ssl_pretrained": None, "ssl_config": {"conv_dim": [32, 32]}}},
                    "data": {"train": {"protocol": "/a b/train: x.csv"}, "batch_size": 5},
                    "train": {"amp": "bf16"}, "name": "yes"}


def _wheel(path: Path, module: str) -> Path:
    dist = f"{module}-0.1.dist-info"
    files = {f"{module}/__init__.py": "VALUE = 42\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{dist}/RECORD"])
    whl = path / f"{module}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return whl


def test_ensure_modules_installs_the_wheels_when_a_module_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "keep")
    assert lib.ensure_modules(["json"], tmp_path / "none", tmp_path / "t") == {
        "missing_before": [], "installed": [], "target": None, "ok": True}
    rec = lib.ensure_modules(["gc_probe_mod"], tmp_path / "none", tmp_path / "t")
    assert rec["ok"] is False and "gpu_wheels.sh" in rec["error"]
    wheels = tmp_path / "whl"
    wheels.mkdir()
    _wheel(wheels, "gc_probe_mod")
    rec = lib.ensure_modules(["json", "gc_probe_mod"], wheels, tmp_path / "site")
    assert rec["ok"] is True, rec
    assert rec["missing_before"] == ["gc_probe_mod"] and rec["installed"] == ["gc_probe_mod-0.1-py3-none-any.whl"]
    assert sys.path[0] == str(tmp_path / "site") and os.environ["PYTHONPATH"] == f"{tmp_path / 'site'}{os.pathsep}keep"
    assert importlib.import_module("gc_probe_mod").VALUE == 42
    sys.modules.pop("gc_probe_mod", None)


def test_source_digest_and_table(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.py").write_text("x = 1\n")
    d1 = lib.source_digest(tmp_path)
    assert d1 == lib.source_digest(tmp_path) and len(d1) == 16
    (tmp_path / "p" / "a.py").write_text("x = 2\n")
    assert lib.source_digest(tmp_path) != d1
    row = {"model": "m", "amp": "bf16", "median_s": {"plain": 0.25}, "peak_bytes": {"plain": 2**31},
           "ratio_to_plain": {"plain": 1.0, "split": 0.9}, "mem_over_plain": {"plain": 1.0, "split": 0.6}}
    table = lib.format_table({"ok": True, "seconds_total": 12.0, "stages": {
        "pytest": {"status": "ok", "seconds": 3.0, "brief": "passed 2"},
        "bench": {"status": "ok", "seconds": 5.0, "brief": "", "results": [row]}}})
    assert "pytest" in table and "passed 2" in table and "0.90x/0.60x" in table and "2.00" in table
    assert table.splitlines()[-1] == "overall: OK in 12 s"


def test_dpda_step_model_configs():
    step = _load("bench_dpda_step", "dpda_step.py")
    assert step.model_config("xlsr_conformer_tcm", "full") == {} and step.model_config("aasist-l", "micro") == {}
    assert step.model_config("xlsr_aasist", "tiny") == step.tiny_ssl_config()
    micro = step.model_config("xlsr_conformer_tcm", "micro")
    assert micro["ssl_config"]["num_hidden_layers"] == 1 and micro["dim"] == 32
    with pytest.raises(ValueError):
        step.model_config("xlsr_aasist", "huge")
