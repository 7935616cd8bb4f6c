"""ASVspoof 2019 / 2021 / 5 protocol parsers."""

from __future__ import annotations

import pytest

from dpda.data import load_manifest, parse_manifest
from dpda.errors import ProtocolError

# --- ASVspoof 2019 ---------------------------------------------------------------------------

def test_2019_la_fields(fixtures):
    proto = fixtures / "asvspoof2019_la.cm.train.trn.txt"
    m = load_manifest("asvspoof2019", proto)
    assert m.format == "asvspoof2019" and len(m) == 4
    bona, spoof = m[0], m[1]
    assert (bona.utt_id, bona.speaker, bona.label, bona.attack, bona.line) == (
        "LA_T_1138215", "LA_0079", "bonafide", None, 1)
    assert dict(bona.conditions) == {}
    assert (spoof.label, spoof.attack, spoof.line, spoof.target) == ("spoof", "A01", 2, 0)
    assert bona.target == 1
    # no flac/ folder next to the protocol: ROOT/UTT.flac with ROOT = protocol dir
    assert bona.path == fixtures / "LA_T_1138215.flac"
    assert m.counts() == {"bonafide": 2, "spoof": 2}


def test_2019_pa_environment(fixtures):
    m = load_manifest("asvspoof2019", fixtures / "asvspoof2019_pa.cm.train.trn.txt")
    assert [u.get("environment") for u in m] == ["aaa", "aaa", "bbc"]
    assert [u.attack for u in m] == [None, "AA", "BA"]
    assert m.condition_names == ["environment"]


def test_2019_root_with_flac_folder(fixtures, tmp_path):
    proto = fixtures / "asvspoof2019_la.cm.train.trn.txt"
    assert load_manifest("asvspoof2019", proto, tmp_path)[0].path == tmp_path / "LA_T_1138215.flac"
    (tmp_path / "flac").mkdir()
    assert load_manifest("asvspoof2019", proto, tmp_path)[0].path == tmp_path / "flac" / "LA_T_1138215.flac"


def test_2019_trial_list_is_unlabelled(fixtures):
    m = load_manifest("asvspoof2019", fixtures / "asvspoof2021_la.cm.eval.trl.txt")
    assert m.ids == ["LA_E_9332881", "LA_E_6866159", "LA_E_5464494"]
    assert all(u.label is None for u in m) and not m.labelled
    assert m[2].line == 3


def test_2019_bad_lines_strict(fixtures):
    proto = fixtures / "asvspoof2019_bad.txt"
    with pytest.raises(ProtocolError) as info:
        load_manifest("asvspoof2019", proto)
    msg = str(info.value)
    assert "asvspoof2019_bad.txt" in msg
    assert "asvspoof2019_bad.txt:2: expected 5 columns (SPEAKER UTT ENV ATTACK LABEL), got 4" in msg
    assert "asvspoof2019_bad.txt:3: unknown label 'bonafied'; expected one of: 'bonafide', 'spoof'" in msg
    # duplicate id: both line numbers appear
    assert "asvspoof2019_bad.txt:4: duplicate utterance id 'LA_T_1138215' (first on line 1)" in msg
    assert [p.line for p in info.value.problems] == [2, 3, 4]


def test_2019_lenient_keeps_good_lines(fixtures):
    m, problems = parse_manifest("asvspoof2019", fixtures / "asvspoof2019_bad.txt")
    assert m.ids == ["LA_T_1138215", "LA_T_1004644"]
    assert len(problems) == 3


def test_2019_asv_protocol_hint(tmp_path):
    proto = tmp_path / "ASVspoof2019.LA.asv.eval.gi.trl.txt"
    proto.write_text("LA_0007 LA_E_5013670 bonafide target\n")
    with pytest.raises(ProtocolError, match="looks like an ASV protocol"):
        load_manifest("asvspoof2019", proto)


def test_2019_mixed_layout_and_missing_file(tmp_path):
    proto = tmp_path / "p.txt"
    proto.write_text("# comment\n\nLA_0079 LA_T_1 - - bonafide\nLA_T_2\n")
    with pytest.raises(ProtocolError, match=r"p.txt:4: expected 5 columns .*got 1"):
        load_manifest("asvspoof2019", proto)
    with pytest.raises(ProtocolError, match="file not found"):
        load_manifest("asvspoof2019", tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ProtocolError, match="no utterances found"):
        load_manifest("asvspoof2019", empty)


# --- ASVspoof 2021 ---------------------------------------------------------------------------

def test_2021_la_keys(fixtures):
    m = load_manifest("asvspoof2021", fixtures / "asvspoof2021_la_trial_metadata.txt")
    u = m[0]
    assert (u.utt_id, u.speaker, u.attack, u.label, u.line) == ("LA_E_9332881", "LA_0009", "A07", "spoof", 1)
    assert dict(u.conditions) == {"codec": "alaw", "transmission": "ita_tx", "trim": "notrim", "subset": "eval"}
    # '-' transmission is left out; bona fide has no attack
    assert dict(m[1].conditions) == {"codec": "none", "trim": "notrim", "subset": "progress"}
    assert m[1].attack is None and m[1].label == "bonafide"
    assert u.path == fixtures / "LA_E_9332881.flac"


def test_2021_df_keys_asvspoof_and_vcc(fixtures):
    m = load_manifest("asvspoof2021", fixtures / "asvspoof2021_df_trial_metadata.txt")
    asv, vcc, bona, vcc_bona = m
    assert dict(asv.conditions) == {
        "codec": "nocodec", "source": "asvspoof", "trim": "notrim", "subset": "progress",
        "vocoder": "traditional_vocoder",
    }
    assert (asv.speaker, asv.attack) == ("LA_0023", "A14")
    assert dict(vcc.conditions) == {
        "codec": "low_m4a", "source": "vcc2020", "trim": "notrim", "subset": "eval",
        "vocoder": "neural_vocoder_nonautoregressive",
        "vcc_task": "Task1", "vcc_team": "team20", "vcc_gender_pair": "FF", "vcc_language": "E",
    }
    assert (vcc.speaker, vcc.attack, vcc.label) == ("TEF2", "Task1-team20", "spoof")
    assert bona.attack is None and "vocoder" not in bona.conditions and bona.label == "bonafide"
    assert vcc_bona.get("subset") == "hidden_track"


def test_2021_subset_filter(fixtures):
    m = load_manifest("asvspoof2021", fixtures / "asvspoof2021_df_trial_metadata.txt")
    ev = m.filter(subset="eval")
    assert ev.ids == ["DF_E_2000013", "DF_E_2000024"]
    assert m.counts("subset") == {"eval": 2, "hidden_track": 1, "progress": 1}
    assert m.filter(subset="eval", label="bonafide").ids == ["DF_E_2000024"]
    with pytest.raises(ProtocolError, match="values present: eval, hidden_track, progress"):
        m.filter(subset="evaluation")


def test_2021_wrong_column_count_and_label(tmp_path):
    proto = tmp_path / "trial_metadata.txt"
    proto.write_text(
        "LA_0009 LA_E_1 alaw ita_tx A07 spoof notrim eval\n"
        "LA_0009 LA_E_2 alaw ita_tx A07 spoof notrim\n"
        "LA_0009 LA_E_3 alaw ita_tx A07 fake notrim eval\n"
    )
    with pytest.raises(ProtocolError) as info:
        load_manifest("asvspoof2021", proto)
    msg = str(info.value)
    assert "trial_metadata.txt:2: expected 8 columns (LA:" in msg and "13 columns (DF:" in msg
    assert "or 1 column" in msg and "got 7" in msg
    assert "trial_metadata.txt:3: unknown label 'fake'; expected one of: 'bonafide', 'spoof'" in msg


def test_2021_trial_list(fixtures):
    m = load_manifest("asvspoof2021", fixtures / "asvspoof2021_la.cm.eval.trl.txt")
    assert len(m) == 3 and not m.labelled


# --- ASVspoof 5 ------------------------------------------------------------------------------

def test_asvspoof5_fields(fixtures):
    m = load_manifest("asvspoof5", fixtures / "asvspoof5_train.tsv")
    spoof, bona, bona_codec, spoof_codec = m
    assert (spoof.utt_id, spoof.speaker, spoof.label, spoof.attack) == ("T_0000000000", "T_4850", "spoof", "A05")
    assert dict(spoof.conditions) == {"gender": "F", "attack_tag": "AC3"}
    assert bona.attack is None and bona.label == "bonafide"
    assert dict(bona_codec.conditions) == {"gender": "M", "codec": "C05", "codec_q": "3", "codec_seed": "1234"}
    assert bona_codec.attack is None
    assert dict(spoof_codec.conditions) == {
        "gender": "F", "codec": "C08", "codec_q": "1", "codec_seed": "42", "attack_tag": "AC2"}
    assert spoof.path == fixtures / "T_0000000000.flac"
    assert m.counts("attack") == {"-": 2, "A05": 1, "A18": 1}


def test_asvspoof5_header_flac_dir_and_errors(tmp_path):
    proto = tmp_path / "p.tsv"
    proto.write_text(
        "SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP\n"
        "T_1 T_0001 F - - - - - bonafide -\n"
    )
    (tmp_path / "flac").mkdir()
    m = load_manifest("asvspoof5", proto)
    assert m.ids == ["T_0001"] and m[0].line == 2 and m[0].attack is None
    assert m[0].path == tmp_path / "flac" / "T_0001.flac"
    proto.write_text("T_1 T_0001 F - - - - - bonafide -\nT_1 T_0002 F - - - A01 spoof\nT_1 T_0003 F - - - A01 A01 x -\n")
    with pytest.raises(ProtocolError) as info:
        load_manifest("asvspoof5", proto)
    msg = str(info.value)
    assert "p.tsv:2: expected 10 columns (SPEAKER_ID FLAC_FILE_NAME" in msg and "got 8" in msg
    assert "p.tsv:3: unknown label (KEY column) 'x'" in msg


def test_asvspoof5_id_list(tmp_path):
    proto = tmp_path / "ids.txt"
    proto.write_text("E_0000000001\nE_0000000002\n")
    m = load_manifest("asvspoof5", proto, tmp_path / "audio")
    assert m.ids == ["E_0000000001", "E_0000000002"] and not m.labelled
    assert m[0].path == tmp_path / "audio" / "E_0000000001.flac"
