"""dpda export: ONNX parity with torch for every exportable architecture, refusals with reasons, metadata.

Parity is measured at real lengths: the window the models score (64600 samples, AASIST's 4.04 s) and a
longer odd length (86140: the time axis is variable). Sizes are the tests' tiny configurations where
the full model is large (RawNet2, AASIST, the XLS-R front-end); LCNN and AASIST-L are full size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from dpda.deploy.export import NOT_EXPORTABLE, PARITY_ATOL, ExportError, export_onnx  # noqa: E402
from dpda.deploy.onnx_scorer import INFO_KEY, OnnxModelError, OnnxScorer  # noqa: E402
from dpda.inference import Scorer  # noqa: E402
from dpda.models import build_model, model_names  # noqa: E402
from dpda.train.checkpoint import inference_payload, save_checkpoint  # noqa: E402
from tests.models.test_ssl import TINY_BACKENDS, TINY_SSL  # noqa: E402

AASIST_TINY = {"filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]], "gat_dims": [8, 8]}
RAWNET2_TINY = {"filts": [20, [20, 20], [20, 64], [64, 64]], "gru_node": 64, "nb_fc_node": 64}
#: architecture -> (config, window in samples)
CASES = {
    "lcnn": ({}, 64600),
    "rawnet2": (RAWNET2_TINY, 64600),
    "aasist": (AASIST_TINY, 64600),
    "aasist-l": ({}, 64600),
    **{name: (dict(ssl_config=TINY_SSL, **TINY_BACKENDS[name]), 64600) for name in TINY_BACKENDS},
}


def checkpoint(tmp_path: Path, name: str) -> Path:
    config, crop = CASES[name]
    torch.manual_seed(0)
    model = build_model(name, **config).eval()
    path = tmp_path / f"{name}.pt"
    save_checkpoint(path, inference_payload(name, config, model, 16000, crop, threshold=0.1,
                                            calibration={"a": 1.5, "b": 0.2}))
    return path


def test_every_registered_architecture_is_covered():
    assert set(CASES) == set(model_names())


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CASES if n not in NOT_EXPORTABLE])
def test_export_parity(tmp_path, name):
    ckpt = checkpoint(tmp_path, name)
    out = tmp_path / f"{name}.onnx"
    report = export_onnx(ckpt, out)
    parity = report["parity"]
    print(f"{name}: max |logit diff| {parity['max_abs_diff']:.3g} per length {parity['per_length']}")
    assert parity["max_abs_diff"] <= PARITY_ATOL and len(parity["per_length"]) == 2
    # the whole scoring path: a file-length waveform, windows, mean logit[:, 1]
    onnx_scorer, torch_scorer = OnnxScorer(out, batch_size=3), Scorer.from_checkpoint(ckpt, mode="full", batch_size=3)
    rng = np.random.default_rng(1)
    wave = (0.2 * np.sin(np.arange(int(2.6 * CASES[name][1])) * 0.05) + 0.02 * rng.standard_normal(int(2.6 * CASES[name][1]))).astype(np.float32)
    np.testing.assert_array_equal(onnx_scorer.windows(wave), torch_scorer.windows(wave))
    windows = onnx_scorer.windows(wave)
    assert np.max(np.abs(onnx_scorer.window_scores(windows) - torch_scorer.forward(windows))) <= PARITY_ATOL
    info = onnx_scorer.info
    assert info["model_name"] == name and info["crop_samples"] == CASES[name][1] and info["threshold"] == 0.1
    assert info["calibration"] == {"a": 1.5, "b": 0.2} and info["export"]["source_file"] == f"{name}.pt"


@pytest.mark.parametrize("name", sorted(NOT_EXPORTABLE))
def test_an_architecture_that_cannot_export_says_why(tmp_path, name):
    out = tmp_path / "x.onnx"
    with pytest.raises(ExportError, match=f"{name} cannot be exported to ONNX: .*variable-length"):
        export_onnx(checkpoint(tmp_path, name), out)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_an_exporter_failure_is_reported_with_its_cause(tiny_ckpt, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::frobnicate\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ExportError, match="aasist-l cannot be exported to ONNX: torch.onnx.export failed: .*frobnicate"):
        export_onnx(tiny_ckpt, tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())


def test_metadata_keys(tiny_onnx):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    info = json.loads(props[INFO_KEY])
    assert props["dpda.window_samples"] == str(info["crop_samples"]) and props["dpda.sample_rate"] == "16000"
    assert float(props["dpda.threshold"]) == info["threshold"] and float(props["dpda.calibration_a"]) == 2.0
    assert len(info["export"]["source_sha256"]) == 64 and info["export"]["opset"] >= 17


def test_onnx_files_not_from_dpda_are_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(OnnxModelError, match="cannot load"):
        OnnxScorer(bad)
    with pytest.raises(OnnxModelError, match="no such ONNX file"):
        OnnxScorer(tmp_path / "missing.onnx")


def test_export_cli(tiny_ckpt, tmp_path, capsys):
    from dpda.cli.main import main

    out = tmp_path / "m.onnx"
    assert main(["export", str(tiny_ckpt), "--format", "onnx", "--out", str(out)]) == 0
    assert "max |diff| of logits" in capsys.readouterr().out and out.is_file()
    assert main(["export", str(tiny_ckpt), "--out", str(out)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(tiny_ckpt), "--out", str(tmp_path / "m.bin")]) == 2
    assert ".onnx" in capsys.readouterr().err


def test_the_reason_for_mamba_is_real(tmp_path, monkeypatch):
    """Without the refusal the traced graph fails on a second input length, which the parity check catches."""
    import dpda.deploy.export as export

    monkeypatch.setattr(export, "NOT_EXPORTABLE", {})
    with pytest.raises(ExportError, match="xlsr_mamba cannot be exported to ONNX: .*not variable-length"):
        export_onnx(checkpoint(tmp_path, "xlsr_mamba"), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
