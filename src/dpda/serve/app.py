"""The ``dpda serve`` application: ``POST /v1/detect``, ``GET /v1/model``, ``GET /health`` and the page at ``/``.

``POST /v1/detect``: a multipart form with the audio in the field ``file``
(any format, rate and channel count that ``dpda detect`` reads). The reply
is :func:`dpda.deploy.analysis.file_report`'s JSON (duration, score,
P(bona fide), decision with its threshold and its source, warnings,
per-window scores with start / end times in seconds, a waveform envelope)
plus ``file`` (the upload's name as sent, never used on the server, and its
size). With ``?progress=true`` the reply is NDJSON instead: lines
``{"progress": {"done", "total"}}`` (windows scored) while the file is
scored, then ``{"result": ...}`` (or ``{"error": ...}``).

Bad input gets a 4xx reply ``{"error": "..."}`` written for a person:
400 no file / empty file, 413 more than ``max_bytes`` or longer than
``max_seconds``, 415 not a readable audio file, 422 a file that cannot be
used (truncated, no samples); 503 when the queue is full. The upload is
written under a fresh temporary directory with a fixed name and removed
as soon as it is decoded; nothing from the request names a server path.

All requests share one model through a :class:`dpda.deploy.batcher.BatchQueue`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Optional

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from dpda import __version__
from dpda.audio import audio_info, load_audio
from dpda.deploy.analysis import file_report
from dpda.deploy.batcher import BatchQueue, QueueFull
from dpda.deploy.card import model_card
from dpda.deploy.rules import decision_threshold
from dpda.errors import AudioError
from dpda.serve.limits import BodyLimit

STATIC = Path(__file__).parent / "static"
COPY_CHUNK = 1 << 20


@dataclass
class ServeSettings:
    """Limits and options of the server (units in the names)."""

    max_seconds: float = 600.0
    max_bytes: int = 100 * 1024 * 1024
    max_queued_windows: Optional[int] = 2048  # about 530 MB of 64600-sample float32 windows
    threshold: Optional[float] = None
    tmp_dir: Optional[str] = None


class Rejected(Exception):
    """A request that cannot be served: HTTP ``status`` and a message for a person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _receive_upload(upload: Any, settings: ServeSettings, sample_rate: int) -> np.ndarray:
    """The upload's ``(T,)`` float32 samples at ``sample_rate`` Hz (mono), via a private temporary file.

    The file is checked (size, header, duration) and decoded; it is deleted on return.
    """
    with tempfile.TemporaryDirectory(prefix="dpda-serve-", dir=settings.tmp_dir) as tmp:
        path = Path(tmp) / "upload"  # fixed name: nothing from the request reaches the file system
        size = 0
        with open(path, "wb") as out:
            while True:
                block = upload.read(COPY_CHUNK)
                if not block:
                    break
                size += len(block)
                if size > settings.max_bytes:
                    raise Rejected(413, f"the file is larger than this server accepts ({settings.max_bytes / 1e6:.3g} MB)")
                out.write(block)
        if size == 0:
            raise Rejected(400, "the uploaded file is empty (0 bytes)")
        try:
            info = audio_info(path)
        except AudioError as e:
            raise Rejected(415, f"this is not an audio file that can be read (WAV, FLAC, MP3, OGG, ...): {e.problem}") from None
        if info.sample_rate > 0 and info.frames / info.sample_rate > settings.max_seconds:
            raise Rejected(413, f"the recording is {info.frames / info.sample_rate:.1f} s long; this server accepts up "
                                f"to {settings.max_seconds:g} s (dpda serve --max-seconds)")
        try:
            return load_audio(path, sample_rate)
        except AudioError as e:
            raise Rejected(422, f"the audio cannot be used: {e.problem}") from None


def create_app(scorer: Any, settings: Optional[ServeSettings] = None) -> FastAPI:
    """The application around one loaded scorer (``dpda.inference.Scorer`` or ``OnnxScorer``).

    Raises :class:`dpda.errors.DpdaError` when the model has no decision
    threshold and ``settings.threshold`` is None.
    """
    settings = settings or ServeSettings()
    threshold, source = decision_threshold(scorer.info, settings.threshold)
    calibration = scorer.info.get("calibration") or None
    card = model_card(scorer.info, hop=scorer.hop, threshold=settings.threshold)
    queue = BatchQueue(scorer.forward, scorer.batch_size, settings.max_queued_windows)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        queue.close()

    app = FastAPI(title="dpda serve", version=__version__, lifespan=lifespan,
                  description="Speech deepfake detection: upload audio, get bona fide / spoof with per-window evidence.")
    app.state.queue, app.state.scorer, app.state.settings = queue, scorer, settings
    app.add_middleware(BodyLimit, max_bytes=settings.max_bytes, slack=64 * 1024)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return _error(400, f"the request is malformed: {problems}")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health", summary="liveness: the model is loaded and the queue runs")
    async def health() -> Dict[str, Any]:
        return {"status": "ok", "model": card["architecture"], "format": card["format"],
                "queued_windows": queue.queued_windows}

    @app.get("/v1/model", summary="the model card: architecture, training data, threshold, calibration, provenance")
    async def model() -> Dict[str, Any]:
        return card

    @app.post("/v1/detect", summary="score one audio file: decision, P(bona fide), per-window scores")
    async def detect(file: Optional[UploadFile] = File(None, description="the audio (any format dpda detect reads)"),
                     progress: bool = Query(False, description="reply NDJSON progress lines, then the result")):
        if file is None:
            return _error(400, "no file: send the audio as a multipart form field named 'file'")
        try:
            waveform = await run_in_threadpool(_receive_upload, file.file, settings, scorer.sample_rate)
            job = queue.submit(scorer.windows(waveform))
        except Rejected as e:
            return _error(e.status, e.message)
        except QueueFull as e:
            return _error(503, str(e))
        finally:
            await file.close()
        meta = {"name": (file.filename or "")[:200], "bytes": file.size}

        def result(scores: np.ndarray) -> Dict[str, Any]:
            report = file_report(waveform, scores, sample_rate=scorer.sample_rate, window=scorer.crop_samples,
                                 mode=scorer.mode, hop=scorer.hop, threshold=threshold, threshold_source=source,
                                 calibration=calibration)
            return {"file": meta, **report}

        if not progress:
            try:
                scores = await asyncio.wrap_future(job.future)
            except asyncio.CancelledError:
                queue.cancel(job)
                raise
            except Exception as e:
                return _error(500, f"the model failed on this file: {e}")
            return result(scores)

        async def lines() -> AsyncIterator[bytes]:
            waiter = asyncio.wrap_future(job.future)
            try:
                while True:  # at least one progress line, the last one with done == total
                    yield (json.dumps({"progress": {"done": job.done, "total": job.total}}) + "\n").encode()
                    if waiter.done():
                        break
                    await asyncio.wait({waiter}, timeout=0.25)
                try:
                    yield (json.dumps({"result": result(waiter.result())}) + "\n").encode()
                except Exception as e:
                    yield (json.dumps({"error": f"the model failed on this file: {e}"}) + "\n").encode()
            finally:
                queue.cancel(job)  # no-op once the job is complete; frees the queue if the client left

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app


__all__ = ["ServeSettings", "create_app"]
