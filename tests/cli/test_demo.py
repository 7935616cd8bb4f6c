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
        assert r["final_model"]["chosen"] in ("average", "best") and r["final_model"]["epochs"]
    assert (tmp_path / "demo" / "dpda" / "model.pt").is_file()
    # the PCGrad run is usable by dpda detect
    flac = sorted((tmp_path / "demo" / "corpus" / "audio" / "test").glob("*.flac"))[:2]
    assert main(["detect", "--model", str(tmp_path / "demo" / "dpda"), "--json", *map(str, flac)]) == 0
    detect = json.loads(capsys.readouterr().out)
    assert len(detect["results"]) == 2 and all(r["decision"] in ("bonafide", "spoof") for r in detect["results"])


def test_demo_table_says_which_weights_its_numbers_belong_to(capsys):
    """Issue 11 item 15: the 'dev EER' is model.pt's (an average of epochs, or one epoch), and the table says so."""
    from dpda.cli.demo import print_table

    row = {"eer_test": 10.0, "eer_test_shifted": 20.0, "dev_eer": 12.5, "conflict_rate": 0.1, "epochs": 3, "train_seconds": 9}
    print_table({"dual": {**row, "final_model": {"chosen": "average", "epochs": [2, 3]}},
                 "dpda": {**row, "final_model": {"chosen": "best", "epochs": [2]}}})
    out = capsys.readouterr().out
    assert "avg 2,3" in out and "epoch 2" in out and "need not equal any epoch" in out
