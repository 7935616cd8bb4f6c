"""``dpda evaluate`` where a new user trips: score ids written as file names,
non-finite scores, and the 'scores look inverted' warning near chance level."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist
from typing import Dict, List, Sequence, Tuple

import pytest

from dpda.cli.main import main
from dpda.metrics import compute_eer

# --------------------------------------------------------------------------- helpers


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_scores(path: Path, pairs: Sequence[Tuple[str, float]]) -> Path:
    return write(path, "".join(f"{u} {s}\n" for u, s in pairs))


def evaluate(capsys, scores: Path, protocol: Path, fmt: str, *extra: str) -> Tuple[int, str, str]:
    code = main(["evaluate", "--scores", str(scores), "--protocol", str(protocol), "--format", fmt, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def score_of(i: int, label: str) -> float:
    """Separable scores: bona fide high, spoof low (EER 0)."""
    return 1.0 + i if label == "bonafide" else -1.0 - i


# Trials: (utt_id, label); even = bona fide, odd = spoof.
def trials(n: int = 6) -> List[Tuple[str, str]]:
    return [(str(27910 + i), "bonafide" if i % 2 == 0 else "spoof") for i in range(n)]


def itw_key(tmp_path: Path, folder: str = "") -> Path:
    spelling = {"bonafide": "bona-fide", "spoof": "spoof"}
    rows = "".join(f"{folder}{u}.wav,Some Speaker,{spelling[lab]}\n" for u, lab in trials())
    return write(tmp_path / "release_in_the_wild" / "meta.csv", "file,speaker,label\n" + rows)


# --------------------------------------------------------------------------- item 1: id forms


def test_itw_file_names_as_ids_are_accepted_with_a_note(capsys, tmp_path):
    key = itw_key(tmp_path)
    pairs = [(f"{u}.wav", score_of(i, lab)) for i, (u, lab) in enumerate(trials())]
    scores = write_scores(tmp_path / "itw_scores.txt", pairs)
    code, out, err = evaluate(capsys, scores, key, "itw", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["id_form"] == "file_name"
    assert (report["n_bonafide"], report["n_spoof"]) == (3, 3) and report["eer"] == 0.0
    assert "file name" in err and "27910.wav" in err
    assert len([line for line in err.splitlines() if line.startswith("note:")]) == 1


def test_exact_ids_need_no_note(capsys, tmp_path):
    key = itw_key(tmp_path)
    scores = write_scores(tmp_path / "s.txt", [(u, score_of(i, lab)) for i, (u, lab) in enumerate(trials())])
    code, out, err = evaluate(capsys, scores, key, "itw", "--json")
    assert code == 0, err
    assert json.loads(out)["id_form"] == "utt_id"
    assert "note:" not in err


def _asvspoof_layouts(tmp_path: Path):
    """(format, key file, utt ids in key order) of every ASVspoof format, with a flac/ folder."""
    utts = [(f"LA_E_{100 + i}", lab) for i, (_, lab) in enumerate(trials())]
    lines2019 = [f"LA_0001 {u} - {'-' if lab == 'bonafide' else 'A07'} {lab}" for u, lab in utts]
    lines2021 = [f"LA_0001 {u} alaw ita_tx {'-' if lab == 'bonafide' else 'A07'} {lab} notrim eval" for u, lab in utts]
    tags5 = {"bonafide": "- bonafide", "spoof": "AC3 A11"}
    lines5 = [f"E_0001 {u} F - - - {tags5[lab]} {lab} -" for u, lab in utts]
    out = []
    for fmt, lines in (("asvspoof2019", lines2019), ("asvspoof2021", lines2021), ("asvspoof5", lines5)):
        folder = tmp_path / fmt
        (folder / "flac").mkdir(parents=True)
        out.append((fmt, write(folder / "key.txt", "\n".join(lines) + "\n"), utts))
    return out


@pytest.mark.parametrize("form, make", [
    ("file_name", lambda u: f"{u}.flac"),
    ("path_2", lambda u: f"flac/{u}.flac"),
    ("path_2_no_ext", lambda u: f"flac/{u}"),
])
def test_asvspoof_formats_accept_file_names_and_relative_paths(capsys, tmp_path, form, make):
    for fmt, key, utts in _asvspoof_layouts(tmp_path):
        scores = write_scores(tmp_path / f"{fmt}.txt", [(make(u), score_of(i, lab)) for i, (u, lab) in enumerate(utts)])
        code, out, err = evaluate(capsys, scores, key, fmt, "--json")
        assert code == 0, (fmt, err)
        report = json.loads(out)
        assert report["id_form"] == form, fmt
        assert report["eer"] == 0.0 and report["n_bonafide"] + report["n_spoof"] == 6


def test_itw_relative_path_as_written_in_meta_csv(capsys, tmp_path):
    key = itw_key(tmp_path, folder="wav/")
    for form, make in (("path_2", lambda u: f"wav/{u}.wav"), ("file_name", lambda u: f"{u}.wav")):
        scores = write_scores(tmp_path / "s.txt", [(make(u), score_of(i, lab)) for i, (u, lab) in enumerate(trials())])
        code, out, err = evaluate(capsys, scores, key, "itw", "--json")
        assert code == 0, err
        assert json.loads(out)["id_form"] == form


def test_generic_csv_with_utt_id_column_accepts_paths(capsys, tmp_path):
    rows = "".join(f"clips/{u}.wav,{lab},u{u}\n" for u, lab in trials())
    key = write(tmp_path / "list.csv", "path,label,utt_id\n" + rows)
    for form, make in (("utt_id", lambda u: f"u{u}"), ("path_2", lambda u: f"clips/{u}.wav"),
                       ("file_name_no_ext", lambda u: u)):
        scores = write_scores(tmp_path / "s.txt", [(make(u), score_of(i, lab)) for i, (u, lab) in enumerate(trials())])
        code, out, err = evaluate(capsys, scores, key, "generic", "--json")
        assert code == 0, err
        assert json.loads(out)["id_form"] == form


def _for_split(tmp_path: Path, names: Dict[str, List[str]]) -> Path:
    split = tmp_path / "for-norm" / "testing"
    for cls, files in names.items():
        for name in files:
            write(split / cls / name, "")
    return split


def test_for_file_names_accepted_when_unique(capsys, tmp_path):
    split = _for_split(tmp_path, {"real": ["r1.wav", "r2.wav"], "fake": ["f1.wav", "f2.wav"]})
    scores = write_scores(tmp_path / "s.txt", [("r1.wav", 2.0), ("r2.wav", 1.0), ("f1.wav", -1.0), ("f2.wav", -2.0)])
    code, out, err = evaluate(capsys, scores, split, "for", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["id_form"] == "file_name" and report["eer"] == 0.0


def test_for_ambiguous_file_names_are_refused_naming_the_trials(capsys, tmp_path):
    split = _for_split(tmp_path, {"real": ["a.wav", "r2.wav"], "fake": ["a.wav", "f2.wav"]})
    scores = write_scores(tmp_path / "s.txt", [("a.wav", 2.0), ("r2.wav", 1.0), ("f2.wav", -2.0)])
    code, out, err = evaluate(capsys, scores, split, "for")
    assert code == 2
    assert "that form is ambiguous" in err and "a.wav (fake/a.wav, real/a.wav)" in err


def test_mixed_forms_giving_a_trial_two_scores_are_refused(capsys, tmp_path):
    key = itw_key(tmp_path)
    pairs = [(f"{u}.wav", score_of(i, lab)) for i, (u, lab) in enumerate(trials())] + [("27911", 0.0)]
    scores = write_scores(tmp_path / "s.txt", pairs)
    code, out, err = evaluate(capsys, scores, key, "itw")
    assert code == 2
    assert "two scores" in err and "27911.wav" in err and "27911" in err


def test_mixed_forms_without_collision_are_refused(capsys, tmp_path):
    key = itw_key(tmp_path)
    pairs = [(f"{u}.wav" if i < 4 else u, score_of(i, lab)) for i, (u, lab) in enumerate(trials())]
    scores = write_scores(tmp_path / "s.txt", pairs)
    code, out, err = evaluate(capsys, scores, key, "itw")
    assert code == 2
    assert "27914" in err and "27915" in err and "one form" in err


def test_alias_form_keeps_unknown_and_missing_strict(capsys, tmp_path):
    key = itw_key(tmp_path)
    pairs = [(f"{u}.wav", score_of(i, lab)) for i, (u, lab) in enumerate(trials()) if u != "27913"]
    scores = write_scores(tmp_path / "s.txt", pairs + [("bogus.wav", 0.5)])
    code, out, err = evaluate(capsys, scores, key, "itw")
    assert code == 2
    assert "1 scored id(s) are not in the key" in err and "bogus.wav" in err
    assert "1 trial(s) of the key have no score" in err and "27913.wav" in err
    assert "5 scored id(s)" not in err


def test_alias_form_with_subset_ignores_trials_outside_the_filter(capsys, tmp_path):
    folder = tmp_path / "keys"
    (folder / "flac").mkdir(parents=True)
    lines = [f"LA_0001 LA_E_{i} alaw ita_tx {'-' if i % 2 else 'A07'} {'bonafide' if i % 2 else 'spoof'} notrim "
             f"{'eval' if i < 6 else 'progress'}" for i in range(8)]
    key = write(folder / "key.txt", "\n".join(lines) + "\n")
    scores = write_scores(tmp_path / "s.txt", [(f"LA_E_{i}.flac", float(i % 2) + 0.01 * i) for i in range(8)])
    code, out, err = evaluate(capsys, scores, key, "asvspoof2021", "--subset", "eval", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["n_ignored"] == 2 and report["id_form"] == "file_name"


# --------------------------------------------------------------------------- item 2: non-finite scores


@pytest.mark.parametrize("bad", ["inf", "-inf", "Infinity", "1e999", "nan"])
def test_non_finite_score_refused_with_file_and_line(capsys, tmp_path, bad):
    key = itw_key(tmp_path)
    pairs = [(u, score_of(i, lab)) for i, (u, lab) in enumerate(trials())]
    lines = [f"{u} {bad if i == 2 else s}\n" for i, (u, s) in enumerate(pairs)]
    text = "".join(lines)
    scores = write(tmp_path / "s.txt", text)
    code, out, err = evaluate(capsys, scores, key, "itw")
    assert code == 2
    assert f"s.txt:3: score of {pairs[2][0]} is" in err and "finite" in err


# --------------------------------------------------------------------------- item 3: inverted warning


def quantile_scores(n_bona: int, n_spoof: int, shift: float) -> Tuple[List[float], List[float]]:
    """Deterministic normal quantiles: bona fide N(-shift, 1), spoof N(+shift, 1) (EER ~ Phi(shift))."""
    q = NormalDist().inv_cdf
    bona = [q((i + 0.5) / n_bona) - shift for i in range(n_bona)]
    spoof = [q((j + 0.5) / n_spoof) + shift for j in range(n_spoof)]
    return bona, spoof


def generic_trial_files(tmp_path: Path, bona: List[float], spoof: List[float]) -> Tuple[Path, Path]:
    ids = [f"b{i}" for i in range(len(bona))] + [f"s{j}" for j in range(len(spoof))]
    labels = ["bonafide"] * len(bona) + ["spoof"] * len(spoof)
    key = write(tmp_path / "key.csv", "path,label\n" + "".join(f"{u},{lab}\n" for u, lab in zip(ids, labels)))
    scores = write_scores(tmp_path / "s.txt", list(zip(ids, bona + spoof)))
    return key, scores


def _warned(capsys, tmp_path, n_bona, n_spoof, shift) -> Tuple[float, bool]:
    bona, spoof = quantile_scores(n_bona, n_spoof, shift)
    key, scores = generic_trial_files(tmp_path, bona, spoof)
    code, out, err = evaluate(capsys, scores, key, "generic", "--json")
    assert code == 0, err
    eer = json.loads(out)["eer"]
    assert eer == pytest.approx(100 * compute_eer(bona, spoof)[0])
    return eer, "inverted" in err


def test_chance_level_eer_does_not_warn(capsys, tmp_path):
    eer, warned = _warned(capsys, tmp_path, 300, 250, 0.03)
    assert 50.5 < eer < 52.5
    assert not warned


def test_clearly_inverted_scores_warn(capsys, tmp_path):
    eer, warned = _warned(capsys, tmp_path, 300, 250, 1.3)
    assert eer > 89
    assert warned


def test_inverted_warning_depends_on_trial_count(capsys, tmp_path):
    # EER ~ 60 %: within 3 standard errors of 50 % on 50 + 50 trials, far outside on 1000 + 1000.
    eer_small, warned_small = _warned(capsys, tmp_path, 50, 50, 0.253)
    eer_large, warned_large = _warned(capsys, tmp_path, 1000, 1000, 0.253)
    assert 58 < eer_small < 62 and 58 < eer_large < 62
    assert not warned_small
    assert warned_large
