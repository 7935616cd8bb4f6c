"""``check_corpus`` and the ``dpda data check`` command."""

from __future__ import annotations

import argparse
import io
import json
import shutil
from contextlib import redirect_stdout

import pytest

from dpda.cli import data as cli_data
from dpda.data import FORMATS
from dpda.data.check import check_corpus


@pytest.fixture
def la_corpus(tmp_path, fixtures, write_audio):
    """2019 LA protocol with audio under ROOT/flac, one file missing (line 3)."""
    proto = tmp_path / "ASVspoof2019.LA.cm.train.trn.txt"
    shutil.copy(fixtures / "asvspoof2019_la.cm.train.trn.txt", proto)
    root = tmp_path / "LA_train"
    for utt in ("LA_T_1138215", "LA_T_1271820", "LA_T_1004644"):
        write_audio(root / "flac" / f"{utt}.flac")
    return proto, root


def _parser():
    parser = argparse.ArgumentParser(prog="dpda")
    sub = parser.add_subparsers(dest="command")
    cli_data.register(sub)
    return parser


def _run(argv):
    args = _parser().parse_args(argv)
    out = io.StringIO()
    with redirect_stdout(out):
        code = args.func(args)
    return code, out.getvalue()


def test_check_missing_audio_and_counts(la_corpus):
    proto, root = la_corpus
    report = check_corpus("asvspoof2019", proto, root)
    assert len(report.manifest) == 4
    assert report.missing_audio == [("LA_T_1003342", root / "flac" / "LA_T_1003342.flac", 3)]
    assert len(report.problems) == 1
    p = report.problems[0]
    assert p.line == 3 and p.path == str(proto) and "audio file not found for LA_T_1003342" in p.message
    assert report.label_counts == {"bonafide": 2, "spoof": 2}
    assert report.attack_counts == {"-": 2, "A01": 1, "A02": 1}
    assert report.condition_counts == {}
    assert not report.ok


def test_check_good_corpus_decode_and_no_audio(la_corpus, fixtures):
    proto, root = la_corpus
    (root / "flac" / "LA_T_1003342.flac").write_bytes(b"not audio at all")
    assert check_corpus("asvspoof2019", proto, root).ok
    report = check_corpus("asvspoof2019", proto, root, decode=True)
    assert [m[0] for m in report.unreadable_audio] == ["LA_T_1003342"]
    assert report.problems[0].line == 3 and "unreadable audio file" in report.problems[0].message
    # audio not checked: only the protocol
    report = check_corpus("asvspoof2021", fixtures / "asvspoof2021_df_trial_metadata.txt", check_audio=False)
    assert report.ok and not report.audio_checked
    assert report.condition_counts["subset"] == {"eval": 2, "hidden_track": 1, "progress": 1}
    assert report.condition_counts["vcc_team"] == {"-": 3, "team20": 1}


def test_check_all_missing_note_and_subset(fixtures, tmp_path):
    proto = fixtures / "asvspoof2021_df_trial_metadata.txt"
    report = check_corpus("asvspoof2021", proto, tmp_path, subset="eval")
    assert len(report.manifest) == 2 and len(report.missing_audio) == 2
    assert report.notes and "none of the 2 audio files exists" in report.notes[0]
    assert report.label_counts == {"bonafide": 1, "spoof": 1}
    bad = check_corpus("asvspoof2021", proto, subset="evaluation", check_audio=False)
    assert not bad.ok and "values present: eval, hidden_track, progress" in bad.problems[0].message


def test_check_file_level_errors_become_problems(tmp_path):
    report = check_corpus("asvspoof2019", tmp_path / "nope.txt")
    assert not report.ok and len(report.manifest) == 0
    assert "file not found" in report.problems[0].message


def test_check_for_folder(tmp_path, write_audio):
    split = tmp_path / "testing"
    write_audio(split / "real" / "a.wav")
    write_audio(split / "fake" / "a.wav")
    report = check_corpus("for", split, decode=True)
    assert report.ok and report.label_counts == {"bonafide": 1, "spoof": 1}


def test_cli_good_corpus(la_corpus, write_audio):
    proto, root = la_corpus
    write_audio(root / "flac" / "LA_T_1003342.flac")
    code, out = _run(["data", "check", "--format", "asvspoof2019", "--protocol", str(proto), "--root", str(root)])
    assert code == 0
    assert "utterances: 4" in out
    assert "bonafide: 2" in out and "spoof:    2" in out
    assert "A01: 1" in out
    assert "audio: 4 of 4 files found" in out
    assert out.rstrip().endswith("OK: no problems found")


def test_cli_bad_corpus(fixtures):
    proto = fixtures / "asvspoof2019_bad.txt"
    code, out = _run(["data", "check", "-f", "asvspoof2019", "-p", str(proto), "--no-audio"])
    assert code == 1
    assert f"{proto}:2: expected 5 columns" in out
    assert f"{proto}:4: duplicate utterance id 'LA_T_1138215' (first on line 1)" in out
    assert "problems (3):" in out and "FAILED: 3 problem(s) found" in out
    assert "audio: not checked" in out


def test_cli_missing_audio_and_listing_limit(fixtures, tmp_path):
    proto = tmp_path / "many.txt"
    proto.write_text("".join(f"LA_0001 LA_T_{i:07d} - A01 spoof\n" for i in range(60)))
    code, out = _run(["data", "check", "-f", "asvspoof2019", "-p", str(proto)])
    assert code == 1
    assert f"{proto}:1: audio file not found for LA_T_0000000" in out
    assert "... and 10 more" in out and "note: none of the 60 audio files exists" in out


def test_cli_json(fixtures):
    code, out = _run([
        "data", "check", "--format", "asvspoof2021", "--protocol",
        str(fixtures / "asvspoof2021_df_trial_metadata.txt"), "--subset", "eval", "--no-audio", "--json",
    ])
    assert code == 0
    obj = json.loads(out)
    assert obj["ok"] is True and obj["utterances"] == 2 and obj["subset"] == "eval"
    assert obj["labels"] == {"bonafide": 1, "spoof": 1}
    assert obj["conditions"]["source"] == {"asvspoof": 1, "vcc2020": 1}
    assert obj["problems"] == []
    code, out = _run(["data", "check", "-f", "itw", "-p", str(fixtures / "itw_meta.csv"), "--json"])
    obj = json.loads(out)
    assert code == 1 and obj["missing_audio"] == 4
    assert obj["problems"][0]["line"] == 2 and obj["problems"][0]["path"].endswith("itw_meta.csv")


def test_cli_help(capsys):
    parser = _parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["data", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "check" in text and all(fmt in text for fmt in FORMATS)
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "check", "--help"])
    text = capsys.readouterr().out
    for option in ("--format", "--protocol", "--root", "--subset", "--no-audio", "--decode", "--json"):
        assert option in text
    assert all(fmt in text for fmt in FORMATS)
    # bad format name: argparse error
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["data", "check", "--format", "asvspoof2020", "--protocol", "x"])
    assert info.value.code == 2
    assert "asvspoof2019" in capsys.readouterr().err
    # 'dpda data' alone prints help and returns 2
    args = parser.parse_args(["data"])
    assert args.func(args) == 2


def test_count_fields_matches_manifest_counts(fixtures):
    from dpda.data import load_manifest
    from dpda.data.check import count_fields

    m = load_manifest("asvspoof2021", fixtures / "asvspoof2021_df_trial_metadata.txt")
    labels, attacks, conditions = count_fields(m)
    assert labels == m.counts("label") and attacks == m.counts("attack")
    assert list(conditions) == m.condition_names
    assert all(conditions[name] == m.counts(name) for name in m.condition_names)


def test_cli_file_level_error(tmp_path):
    code, out = _run(["data", "check", "-f", "for", "-p", str(tmp_path)])
    assert code == 1
    assert "no fake/ or real/ folder" in out and "audio: not checked (the protocol could not be read)" in out


def test_main_entry_point(fixtures, capsys):
    pytest.importorskip("dpda.cli.evaluate")  # main.py imports every command module
    from dpda.cli.main import main

    code = main(["data", "check", "-f", "asvspoof5", "-p", str(fixtures / "asvspoof5_train.tsv"), "--no-audio"])
    out = capsys.readouterr().out
    assert code == 0 and "utterances: 4" in out and "codec_seed (3 values):" in out
