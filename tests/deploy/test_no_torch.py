"""dpda detect / dpda serve with an .onnx model run where torch cannot be imported (tests/deploy/no_torch.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dpda.inference import detect_files
from tests.deploy.conftest import CROP, write_wav

RUNNER = Path(__file__).with_name("no_torch.py")
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, env=env, timeout=300)


def test_the_blocker_blocks():
    done = subprocess.run([sys.executable, "-c", f"exec(open({str(RUNNER)!r}).read().split('from dpda')[0]); import torch"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "torch is blocked" in done.stderr


def test_detect_with_onnx_never_imports_torch(tiny_onnx, tiny_ckpt, tmp_path):
    clips = [write_wav(tmp_path / "a.wav", 3 * CROP + 5, seed=1), write_wav(tmp_path / "b.wav", 2000, seed=2, sr=8000)]
    done = run("detect", "--model", str(tiny_onnx), "--json", *map(str, clips))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    want = detect_files(clips, tiny_ckpt)
    for key in ("threshold", "threshold_source", "calibrated", "mode"):
        assert got[key] == want[key]
    for g, w in zip(got["results"], want["results"]):
        assert g["score"] == pytest.approx(w["score"], abs=1e-4)
        assert (g["decision"], g["warnings"]) == (w["decision"], w["warnings"])
    table = run("detect", "--model", str(tiny_onnx), str(clips[0]), str(tmp_path / "missing.wav"))
    assert table.returncode == 1 and "file not found" in table.stdout and "bonafide" in table.stdout


def test_commands_that_need_torch_say_so(tmp_path):
    done = run("train", "x.yaml")
    assert done.returncode == 2 and "needs PyTorch" in done.stderr


def test_serve_with_onnx_never_imports_torch(tiny_onnx, tmp_path):
    pytest.importorskip("fastapi")
    clip = write_wav(tmp_path / "a.wav", 2 * CROP, seed=3)
    done = run("--serve", str(tiny_onnx), str(clip))
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["status"] == 200 and reply["detect"]["decision"] in ("bonafide", "spoof")
    assert reply["card"]["format"] == "onnx" and reply["card"]["runtime"].startswith("onnxruntime")


def test_the_serve_command_with_onnx_never_imports_torch(tiny_onnx, tmp_path):
    """``dpda serve --model x.onnx`` as a process (uvicorn on 127.0.0.1), stopped with Ctrl+C (SIGINT).

    uvicorn shuts down, ``dpda serve`` returns (0; 130 if the interrupt reaches dpda) and the runner
    then checks that no torch module was loaded (else it exits with 99).
    """
    pytest.importorskip("uvicorn")
    import socket
    import time
    import urllib.request
    import uuid

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(RUNNER), "serve", "--model", str(tiny_onnx), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read())
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() is not None else "timeout"
                time.sleep(0.2)
        assert health["format"] == "onnx"
        boundary = uuid.uuid4().hex
        data = write_wav(tmp_path / "a.wav", CROP + 100, seed=4).read_bytes()
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n".encode()
                + data + f"\r\n--{boundary}--\r\n".encode())
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/detect", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        reply = json.loads(urllib.request.urlopen(request, timeout=60).read())
        assert reply["decision"] in ("bonafide", "spoof") and len(reply["windows"]) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode in (0, 130), (proc.returncode, out)
