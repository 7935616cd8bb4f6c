"""Shared fixtures.

Parity tests read the reference outputs of the original implementations from
``$DPDA_REFERENCE_DIR`` (default ``../shared/reference`` beside the checkout).
They skip when it is absent, unless ``DPDA_REQUIRE_REFERENCE=1`` (set by
``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# `dpda train` / `dpda demo` called in-process by tests would set glibc's allocator thresholds for the
# whole test process (dpda.allocator); tests/test_allocator.py checks the setting in subprocesses instead.
os.environ.setdefault("DPDA_KEEP_FREED_MEMORY", "0")


def _reference_root() -> Path:
    env = os.environ.get("DPDA_REFERENCE_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def minibench_dir() -> Path:
    """``$DPDA_MINIBENCH_DIR`` or ``../shared/minibench``; tests using it skip when absent."""
    env = os.environ.get("DPDA_MINIBENCH_DIR")
    root = Path(env) if env else REPO_ROOT.parent / "shared" / "minibench"
    if not (root / "protocols").is_dir():
        pytest.skip(f"minibench corpus not found at {root} (set DPDA_MINIBENCH_DIR)")
    return root


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    root = _reference_root()
    if not root.is_dir():
        msg = f"reference outputs not found at {root} (set DPDA_REFERENCE_DIR)"
        if os.environ.get("DPDA_REQUIRE_REFERENCE") == "1":
            pytest.fail(msg + "; DPDA_REQUIRE_REFERENCE=1 forbids skipping parity tests")
        pytest.skip(msg)
    return root
