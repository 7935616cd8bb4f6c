"""BatchQueue: one worker, windows of concurrent jobs share batches, scores go back to their job in order."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from dpda.deploy.batcher import BatchQueue, QueueFull


class Model:
    """score = first sample of the window; records batch sizes and the threads that call it."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sizes, self.threads, self.delay = [], set(), delay

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(batch.shape[0])
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        return batch[:, 0].astype(np.float64)


def windows(n: int, offset: float) -> np.ndarray:
    return (offset + np.arange(n, dtype=np.float32))[:, None] * np.ones((1, 8), np.float32)


def test_concurrent_jobs_share_batches_and_get_their_own_scores():
    model = Model(delay=0.02)
    queue = BatchQueue(model, batch_size=8)
    try:
        jobs = [queue.submit(windows(n, 1000.0 * i)) for i, n in enumerate([5, 1, 13, 3, 7, 2])]
        for i, (job, n) in enumerate(zip(jobs, [5, 1, 13, 3, 7, 2])):
            np.testing.assert_array_equal(job.future.result(timeout=10), 1000.0 * i + np.arange(n))
        assert max(model.sizes) <= 8 and sum(model.sizes) == 31
        assert len(model.sizes) < 6  # jobs were packed together, not run one by one
        assert len(model.threads) == 1 and threading.get_ident() not in model.threads
        assert queue.queued_windows == 0
    finally:
        queue.close()


def test_many_threads_submitting_at_once():
    model = Model()
    queue = BatchQueue(model, batch_size=16)
    results = {}

    def client(i: int) -> None:
        results[i] = queue.submit(windows(1 + i % 5, 100.0 * i)).future.result(timeout=30)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    try:
        [t.start() for t in threads]
        [t.join() for t in threads]
        for i in range(32):
            np.testing.assert_array_equal(results[i], 100.0 * i + np.arange(1 + i % 5))
    finally:
        queue.close()


def test_a_failing_batch_fails_its_jobs_not_the_worker():
    calls = []

    def flaky(batch):
        calls.append(batch.shape[0])
        if len(calls) == 1:
            raise RuntimeError("boom")
        return batch[:, 0].astype(np.float64)

    queue = BatchQueue(flaky, batch_size=4)
    try:
        bad = queue.submit(windows(2, 0.0))
        with pytest.raises(RuntimeError, match="boom"):
            bad.future.result(timeout=10)
        good = queue.submit(windows(3, 5.0))
        np.testing.assert_array_equal(good.future.result(timeout=10), [5.0, 6.0, 7.0])
    finally:
        queue.close()


def test_queue_full_and_cancel():
    gate = threading.Event()

    def slow(batch):
        gate.wait(10)
        return batch[:, 0].astype(np.float64)

    queue = BatchQueue(slow, batch_size=2, max_queued_windows=10)
    try:
        first = queue.submit(windows(8, 0.0))
        with pytest.raises(QueueFull, match="busy"):
            queue.submit(windows(9, 0.0))
        queue.cancel(first)
        assert first.future.cancelled()
        gate.set()
        np.testing.assert_array_equal(queue.submit(windows(3, 1.0)).future.result(timeout=10), [1.0, 2.0, 3.0])
    finally:
        queue.close()


def test_bad_windows_are_refused():
    queue = BatchQueue(Model(), batch_size=2)
    try:
        with pytest.raises(ValueError, match="n >= 1"):
            queue.submit(np.zeros((0, 8), np.float32))
    finally:
        queue.close()
