"""Load test of ``dpda serve`` on loopback: K concurrent clients, requests/s and latency percentiles.

Starts ``dpda serve`` (a separate process, 127.0.0.1, a free port) with a small model, then for each
client count K (default 1, 4, 16) runs K threads that each POST a clip to ``/v1/detect`` in a loop,
until ``--requests`` requests are done in total or ``--seconds`` have passed (both bound every run).
Prints, per K: requests done, errors, requests/s, p50 / p95 latency (ms).

The default model is an untrained LFCC-LCNN (the full-size configuration, 270k parameters; the
score does not matter here, the work does) with a 4.04 s window, and the clip is 4.04 s (one
window) of a 16 kHz WAV; ``--model`` serves any run directory, checkpoint or ``.onnx`` file instead.

    python bench/serve_load.py                      # LCNN, clients 1 4 16
    python bench/serve_load.py --model lcnn.onnx --clients 1 4 16 --requests 200 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import List, Tuple

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def small_model(folder: Path) -> Path:
    """An untrained full-size LCNN checkpoint with a threshold (dpda serve needs one)."""
    import torch

    from dpda.models import build_model
    from dpda.train.checkpoint import inference_payload, save_checkpoint

    torch.manual_seed(0)
    path = folder / "lcnn.pt"
    save_checkpoint(path, inference_payload("lcnn", {}, build_model("lcnn").eval(), 16000, 64600, threshold=0.0,
                                            calibration={"a": 1.0, "b": 0.0}))
    return path


def clip(folder: Path, seconds: float) -> bytes:
    rng = np.random.default_rng(0)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    x = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.03 * rng.standard_normal(n)
    path = folder / "clip.wav"
    sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
    return path.read_bytes()


def multipart(data: bytes) -> Tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, batch_size: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "dpda", "serve", "--model", str(model), "--port", str(port),
                             "--device", "cpu", "--batch-size", str(batch_size)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"dpda serve did not start: {proc.stderr.read()}")
            time.sleep(0.3)


def run(url: str, body: bytes, kind: str, clients: int, max_requests: int, max_seconds: float) -> dict:
    latencies: List[float] = []
    errors: List[str] = []
    started = [0]
    lock = threading.Lock()
    start = time.monotonic()

    def client() -> None:
        while True:
            with lock:
                if started[0] >= max_requests or time.monotonic() - start > max_seconds:
                    return
                started[0] += 1
            t0 = time.monotonic()
            request = urllib.request.Request(url, data=body, headers={"Content-Type": kind}, method="POST")
            try:
                urllib.request.urlopen(request, timeout=300).read()
                with lock:
                    latencies.append(time.monotonic() - t0)
            except OSError as e:
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.monotonic() - start
    ms = sorted(1000 * x for x in latencies)
    pct = (lambda q: ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]) if ms else (lambda q: float("nan"))
    return {"clients": clients, "requests": len(ms), "errors": len(errors), "seconds": wall,
            "rps": len(ms) / wall if wall > 0 else 0.0, "p50": pct(0.50), "p95": pct(0.95),
            "mean": statistics.fmean(ms) if ms else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="run directory, checkpoint or .onnx (default: an untrained LCNN)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=96, help="most requests per client count (default 96)")
    parser.add_argument("--seconds", type=float, default=60.0, help="longest run per client count (default 60 s)")
    parser.add_argument("--clip-seconds", type=float, default=4.0375, help="length of the uploaded clip (default 4.04 s)")
    parser.add_argument("--batch-size", type=int, default=16, help="server --batch-size (default 16)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dpda-serve-load-") as tmp:
        folder = Path(tmp)
        model = Path(args.model) if args.model else small_model(folder)
        body, kind = multipart(clip(folder, args.clip_seconds))
        port = free_port()
        server = start_server(model, port, args.batch_size)
        try:
            url = f"http://127.0.0.1:{port}/v1/detect"
            run(url, body, kind, 1, 3, 30)  # warm-up
            print(f"model {model.name}, clip {args.clip_seconds:g} s, server batch {args.batch_size}, "
                  f"{os.cpu_count()} CPUs; at most {args.requests} requests / {args.seconds:g} s per row")
            print(f"{'clients':>7}  {'requests':>8}  {'errors':>6}  {'req/s':>7}  {'p50 ms':>8}  {'p95 ms':>8}")
            for k in args.clients:
                r = run(url, body, kind, k, args.requests, args.seconds)
                print(f"{r['clients']:>7}  {r['requests']:>8}  {r['errors']:>6}  {r['rps']:>7.2f}  "
                      f"{r['p50']:>8.0f}  {r['p95']:>8.0f}", flush=True)
        finally:
            server.terminate()
            server.wait(20)


if __name__ == "__main__":
    main()
