"""``dpda demo --quick`` runs end to end (synthetic corpus, dual + dpda training, scoring)."""

from __future__ import annotations

import json

import pytest

from dpda.cli.main import main


@pytest.mark.slow
def test_demo_quick_json(tmp_path, capsys):
    assert main(["demo", "--quick", "--json", "--out", str(tmp_path / "demo")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["synthetic"] is True
    for mode in ("dual", "dpda"):
        r = report["runs"][mode]
        assert r["epochs"] == 2 and 0 <= r["eer_test"] <= 100 and 0 <= r["eer_test_shifted"] <= 100
        assert 0 <= r["conflict_rate"] <= 1
    assert (tmp_path / "demo" / "dpda" / "model.pt").is_file()
    # the PCGrad run is usable by dpda detect
    flac = sorted((tmp_path / "demo" / "corpus" / "audio" / "test").glob("*.flac"))[:2]
    assert main(["detect", "--model", str(tmp_path / "demo" / "dpda"), "--json", *map(str, flac)]) == 0
    detect = json.loads(capsys.readouterr().out)
    assert len(detect["results"]) == 2 and all(r["decision"] in ("bonafide", "spoof") for r in detect["results"])
