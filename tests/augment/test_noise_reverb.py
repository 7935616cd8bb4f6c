"""AddNoise (MUSAN-style) and Reverberate (RIRs) on small synthetic corpora written to tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate

from dpda.augment.noise import DEFAULT_SNR_DB, AddNoise
from dpda.augment.reverb import Reverberate, read_rir_list
from dpda.errors import AudioError, ProtocolError

SR = 16000


def speech_like(seconds: float = 1.0, sr: int = SR, seed: int = 0, level: float = 0.1) -> np.ndarray:
    """Harmonic signal with a gliding pitch and syllable-rate amplitude modulation."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 25)) * (0.3 + np.sin(2 * np.pi * 3 * t + seed) ** 2)
    return (level * x / np.abs(x).max()).astype(np.float32)


def write(path: Path, x: np.ndarray, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype="PCM_16" if path.suffix == ".wav" else None)
    return path


@pytest.fixture(scope="module")
def musan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "musan"
    rng = np.random.default_rng(123)
    write(root / "noise" / "free-sound" / "n1.wav", (0.2 * rng.standard_normal(SR)).astype(np.float32))
    write(root / "noise" / "sound-bible" / "n2.flac", (0.1 * rng.standard_normal(SR // 4)).astype(np.float32))  # short
    t = np.arange(22050) / 22050
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330)) / 3
    write(root / "music" / "m1.wav", (0.3 * chord).astype(np.float32), sr=22050)  # resampled on use
    for i in range(3):
        write(root / "speech" / "librivox" / f"s{i}.wav", speech_like(1.2, seed=i, level=0.3))
    (root / "README").write_text("not audio")
    return root


def measured_snr(x: np.ndarray, y: np.ndarray) -> float:
    n = y.astype(np.float64) - x.astype(np.float64)
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(n**2))


# --------------------------------------------------------------------------- noise


def test_mixture_snr_is_the_drawn_one(musan: Path) -> None:
    aug = AddNoise(musan, categories={"noise": [0, 15]})
    x = speech_like(1.5)
    seen = []
    for seed in range(12):
        x_before = x.copy()
        y, trace = aug.apply(x, np.random.default_rng(seed))
        assert np.array_equal(x, x_before)
        assert y.dtype == np.float32 and y.shape == x.shape
        (info,) = trace
        assert info["category"] == "noise" and 0.0 <= info["snr_db"] <= 15.0
        assert measured_snr(x, y) == pytest.approx(info["snr_db"], abs=0.02)
        seen.append(info["snr_db"])
    assert np.ptp(seen) > 5  # really drawn


def test_babble_sums_speakers_at_drawn_snr(musan: Path) -> None:
    aug = AddNoise(musan, categories=["speech"])
    x = speech_like(1.0, seed=9)
    for seed in range(6):
        y, (info,) = aug.apply(x, np.random.default_rng(seed))
        assert 13.0 <= info["snr_db"] <= 20.0
        assert 3 <= len(info["sources"]) <= 7
        assert measured_snr(x, y) == pytest.approx(info["snr_db"], abs=0.02)


def test_default_categories_ranges_and_resampled_music(musan: Path) -> None:
    aug = AddNoise(musan.parent)  # parent of musan/ is accepted too
    assert aug.categories == ("noise", "music", "speech")
    assert aug.snr == {c: DEFAULT_SNR_DB[c] for c in aug.categories}
    x = speech_like(0.5)
    cats = set()
    for seed in range(30):
        y, (info,) = aug.apply(x, np.random.default_rng(seed))
        lo, hi = DEFAULT_SNR_DB[info["category"]]
        assert lo <= info["snr_db"] <= hi
        assert measured_snr(x, y) == pytest.approx(info["snr_db"], abs=0.02)
        cats.add(info["category"])
    assert cats == {"noise", "music", "speech"}


def test_short_file_loops_and_snr_override(musan: Path) -> None:
    short = musan / "noise" / "sound-bible" / "n2.flac"
    aug = AddNoise(files=[short], snr=5)
    x = speech_like(2.0)  # 8x the file length
    y, (info,) = aug.apply(x, np.random.default_rng(0))
    assert info["snr_db"] == 5
    n = y - x
    assert np.mean(np.abs(n[-SR // 8 :]) > 0) > 0.9  # noise all the way to the end
    assert measured_snr(x, y) == pytest.approx(5.0, abs=0.02)


def test_peak_limited_only_above_one(musan: Path) -> None:
    aug = AddNoise(files=[musan / "noise" / "free-sound" / "n1.wav"], snr=-10)
    x = speech_like(0.5, level=0.9)
    y = aug(x, np.random.default_rng(1))
    assert np.max(np.abs(y)) == pytest.approx(1.0, abs=1e-6)
    quiet = speech_like(0.5, level=0.01)
    yq = AddNoise(files=[musan / "noise" / "free-sound" / "n1.wav"], snr=10)(quiet, np.random.default_rng(1))
    assert np.max(np.abs(yq)) < 0.1  # untouched level


def test_same_seed_same_noise(musan: Path) -> None:
    aug = AddNoise(musan)
    x = speech_like(0.7)
    a = aug(x, np.random.default_rng(42))
    b = aug(x, np.random.default_rng(42))
    c = aug(x, np.random.default_rng(43))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_folder_without_audio_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "noise").mkdir(parents=True)
    (tmp_path / "empty" / "noise" / "notes.txt").write_text("x")
    with pytest.raises(AudioError) as e:
        AddNoise(tmp_path / "empty")
    msg = str(e.value)
    assert str(tmp_path / "empty") in msg and "noise,music,speech" in msg
    with pytest.raises(AudioError, match="music"):
        AddNoise(tmp_path / "empty", categories={"music": [5, 15]})
    with pytest.raises(AudioError, match="not found"):
        AddNoise(tmp_path / "nowhere")


def test_option_errors(musan: Path) -> None:
    with pytest.raises(ValueError, match="unknown noise category"):
        AddNoise(musan, categories={"traffic": [0, 5]})
    with pytest.raises(ValueError, match="low 15 > high 0"):
        AddNoise(musan, snr=[15, 0])
    with pytest.raises(ValueError, match="either root"):
        AddNoise()
    with pytest.raises(AudioError, match="noise file not found"):
        AddNoise(files=[musan / "nope.wav"])


def test_scan_is_done_once(musan: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dpda.augment.noise as noise_mod

    aug = AddNoise(musan, categories=["noise"])
    monkeypatch.setattr(noise_mod, "scan_audio", lambda *a: pytest.fail("rescanned"))
    aug(speech_like(0.2), np.random.default_rng(0))


# --------------------------------------------------------------------------- reverb


def synthetic_rir(delay: int, seconds: float = 0.25, rt: float = 0.05, seed: int = 0) -> np.ndarray:
    """Direct-path impulse at ``delay`` samples followed by an exponentially decaying noise tail."""
    n = int(seconds * SR)
    h = np.zeros(n)
    h[delay] = 0.9
    t = np.arange(n - delay - 1) / SR
    h[delay + 1 :] = 0.2 * np.random.default_rng(seed).standard_normal(t.size) * np.exp(-t / rt)
    return h.astype(np.float32)


DELAYS = (40, 200, 800)


@pytest.fixture(scope="module")
def rirs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("rirs")
    room = top / "RIRS_NOISES" / "simulated_rirs" / "smallroom" / "Room001"
    lines = []
    for i, d in enumerate(DELAYS, 1):
        write(room / f"Room001-0000{i}.wav", synthetic_rir(d, seed=i))
        lines.append(f"--rir-id 0000{i} --room-id 001 RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-0000{i}.wav")
    (top / "RIRS_NOISES" / "simulated_rirs" / "smallroom" / "rir_list").write_text("\n".join(lines) + "\n")
    return top


def test_reverb_is_not_delayed_and_keeps_level_and_length(rirs: Path) -> None:
    aug = Reverberate(rirs / "RIRS_NOISES")  # folder scan
    assert len(aug.files) == 3
    x = np.zeros(SR, dtype=np.float32)
    x[3000], x[9000], x[12000] = 0.5, -0.3, 0.4  # dry, impulse-like
    used = set()
    for seed in range(12):
        y, (info,) = aug.apply(x, np.random.default_rng(seed))
        used.add(Path(info["rir"]).name)
        assert y.shape == x.shape and y.dtype == np.float32
        c = correlate(y.astype(np.float64), x.astype(np.float64), mode="full")
        assert int(np.argmax(np.abs(c))) - (x.size - 1) == 0
        assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(np.mean(x.astype(np.float64) ** 2)), rel=1e-4)
        assert not np.allclose(y, x, atol=1e-3)  # reverberant tail present
    assert len(used) == 3


def test_reverb_of_noise_correlates_at_lag_zero(rirs: Path) -> None:
    # the RIR with the longest pre-delay (800 samples = 50 ms): the output must not be delayed by it
    aug = Reverberate(files=[rirs / "RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00003.wav"])
    x = (0.1 * np.random.default_rng(5).standard_normal(SR)).astype(np.float32)
    y = aug(x, np.random.default_rng(0))
    c = correlate(y.astype(np.float64), x.astype(np.float64), mode="full")
    assert int(np.argmax(c)) - (x.size - 1) == 0


@pytest.mark.parametrize("root_name", ["", "RIRS_NOISES"])
def test_kaldi_rir_list(rirs: Path, root_name: str) -> None:
    root = rirs / root_name if root_name else rirs
    aug = Reverberate(root, list_file="RIRS_NOISES/simulated_rirs/smallroom/rir_list")
    assert [Path(p).name for p in aug.files] == [f"Room001-0000{i}.wav" for i in (1, 2, 3)]
    assert all(Path(p).is_file() for p in aug.files)


def test_plain_list_and_missing_entries(rirs: Path, tmp_path: Path) -> None:
    room = rirs / "RIRS_NOISES/simulated_rirs/smallroom/Room001"
    lst = tmp_path / "rirs.txt"
    lst.write_text(f"# my RIRs\n\n{room / 'Room001-00001.wav'}\nRoom001-00002.wav\n")
    assert len(read_rir_list(lst, root=room)) == 2
    bad = tmp_path / "bad.txt"
    bad.write_text("Room001-00001.wav\nmissing.wav\n")
    with pytest.raises(ProtocolError) as e:
        read_rir_list(bad, root=room)
    assert f"{bad}:2" in str(e.value) and "missing.wav" in str(e.value)
    (tmp_path / "nothing_here").mkdir()
    with pytest.raises(AudioError, match="no audio files"):
        Reverberate(tmp_path / "nothing_here")


def test_reverb_same_seed_same_output(rirs: Path) -> None:
    aug = Reverberate(rirs, list_file=rirs / "RIRS_NOISES/simulated_rirs/smallroom/rir_list", max_seconds=0.1)
    x = speech_like(0.5)
    assert np.array_equal(aug(x, np.random.default_rng(3)), aug(x, np.random.default_rng(3)))
