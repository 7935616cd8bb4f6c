"""pyflakes' checks (ruff's F rules) over the package, the benchmarks and the tests.

They find what a test run can miss: an undefined name on an error path that no
test reaches, an import left behind, a redefined function that hides the first.
Style rules (line length, names) are not enforced here.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def test_no_pyflakes_findings_in_src_bench_and_tests():
    pytest.importorskip("ruff", reason="ruff is in the test extras: pip install -e '.[test]'")
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "F", "--no-cache", "--output-format", "concise",
         "src", "bench", "tests"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
