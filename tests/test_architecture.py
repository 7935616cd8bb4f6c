"""The package map holds: which parts of dpda load without which others."""

from __future__ import annotations

import json
import subprocess
import sys


def loaded_after(statement: str) -> set:
    """Names of the modules loaded in a fresh interpreter after running ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_audio_numpy_helpers_load_without_torch():
    mods = loaded_after("import numpy as np\nfrom dpda.audio import pad_or_crop, sliding_windows\n"
                        "assert sliding_windows(np.zeros(10, np.float32), 4).shape == (3, 4)")
    assert "torch" not in mods


def test_inference_windows_load_without_torch():
    mods = loaded_after("import numpy as np\nfrom dpda.inference.windows import WindowSpec, score_windows\n"
                        "spec = WindowSpec(4, 'full')\n"
                        "out = list(score_windows(lambda b: b.sum(1), [('a', spec(np.ones(10, np.float32)))], "
                        "batch_size=2, crop_samples=4))\nassert out == [('a', 4.0)], out")
    assert "torch" not in mods


def test_inference_does_not_load_train():
    mods = loaded_after("import dpda.inference as inf\nfrom dpda.inference import *\n"
                        "import dpda.detection\nimport dpda.inference.manifest, dpda.inference.card, dpda.inference.modelfile")
    assert "dpda.inference.scorer" in mods
    assert not [m for m in mods if m == "dpda.train" or m.startswith("dpda.train.")]
