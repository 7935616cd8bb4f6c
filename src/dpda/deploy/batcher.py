"""One model, one queue: the windows of concurrent requests share batches.

:class:`BatchQueue` owns a single worker thread that alone calls the model's
``forward(batch (B, window) float32) -> (B,) float64``. Each request submits
its ``(n, window)`` windows as a :class:`Job`; the worker fills every batch of
up to ``batch_size`` windows round-robin from the queued jobs (a long file
does not hold short ones back for long) and completes each job's
:class:`concurrent.futures.Future` with its ``(n,)`` scores when its last
window is done. So N concurrent uploads use one model and memory for
``batch_size`` windows of forward pass, plus the queued windows themselves,
which ``max_queued_windows`` bounds (:class:`QueueFull` beyond it).
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import Callable, Deque, List, Optional, Tuple

import numpy as np

from dpda.errors import DpdaError


class QueueFull(DpdaError, RuntimeError):
    """The queue holds too many windows already; the request should be retried later."""


class Job:
    """The windows of one request and its progress (``done`` of ``total`` windows scored)."""

    def __init__(self, windows: np.ndarray) -> None:
        self.windows = windows
        self.total = int(windows.shape[0])
        self.next_row = 0
        self.done = 0
        self.scores = np.empty(self.total, dtype=np.float64)
        self.future: "Future[np.ndarray]" = Future()
        self.cancelled = False


class BatchQueue:
    """Serialises a model's forward passes and packs the windows of concurrent jobs into batches.

    Args:
        forward: ``(B, window)`` float32 -> ``(B,)`` float64 scores; only the
            worker thread calls it.
        batch_size: most windows per forward pass.
        max_queued_windows: most windows waiting at once; :meth:`submit`
            raises :class:`QueueFull` beyond it (None: no bound).
    """

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], batch_size: int,
                 max_queued_windows: Optional[int] = None) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.forward = forward
        self.batch_size = int(batch_size)
        self.max_queued_windows = max_queued_windows
        self.batches = 0  # forward passes run (statistics, tests)
        self.largest_batch = 0
        self._jobs: Deque[Job] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="dpda-batch-queue", daemon=True)
        self._thread.start()

    @property
    def queued_windows(self) -> int:
        """Windows submitted and not yet scored."""
        with self._cond:
            return self._queued

    def submit(self, windows: np.ndarray) -> Job:
        """Queue ``(n, window)`` float32 windows (n >= 1); ``job.future`` gives their ``(n,)`` scores."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[0] == 0:
            raise ValueError(f"expected windows of shape (n, window) with n >= 1, got {windows.shape}")
        job = Job(windows)
        with self._cond:
            if self._closed:
                raise RuntimeError("the batch queue is closed")
            limit = self.max_queued_windows
            if limit is not None and self._queued > 0 and self._queued + job.total > limit:
                raise QueueFull(f"the server is busy ({self._queued} windows queued); try again in a moment")
            self._jobs.append(job)
            self._queued += job.total
            self._cond.notify()
        return job

    def _drop(self, job: Job) -> None:
        with self._cond:
            if job in self._jobs:
                self._jobs.remove(job)
                self._queued -= job.total - job.next_row
            job.cancelled = True

    def cancel(self, job: Job) -> None:
        """Drop a job's unscored windows (its client went away)."""
        self._drop(job)
        job.future.cancel()

    def close(self, timeout: Optional[float] = 5.0) -> None:
        """Stop the worker after the batch in progress; queued jobs fail with RuntimeError."""
        with self._cond:
            self._closed = True
            pending = list(self._jobs)
            self._jobs.clear()
            self._queued = 0
            self._cond.notify_all()
        for job in pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._thread.join(timeout)

    def _take_batch(self) -> List[Tuple[Job, int, int]]:
        """Round-robin slices ``(job, first_row, rows)`` of up to ``batch_size`` windows (lock held)."""
        taken: List[Tuple[Job, int, int]] = []
        room = self.batch_size
        while room > 0 and any(j.next_row < j.total for j in self._jobs):
            active = [j for j in self._jobs if j.next_row < j.total]
            share = max(1, room // len(active))
            for job in active:
                if room == 0:
                    break
                rows = min(share, room, job.total - job.next_row)
                taken.append((job, job.next_row, rows))
                job.next_row += rows
                room -= rows
        self._queued -= self.batch_size - room
        # a job whose windows are all taken leaves the queue; it completes when its scores arrive
        for job in [j for j in self._jobs if j.next_row >= j.total]:
            self._jobs.remove(job)
        return taken

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                taken = self._take_batch()
            batch = np.concatenate([job.windows[first : first + rows] for job, first, rows in taken])
            try:
                scores = np.asarray(self.forward(batch), dtype=np.float64)
                if scores.shape != (batch.shape[0],):
                    raise RuntimeError(f"the model returned {scores.shape} scores for {batch.shape[0]} windows")
            except BaseException as e:  # one failing batch fails its jobs, never the worker
                for job, _, _ in taken:
                    self._drop(job)
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            self.batches += 1
            self.largest_batch = max(self.largest_batch, int(batch.shape[0]))
            pos = 0
            for job, first, rows in taken:
                job.scores[first : first + rows] = scores[pos : pos + rows]
                pos += rows
                job.done += rows
                if job.done >= job.total and not job.future.done():
                    job.future.set_result(job.scores)


__all__ = ["BatchQueue", "Job", "QueueFull"]
