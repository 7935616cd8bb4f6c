"""Run ``dpda ARGS...`` in a process where importing torch fails: ``python tests/deploy/no_torch.py detect ...``.

A :data:`sys.meta_path` finder placed first refuses ``torch`` and its submodules with ImportError,
as on a machine without PyTorch; at exit the process asserts that no torch module was loaded.
Exit code: the command's, or 99 when torch was imported after all.
"""

import sys
from importlib.abc import MetaPathFinder


class NoTorch(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this process (tried to import {name})", name=name)
        return None


sys.meta_path.insert(0, NoTorch())

from dpda.cli.main import main  # noqa: E402

code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
if loaded:
    print(f"no_torch: torch modules were imported: {loaded[:5]}", file=sys.stderr)
    sys.exit(99)
sys.exit(code)
