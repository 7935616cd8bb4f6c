"""``dpda evaluate`` end to end on the example files shipped in the repo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dpda.cli.main import main
from dpda.data import load_manifest
from dpda.evaluation import read_scores
from dpda.metrics import compute_eer
from tests.conftest import REPO_ROOT

KEY = REPO_ROOT / "examples" / "asvspoof2021_la_key.txt"
SCORES = REPO_ROOT / "examples" / "example_scores.txt"
BASE = ["evaluate", "--scores", str(SCORES), "--protocol", str(KEY), "--format", "asvspoof2021"]


def expected_eer(subset=None):
    key = load_manifest("asvspoof2021", KEY)
    if subset:
        key = key.filter(subset=subset)
    scores = read_scores(SCORES)
    bona = [scores[u.utt_id] for u in key if u.label == "bonafide"]
    spoof = [scores[u.utt_id] for u in key if u.label == "spoof"]
    return 100 * compute_eer(bona, spoof)[0], len(bona), len(spoof)


def test_json_output(capsys):
    assert main(BASE + ["--subset", "eval", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    eer, nb, ns = expected_eer("eval")
    assert report["eer"] == pytest.approx(eer)
    assert (report["n_bonafide"], report["n_spoof"]) == (nb, ns)
    assert {"threshold", "per_attack", "per_condition"} <= set(report)
    assert set(report["per_condition"]) == {"codec", "transmission"}
    assert report["n_ignored"] > 0


def test_table_output_and_plot(capsys, tmp_path):
    png = tmp_path / "det.png"
    assert main(BASE + ["--plot", str(png)]) == 0
    out = capsys.readouterr().out
    eer, _, _ = expected_eer()
    assert f"EER:      {eer:.3f} %" in out
    assert "A07" in out and "codec" in out and "transmission" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_trials_refused_with_exit_2(capsys, tmp_path):
    lines = SCORES.read_text().splitlines()
    partial = tmp_path / "partial.txt"
    partial.write_text("\n".join(lines[:-3]) + "\n")
    code = main(["evaluate", "--scores", str(partial), "--protocol", str(KEY), "--format", "asvspoof2021"])
    err = capsys.readouterr().err
    assert code == 2
    assert "3 trial(s) of the key have no score" in err


def test_unknown_subset_names_present_values(capsys):
    assert main(BASE + ["--subset", "evaluation"]) == 2
    err = capsys.readouterr().err
    assert "subset='evaluation'" in err and "eval" in err and "progress" in err


def test_asv_scores_give_tdcf(capsys, tmp_path):
    asv = tmp_path / "asv.txt"
    asv.write_text("".join(
        [f"bonafide target {4 + 0.1 * i}\n" for i in range(20)]
        + [f"bonafide nontarget {-4 + 0.2 * i}\n" for i in range(30)]
        + [f"A07 spoof {0.3 * i - 2}\n" for i in range(25)]
    ))
    assert main(BASE + ["--asv-scores", str(asv), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 < report["min_tdcf"] <= 1 and 0 < report["min_tdcf_legacy"] <= 1
    assert all("min_tdcf" in g for g in report["per_attack"].values())


@pytest.mark.parametrize("command", [[], ["evaluate"], ["data"], ["data", "check"]])
def test_help_is_available(command):
    proc = subprocess.run([sys.executable, "-m", "dpda", *command, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "usage: dpda" in proc.stdout and len(proc.stdout) > 200
