"""In-the-Wild, Fake-or-Real and generic parsers."""

from __future__ import annotations

import pytest

from dpda.data import load_manifest, parse_manifest
from dpda.errors import ProtocolError

# --- In-the-Wild -----------------------------------------------------------------------------

def test_itw_fields(fixtures):
    m = load_manifest("itw", fixtures / "itw_meta.csv")
    assert m.ids == ["0", "1", "2", "3"]
    assert [u.label for u in m] == ["spoof", "bonafide", "spoof", "bonafide"]
    assert m[2].speaker == "Biden, Joe" and m[0].speaker == "Alec Guinness"
    assert m[0].path == fixtures / "0.wav"
    assert [u.line for u in m] == [2, 3, 4, 5]
    assert m[0].attack is None and dict(m[0].conditions) == {}


def test_itw_root_and_header_checks(fixtures, tmp_path):
    m = load_manifest("itw", fixtures / "itw_meta.csv", tmp_path)
    assert m[1].path == tmp_path / "1.wav"
    bad = tmp_path / "meta.csv"
    bad.write_text("file,name,class\n0.wav,A,spoof\n")
    with pytest.raises(ProtocolError) as info:
        load_manifest("itw", bad)
    msg = str(info.value)
    assert "meta.csv:1:" in msg and "'speaker', 'label'" in msg and "file,speaker,label" in msg


def test_itw_bad_rows(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("file,speaker,label\n0.wav,A,spoof\n1.wav,Biden, Joe,spoof\n2.wav,B,fake\n0.wav,C,spoof\n")
    _, problems = parse_manifest("itw", meta)
    text = [str(p) for p in problems]
    assert text[0].endswith("meta.csv:3: expected 3 columns (file,speaker,label), got 4 (quote speaker names that contain commas)")
    assert text[1].endswith("meta.csv:4: unknown label 'fake'; expected one of: 'bona-fide', 'bonafide', 'spoof' (any case)")
    assert text[2].endswith("meta.csv:5: duplicate utterance id '0' (first on line 2)")


# --- Fake-or-Real ----------------------------------------------------------------------------

def _for_split(root, write_audio):
    split = root / "for-norm" / "testing"
    write_audio(split / "real" / "file1.wav_16k.wav_norm.wav_mono.wav_silence.wav")
    write_audio(split / "real" / "file2.wav")
    write_audio(split / "fake" / "file1.wav_16k.wav_norm.wav_mono.wav_silence.wav")
    write_audio(split / "fake" / "file9.flac")
    (split / "fake" / "notes.txt").write_text("not audio")
    (split / "fake" / "._file9.wav").write_text("macOS junk")
    return split


def test_for_split_folder(tmp_path, write_audio):
    split = _for_split(tmp_path, write_audio)
    m = load_manifest("for", split)
    assert m.ids == [
        "fake/file1.wav_16k.wav_norm.wav_mono.wav_silence.wav",
        "fake/file9.flac",
        "real/file1.wav_16k.wav_norm.wav_mono.wav_silence.wav",
        "real/file2.wav",
    ]
    assert [u.label for u in m] == ["spoof", "spoof", "bonafide", "bonafide"]
    assert all(u.line is None for u in m)
    assert m[3].path == split / "real" / "file2.wav" and m[3].path.is_file()
    assert load_manifest("for", split, split).ids == m.ids  # root equal to the split folder is fine


def test_for_layout_errors(tmp_path, write_audio):
    split = _for_split(tmp_path, write_audio)
    version = split.parent
    (version / "training").mkdir()
    with pytest.raises(ProtocolError, match=r"version folder .*training/.*testing/.*pass one split folder") as info:
        load_manifest("for", version)
    assert str(version / "testing") in str(info.value)
    odd = tmp_path / "odd"
    (odd / "bonafide").mkdir(parents=True)
    (odd / "fake").mkdir()
    with pytest.raises(ProtocolError, match=r"no real/ folder; .*found bonafide/, fake/"):
        load_manifest("for", odd)
    with pytest.raises(ProtocolError, match="takes no separate audio root"):
        load_manifest("for", split, tmp_path)
    with pytest.raises(ProtocolError, match="folder not found"):
        load_manifest("for", tmp_path / "missing")
    # an empty class folder is a problem
    (odd / "real").mkdir()
    write_audio(odd / "fake" / "x.wav")
    m, problems = parse_manifest("for", odd)
    assert m.ids == ["fake/x.wav"]
    assert len(problems) == 1 and "no audio files" in problems[0].message and "in real/" in problems[0].message


# --- generic ---------------------------------------------------------------------------------

def test_generic_csv(fixtures, tmp_path):
    m = load_manifest("generic", fixtures / "generic.csv")
    assert m.ids == ["clips/a.wav", "clips/b.flac", "clips/c.wav"]
    a, b, c = m
    assert (a.label, a.speaker, a.attack, dict(a.conditions)) == ("bonafide", "spk1", None, {"language": "en"})
    assert (b.label, b.attack, dict(b.conditions)) == ("spoof", "tts-3", {"language": "de"})
    assert (c.label, c.speaker, c.attack, dict(c.conditions)) == ("bonafide", None, None, {})
    assert a.path == fixtures / "clips" / "a.wav" and a.line == 2
    assert load_manifest("generic", fixtures / "generic.csv", tmp_path)[0].path == tmp_path / "clips" / "a.wav"


def test_generic_csv_utt_id_no_label_and_tabs(tmp_path):
    p = tmp_path / "list.csv"
    p.write_text("Path,UTT_ID\n/abs/x.wav,x\nrel/y.wav,y\n")
    m = load_manifest("generic", p)
    assert m.ids == ["x", "y"] and not m.labelled
    assert str(m[0].path) == "/abs/x.wav" and m[1].path == tmp_path / "rel" / "y.wav"
    t = tmp_path / "list.tsv"
    t.write_text("path\tlabel\na.wav\treal\n")
    assert load_manifest("generic", t)[0].label == "bonafide"


def test_generic_csv_problems(tmp_path):
    p = tmp_path / "list.csv"
    p.write_text(
        "path,label\n"
        "a.wav,bonafide\n"
        "b.wav,\n"
        "my clip.wav,spoof\n"
        "c.wav,Maybe\n"
        "d.wav\n"
        ",spoof\n"
    )
    _, problems = parse_manifest("generic", p)
    by_line = {q.line: q.message for q in problems}
    assert sorted(by_line) == [3, 4, 5, 6, 7]
    assert by_line[3].startswith("empty label; every row needs one of: 'bonafide'")
    assert "contains whitespace" in by_line[4] and "add a 'utt_id' column" in by_line[4]
    assert by_line[5].startswith("unknown label 'Maybe'; expected one of: 'bonafide'")
    assert by_line[5].endswith("'deepfake' (any case)")
    assert by_line[6] == "expected 2 columns (path,label), got 1"
    assert "empty 'path'" in by_line[7]
    nopath = tmp_path / "nopath.csv"
    nopath.write_text("file,label\na.wav,spoof\n")
    with pytest.raises(ProtocolError, match=r"nopath.csv:1: header 'file,label' has no 'path' column"):
        load_manifest("generic", nopath)


def test_generic_folder(tmp_path, write_audio):
    d = tmp_path / "audio"
    write_audio(d / "b.wav")
    write_audio(d / "sub" / "a.flac")
    write_audio(d / "sub" / "c.ogg")
    write_audio(d / "with space.wav")
    (d / "readme.txt").write_text("x")
    m, problems = parse_manifest("generic", d)
    assert m.ids == ["b.wav", "sub/a.flac", "sub/c.ogg"]
    assert all(u.label is None and u.line is None for u in m)
    assert m[1].path == d / "sub" / "a.flac"
    assert len(problems) == 1 and "contains whitespace" in problems[0].message
