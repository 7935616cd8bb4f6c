"""Score files, strict joining with keys, and the evaluation report."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpda.data import Manifest, Utterance, load_manifest
from dpda.errors import ProtocolError
from dpda.evaluation import evaluate_scores, inverted_eer_limit, join_scores, read_asv_scores, read_scores
from dpda.metrics import compute_eer

KEY_2019 = """\
LA_0001 LA_E_0001 - - bonafide
LA_0001 LA_E_0002 - - bonafide
LA_0002 LA_E_0003 - A07 spoof
LA_0002 LA_E_0004 - A08 spoof
LA_0003 LA_E_0005 - A07 spoof
LA_0003 LA_E_0006 - - bonafide
"""
SCORES = {"LA_E_0001": 2.0, "LA_E_0002": 0.5, "LA_E_0003": -1.0, "LA_E_0004": 1.0, "LA_E_0005": -2.0, "LA_E_0006": 1.5}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def key(tmp_path):
    return load_manifest("asvspoof2019", write(tmp_path / "key.txt", KEY_2019))


def score_text(scores, extra=""):
    return "".join(f"{u} {s}{extra}\n" for u, s in scores.items())


def test_read_scores_ignores_extra_columns_and_comments(tmp_path):
    p = write(tmp_path / "s.txt", "# comment\n\nLA_E_0001 1.5 A07 spoof\nLA_E_0002 -2e-3\n")
    assert dict(read_scores(p)) == {"LA_E_0001": 1.5, "LA_E_0002": -0.002}


def test_read_scores_other_column(tmp_path):
    p = write(tmp_path / "s.txt", "LA_E_0001 - bonafide 1.25\nLA_E_0002 A07 spoof -3\n")
    assert dict(read_scores(p, score_column=4)) == {"LA_E_0001": 1.25, "LA_E_0002": -3.0}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("utt score\nLA_E_0001 1\n", ["s.txt:1", "expected a number in column 2, got 'score'", "header"]),
        ("LA_E_0001 1\nLA_E_0002\n", ["s.txt:2", "expected at least 2 columns"]),
        ("LA_E_0001 1\nLA_E_0001 2\n", ["s.txt:2", "scored twice (first on line 1)"]),
        ("LA_E_0001 nan\n", ["s.txt:1", "NaN"]),
        ("LA_E_0001 1\nLA_E_0002 -inf\n", ["s.txt:2", "score of LA_E_0002 is -inf", "finite"]),
        ("LA_E_0001 1e999\n", ["s.txt:1", "+inf (written '1e999')"]),
        ("\n# nothing\n", ["no scores found"]),
    ],
)
def test_read_scores_errors_name_file_and_line(tmp_path, text, expected):
    p = write(tmp_path / "s.txt", text)
    with pytest.raises(ProtocolError) as err:
        read_scores(p)
    for fragment in expected:
        assert fragment in str(err.value)


def test_join_refuses_missing_extra(key):
    partial = {k: v for k, v in SCORES.items() if k != "LA_E_0004"}
    with pytest.raises(ProtocolError, match=r"1 trial\(s\) of the key have no score: LA_E_0004"):
        join_scores(key, partial)
    with pytest.raises(ProtocolError, match=r"1 scored id\(s\) are not in the key .*: LA_E_9999"):
        join_scores(key, {**SCORES, "LA_E_9999": 0.0})


def test_join_ignores_trials_filtered_out(key):
    only_a07 = key.filter(attack="A07")
    joined = join_scores(only_a07, SCORES, universe=key)
    assert joined.n_ignored == 4
    assert list(joined.scores) == [-1.0, -2.0]


def test_report_matches_compute_eer_and_breakdown(key):
    joined = join_scores(key, SCORES)
    report = evaluate_scores(joined, fmt="asvspoof2019")
    bona, spoof = [2.0, 0.5, 1.5], [-1.0, 1.0, -2.0]
    eer, thr = compute_eer(bona, spoof)
    assert report["eer"] == pytest.approx(100 * eer)
    assert report["threshold"] == thr
    assert (report["n_bonafide"], report["n_spoof"]) == (3, 3)
    assert set(report["per_attack"]) == {"A07", "A08"}
    a07 = report["per_attack"]["A07"]
    assert (a07["n_bonafide"], a07["n_spoof"]) == (3, 2)
    assert a07["eer"] == pytest.approx(100 * compute_eer(bona, [-1.0, -2.0])[0])
    assert report["warnings"] == []


def test_inverted_scores_on_six_trials_are_not_called_inverted(key):
    # EER 66.7 % on 3 + 3 trials is within 3 standard errors of chance (limit 111 %).
    joined = join_scores(key, {k: -v for k, v in SCORES.items()})
    report = evaluate_scores(joined, fmt="asvspoof2019")
    assert report["eer"] > 50 and report["warnings"] == []


def test_inverted_eer_limit_values():
    assert inverted_eer_limit(50, 50) == pytest.approx(0.65)
    assert inverted_eer_limit(1000, 1000) == pytest.approx(0.5 + 3 * 0.25 * (2 / 1000) ** 0.5)
    assert inverted_eer_limit(19963, 11816) == pytest.approx(0.5087, abs=1e-4)
    assert inverted_eer_limit(300, 250) == inverted_eer_limit(250, 300)
    with pytest.raises(ValueError):
        inverted_eer_limit(0, 10)


def _manifest_of(n_bona, n_spoof):
    utts = [Utterance(f"b{i}", None, "bonafide") for i in range(n_bona)]
    utts += [Utterance(f"s{j}", None, "spoof") for j in range(n_spoof)]
    return Manifest("generic", "key.csv", tuple(utts))


@pytest.mark.parametrize("n_bona, n_spoof", [(40, 60), (300, 250), (1500, 700)])
def test_inverted_warning_exactly_above_the_limit(n_bona, n_spoof):
    # Spoofs score above a growing share of the bona fide trials; the EER sweeps across the limit.
    limit = inverted_eer_limit(n_bona, n_spoof)
    near = max(0.01, 2.0 / min(n_bona, n_spoof))  # the EER moves in steps of about 1/n
    seen = set()
    for shift in range(0, n_bona + 1, max(1, n_bona // 200)):
        key = _manifest_of(n_bona, n_spoof)
        scores = {f"b{i}": float(i) for i in range(n_bona)}
        low = float(n_bona - shift) - n_bona / 2
        scores.update({f"s{j}": low + (j + 0.5) / n_spoof * n_bona for j in range(n_spoof)})
        report = evaluate_scores(join_scores(key, scores), fmt="generic")
        eer = report["eer"] / 100
        warned = any("inverted" in w for w in report["warnings"])
        assert warned == (eer > limit), (shift, eer, limit)
        seen.add(warned)
        if abs(eer - limit) < near:
            seen.add(("near", eer > limit))
    assert seen >= {True, False, ("near", True), ("near", False)}


def test_asvspoof5_adds_dcf_and_cllr(key):
    report = evaluate_scores(join_scores(key, SCORES), fmt="asvspoof5")
    assert {"min_dcf", "act_dcf", "cllr"} <= set(report)


def test_condition_breakdown_within_value_and_spoof_only_fields(tmp_path):
    lines = [
        "LA_0001 DF_E_1 nocodec asvspoof - bonafide notrim eval - - - - -",
        "LA_0001 DF_E_2 low_mp3 asvspoof - bonafide notrim eval - - - - -",
        "LA_0002 DF_E_3 nocodec asvspoof A07 spoof notrim eval traditional_vocoder - - - -",
        "LA_0002 DF_E_4 low_mp3 asvspoof A08 spoof notrim eval wavenet - - - -",
        "LA_0002 DF_E_5 low_mp3 asvspoof A08 spoof notrim eval wavenet - - - -",
    ]
    key = load_manifest("asvspoof2021", write(tmp_path / "df.txt", "\n".join(lines) + "\n"))
    scores = {"DF_E_1": 1.0, "DF_E_2": 0.0, "DF_E_3": -1.0, "DF_E_4": 0.5, "DF_E_5": -0.5}
    report = evaluate_scores(join_scores(key, scores), fmt="asvspoof2021")
    codec = report["per_condition"]["codec"]
    assert (codec["low_mp3"]["n_bonafide"], codec["low_mp3"]["n_spoof"]) == (1, 2)
    vocoder = report["per_condition"]["vocoder"]  # bona fide have no vocoder: pooled bona fide
    assert (vocoder["wavenet"]["n_bonafide"], vocoder["wavenet"]["n_spoof"]) == (2, 2)


def test_read_asv_scores_2019_layout(tmp_path):
    p = write(tmp_path / "asv.txt", "bonafide target 3.0\nbonafide nontarget -2.5\nA07 spoof 0.5\nbonafide target 2\n")
    asv = read_asv_scores(p)
    assert list(asv.target) == [3.0, 2.0] and list(asv.nontarget) == [-2.5] and list(asv.spoof) == [0.5]


def test_read_asv_scores_2021_layout_with_subset(tmp_path):
    key = write(tmp_path / "k.txt", "\n".join([
        "LA_0001 LA_E_1 alaw ita_tx bonafide target notrim eval",
        "LA_0001 LA_E_2 alaw ita_tx bonafide nontarget notrim eval",
        "LA_0001 LA_E_3 alaw ita_tx A07 spoof notrim eval",
        "LA_0001 LA_E_4 alaw ita_tx bonafide target notrim progress",
    ]) + "\n")
    scores = write(tmp_path / "s.txt", "LA_0001 LA_E_1 4\nLA_0001 LA_E_2 -4\nLA_0001 LA_E_3 1\nLA_0001 LA_E_4 9\n")
    asv = read_asv_scores(scores, key, subset="eval")
    assert list(asv.target) == [4.0] and list(asv.nontarget) == [-4.0] and list(asv.spoof) == [1.0]


def test_read_asv_scores_errors(tmp_path):
    p = write(tmp_path / "asv.txt", "bonafide target 3.0\nbonafide maybe 1\n")
    with pytest.raises(ProtocolError, match=r"asv.txt:2: expected exactly one trial type"):
        read_asv_scores(p)
    p = write(tmp_path / "asv.txt", "bonafide target 3.0\nbonafide nontarget -inf\nA07 spoof 1\n")
    with pytest.raises(ProtocolError, match=r"asv.txt:2: ASV score '-inf' is not a finite number"):
        read_asv_scores(p)
