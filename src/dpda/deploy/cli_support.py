"""``dpda detect --model MODEL.onnx``: the torch-free path of the command."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence

from dpda.errors import PathLike


class _Line:
    """A self-overwriting ``LABEL: scored DONE/TOTAL windows`` line on stderr (only on a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.last = label, int(total), 0, 0.0
        self.enabled = sys.stderr.isatty()

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled and (time.monotonic() - self.last > 0.5 or self.done >= self.total):
            self.last = time.monotonic()
            sys.stderr.write(f"\r{self.label}: scored {self.done}/{self.total} windows")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def detect_onnx(paths: Sequence[PathLike], model: PathLike, threshold: Optional[float] = None, *, mode: str = "full",
                hop: Optional[int] = None, batch_size: int = 16, progress: bool = True) -> Dict[str, Any]:
    """``dpda detect``'s report for an ONNX model (see :func:`dpda.deploy.analysis.detect_files_onnx`)."""
    from dpda.deploy.analysis import detect_files_onnx
    from dpda.deploy.onnx_scorer import OnnxScorer

    scorer = OnnxScorer(model, mode=mode, hop=hop, batch_size=batch_size)

    def on_file(name: str, windows: int) -> Optional[Callable[[int], None]]:
        # only files that take several forward passes get a progress line
        return _Line(name, windows).update if progress and windows > batch_size else None

    return detect_files_onnx(paths, scorer, threshold, on_file=on_file)
