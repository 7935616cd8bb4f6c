"""Run ``dpda ARGS...`` in a process where importing torch fails: ``python tests/deploy/no_torch.py detect ...``.

``python tests/deploy/no_torch.py --serve MODEL.onnx FILE`` instead builds the ``dpda serve`` app around
the ONNX model and prints the JSON reply of ``GET /v1/model`` and ``POST /v1/detect`` for FILE.

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


def serve(model: str, audio: str) -> int:
    import json

    from fastapi.testclient import TestClient

    from dpda.deploy.onnx_scorer import OnnxScorer
    from dpda.serve.app import create_app

    with TestClient(create_app(OnnxScorer(model))) as client:
        card = client.get("/v1/model").json()
        with open(audio, "rb") as f:
            reply = client.post("/v1/detect", files={"file": ("clip.wav", f.read())})
    print(json.dumps({"card": card, "status": reply.status_code, "detect": reply.json()}))
    return 0


if sys.argv[1:2] == ["--serve"]:
    code = serve(*sys.argv[2:4])
else:
    from dpda.cli.main import main

    code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
if loaded:
    print(f"no_torch: torch modules were imported: {loaded[:5]}", file=sys.stderr)
    sys.exit(99)
sys.exit(code)
