"""dpda serve's HTTP API through FastAPI's test client: every endpoint, every bad input, concurrent requests."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from dpda.deploy.onnx_scorer import OnnxScorer  # noqa: E402
from dpda.inference import Scorer, detect_files  # noqa: E402
from dpda.serve.app import ServeSettings, create_app  # noqa: E402
from tests.deploy.conftest import CALIBRATION, CROP, SR, THRESHOLD, write_wav  # noqa: E402


@pytest.fixture(scope="module")
def scorer(tiny_ckpt):
    return Scorer.from_checkpoint(tiny_ckpt, mode="full", batch_size=4)


def client_for(scorer, tmp_path: Path, **limits) -> TestClient:
    settings = ServeSettings(tmp_dir=str(tmp_path / "uploads"), **limits)
    (tmp_path / "uploads").mkdir(exist_ok=True)
    return TestClient(create_app(scorer, settings))


def wav_bytes(path: Path) -> bytes:
    return path.read_bytes()


def post(client: TestClient, data: bytes, name: str = "clip.wav", **params):
    return client.post("/v1/detect", files={"file": (name, data, "application/octet-stream")}, params=params)


def test_health_model_page_and_docs(scorer, tmp_path):
    with client_for(scorer, tmp_path) as client:
        assert client.get("/health").json()["status"] == "ok"
        card = client.get("/v1/model").json()
        assert card["architecture"] == "aasist-l" and card["format"] == "pytorch"
        assert card["threshold"] == THRESHOLD and card["threshold_source"] == "checkpoint (dev EER)"
        assert card["calibration"] == CALIBRATION and card["window_samples"] == CROP
        assert len(card["provenance"]["sha256"]) == 64 and card["provenance"]["file"] == "model.pt"
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        for asset in ("/static/app.js", "/static/style.css"):
            assert client.get(asset).status_code == 200
        # no CDN: the page and its assets reference nothing outside this server
        text = page.text + client.get("/static/app.js").text + client.get("/static/style.css").text
        assert "http://" not in text and "https://" not in text
        assert "/v1/detect" in client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 200


def test_detect_matches_dpda_detect(scorer, tiny_ckpt, tmp_path):
    clip = write_wav(tmp_path / "clip.wav", 2 * CROP + 1234, seed=3)
    with client_for(scorer, tmp_path) as client:
        reply = post(client, wav_bytes(clip))
    assert reply.status_code == 200, reply.text
    got = reply.json()
    want = detect_files([clip], tiny_ckpt)["results"][0]
    assert got["score"] == pytest.approx(want["score"], abs=1e-6)
    for key in ("decision", "probability_disagrees", "warnings"):
        assert got[key] == want[key]
    assert got["probability"] == pytest.approx(want["probability"], abs=1e-6)
    assert got["threshold"] == THRESHOLD and got["threshold_source"] == "checkpoint (dev EER)"
    assert got["duration_seconds"] == pytest.approx((2 * CROP + 1234) / SR)
    starts = [w["start"] for w in got["windows"]]
    assert starts == pytest.approx([0, CROP / SR, (CROP + 1234) / SR])  # the last window ends at the end
    assert all(w["end"] - w["start"] == pytest.approx(CROP / SR) for w in got["windows"])
    assert np.mean([w["score"] for w in got["windows"]]) == pytest.approx(got["score"])
    assert got["file"] == {"name": "clip.wav", "bytes": clip.stat().st_size}
    assert len(got["envelope"]["min"]) == len(got["envelope"]["max"]) > 100


def test_any_format_rate_and_channels(scorer, tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, stereo, 44100, format="FLAC")
    with client_for(scorer, tmp_path) as client:
        reply = post(client, buf.getvalue(), name="stereo.flac")
    assert reply.status_code == 200, reply.text
    assert reply.json()["duration_seconds"] == pytest.approx(1.0, abs=1e-3)


def test_progress_stream(scorer, tmp_path):
    clip = write_wav(tmp_path / "long.wav", 12 * CROP, seed=4)
    with client_for(scorer, tmp_path) as client:
        reply = post(client, wav_bytes(clip), progress="true")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in reply.text.splitlines() if line.strip()]
    assert all("progress" in m for m in lines[:-1]) and lines[0]["progress"]["total"] == 12
    assert lines[-2]["progress"]["done"] == 12
    assert lines[-1]["result"]["decision"] in ("bonafide", "spoof") and len(lines[-1]["result"]["windows"]) == 12


def truncated_wav(tmp_path: Path) -> bytes:
    data = wav_bytes(write_wav(tmp_path / "full.wav", CROP, seed=5))
    return data[: len(data) // 2]


@pytest.mark.parametrize("case, status, words", [
    ("none", 400, "no file"),
    ("empty", 400, "empty"),
    ("text", 415, "not an audio file"),
    ("truncated", 422, "truncated"),
    ("too_long", 413, "accepts up to 1 s"),
    ("too_big", 413, "larger than this server accepts"),
])
def test_bad_input_gets_a_readable_4xx(scorer, tmp_path, case, status, words):
    limits = {"max_seconds": 1.0} if case == "too_long" else {"max_bytes": 20000} if case == "too_big" else {}
    with client_for(scorer, tmp_path, **limits) as client:
        if case == "none":
            reply = client.post("/v1/detect", data={"other": "x"})
        else:
            data = {"empty": b"", "text": b"this is not audio at all\n" * 50, "truncated": truncated_wav(tmp_path),
                    "too_long": wav_bytes(write_wav(tmp_path / "long.wav", 2 * SR, seed=6)),
                    "too_big": wav_bytes(write_wav(tmp_path / "big.wav", 3 * SR, seed=7))}[case]
            reply = post(client, data)
        assert reply.status_code == status, reply.text
        assert words in reply.json()["error"]
        assert client.get("/health").json()["status"] == "ok"  # the server is still up
        good = post(client, wav_bytes(write_wav(tmp_path / "ok.wav", 4000, seed=8)))
        assert good.status_code == 200
    assert list((tmp_path / "uploads").iterdir()) == []  # every upload was deleted


def test_file_names_from_the_request_never_reach_the_file_system(scorer, tmp_path):
    clip = write_wav(tmp_path / "c.wav", CROP, seed=9)
    evil = "../../escaped.wav"
    with client_for(scorer, tmp_path) as client:
        reply = post(client, wav_bytes(clip), name=evil)
    assert reply.status_code == 200 and reply.json()["file"]["name"] == evil
    assert not (tmp_path / "escaped.wav").exists() and not (tmp_path.parent / "escaped.wav").exists()
    assert list((tmp_path / "uploads").iterdir()) == []


def test_concurrent_requests_share_one_model(tiny_ckpt, tmp_path):
    scorer = Scorer.from_checkpoint(tiny_ckpt, mode="full", batch_size=8)
    clips = [write_wav(tmp_path / f"c{i}.wav", (1 + i % 3) * CROP + 17 * i, seed=i) for i in range(12)]
    want = {c.name: r["score"] for c, r in zip(clips, detect_files(clips, tiny_ckpt)["results"])}
    got, errors = {}, []
    with client_for(scorer, tmp_path) as client:
        queue = client.app.state.queue

        def one(clip: Path) -> None:
            try:
                reply = post(client, wav_bytes(clip), name=clip.name)
                got[clip.name] = reply.json()["score"]
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=one, args=(c,)) for c in clips]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
        assert not errors and len(got) == len(clips)
        for name, score in got.items():
            assert score == pytest.approx(want[name], abs=1e-5)
        assert queue.largest_batch <= 8
        assert scorer.forward_windows == sum(len(scorer.windows(np.zeros(sf.info(str(c)).frames))) for c in clips)


def test_serving_an_onnx_model(tiny_onnx, tiny_ckpt, tmp_path):
    scorer = OnnxScorer(tiny_onnx, mode="full", batch_size=4)
    clip = write_wav(tmp_path / "clip.wav", 3 * CROP, seed=11)
    with client_for(scorer, tmp_path) as client:
        card = client.get("/v1/model").json()
        reply = post(client, wav_bytes(clip)).json()
    assert card["format"] == "onnx" and card["threshold"] == THRESHOLD and card["calibration"] == CALIBRATION
    assert card["provenance"]["export"]["parity"]["max_abs_diff"] <= 1e-4
    want = detect_files([clip], tiny_ckpt)["results"][0]
    assert reply["score"] == pytest.approx(want["score"], abs=1e-4) and reply["decision"] == want["decision"]


def test_a_model_without_threshold_is_refused_unless_one_is_given(tmp_path):
    from dpda.errors import DpdaError
    from tests.deploy.conftest import make_model_file

    bare = Scorer.from_checkpoint(make_model_file(tmp_path / "bare.pt", threshold=None), mode="full")
    with pytest.raises(DpdaError, match="--threshold"):
        create_app(bare, ServeSettings())
    app = create_app(bare, ServeSettings(threshold=0.0))
    with TestClient(app) as client:
        assert client.get("/v1/model").json()["threshold_source"] == "--threshold"


def test_a_chunked_upload_over_the_limit_gets_413(scorer, tmp_path):
    boundary = "dpdaboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()

    def body():  # no Content-Length: the server must count
        yield head
        for _ in range(40):
            yield b"\0" * 8192
        yield f"\r\n--{boundary}--\r\n".encode()

    with client_for(scorer, tmp_path, max_bytes=20000) as client:
        reply = client.post("/v1/detect", content=body(),
                            headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert reply.status_code == 413 and "larger than this server accepts (0.02 MB)" in reply.json()["error"]
        assert client.get("/health").status_code == 200


class BlockedScorer:
    """A scorer whose forward pass waits for ``gate``: keeps the queue full on purpose."""

    sample_rate, crop_samples, mode, hop, batch_size = SR, CROP, "full", None, 1
    info = {"model_name": "blocked", "threshold": 0.0}

    def __init__(self) -> None:
        self.gate = threading.Event()

    def windows(self, waveform):
        from dpda.audio import sliding_windows

        return sliding_windows(np.asarray(waveform, np.float32), CROP)

    def forward(self, batch):
        self.gate.wait(30)
        return np.zeros(batch.shape[0])


def test_a_full_queue_answers_503_and_the_server_stays_responsive(tmp_path):
    scorer = BlockedScorer()
    long_clip = wav_bytes(write_wav(tmp_path / "long.wav", 10 * CROP, seed=1))
    with client_for(scorer, tmp_path, max_queued_windows=4) as client:
        first = {}
        worker = threading.Thread(target=lambda: first.update(reply=post(client, long_clip)))
        worker.start()
        deadline = time.monotonic() + 20
        while client.app.state.queue.queued_windows == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        busy = post(client, long_clip)
        assert busy.status_code == 503 and "busy" in busy.json()["error"]
        assert client.get("/health").json()["queued_windows"] > 0
        scorer.gate.set()
        worker.join(30)
        assert first["reply"].status_code == 200
