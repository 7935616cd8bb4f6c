"""``dpda models list`` prints every registered model with its full-size parameter count."""

from __future__ import annotations

import json

from dpda.cli.main import main
from dpda.models import model_names


def test_models_list_json(capsys):
    assert main(["models", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    rows = listing["models"]
    assert list(rows) == model_names()
    for name, fmt in listing["published_formats"].items():
        assert fmt["architecture"] in rows and fmt["crop_samples"] > 0 and fmt["repos"], name
    assert rows["aasist"]["trainable"] == 297_866
    assert rows["aasist-l"]["trainable"] == 85_306
    for name, row in rows.items():
        assert "error" not in row, (name, row)
        assert row["parameters"] >= row["trainable"] > 0


def test_models_list_table(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "297,866" in out and "xlsr_conformer_tcm" in out
