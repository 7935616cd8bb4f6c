"""``dpda import``: a released checkpoint (original key names) becomes a dpda model that scores audio.

A released full-model checkpoint is the fairseq XLS-R front-end under
``ssl_model.model.*`` plus the back-end under the original names. The test
builds one per published format: a small wav2vec 2.0 (1 layer of width 1024,
so that the back-end's 1024-dimensional input fits) written in fairseq's
layout, and the back-end state dict of ``$DPDA_REFERENCE_DIR/published``. The
imported model must reproduce the reference back-end's logits on the reference
features and the small wav2vec 2.0's features on a waveform.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("transformers")
from transformers import Wav2Vec2Model  # noqa: E402

from dpda.cli.main import main  # noqa: E402
from dpda.models.published.importer import file_sha256, published_formats  # noqa: E402
from dpda.models.ssl import make_wav2vec2_config  # noqa: E402
from dpda.train.checkpoint import load_checkpoint, load_model  # noqa: E402
from tests.models.test_fairseq_convert import fairseq_layout  # noqa: E402

#: reference file of each architecture's back-end
REFERENCE = {"xlsr_conformer_tcm": "conformer_tcm", "xlsr_aasist": "aasist", "xlsr_mamba": "mamba"}
#: a 1-layer wav2vec 2.0 of width 1024 with XLS-R's seven convolutions (narrow) and strides (the importer
#: infers them; total stride 320: 201 frames for 64600 samples, as the back-ends expect)
SMALL_SSL = dict(hidden_size=1024, num_hidden_layers=1, num_attention_heads=16, intermediate_size=64,
                 conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
FORMATS = sorted(n for n, f in published_formats().items() if f.front_end == "xlsr")
#: clovaai/aasist formats -> the official weights and forward reference of $DPDA_REFERENCE_DIR/aasist
OFFICIAL = {"clovaai-aasist": "AASIST", "clovaai-aasist-l": "AASIST-L"}


def reference(reference_dir, architecture):
    z = np.load(reference_dir / "published" / f"{REFERENCE[architecture]}_backend_ref.npz")
    return {k: torch.from_numpy(np.array(z[k])) for k in z.files}


@pytest.fixture(scope="module")
def small_ssl():
    torch.manual_seed(0)
    return Wav2Vec2Model(make_wav2vec2_config(SMALL_SSL)).eval()


def released_checkpoint(path, small_ssl, backend_state):
    """Write a checkpoint laid out as the original repositories' ``torch.save(model.state_dict())``."""
    state = {f"ssl_model.model.{k}": v for k, v in fairseq_layout(small_ssl, extras=False).items()}
    state.update(backend_state)
    torch.save(state, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", FORMATS)
def test_import_gives_a_model_with_the_original_outputs(reference_dir, small_ssl, tmp_path, capsys, name):
    fmt = published_formats()[name]
    ref = reference(reference_dir, fmt.architecture)
    backend = {k: v for k, v in ref.items() if not k.startswith("ref__")}
    ckpt = released_checkpoint(tmp_path / "released.pth", small_ssl, backend)
    out = tmp_path / "model.pt"
    assert main(["import", name, str(ckpt), "--out", str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["model_name"] == fmt.architecture and written["crop_samples"] == fmt.crop_samples

    model, info = load_model(out)
    assert info["crop_samples"] == fmt.crop_samples and info["model_name"] == fmt.architecture
    assert info["provenance"] == {"format": name, "file": "released.pth", "sha256": file_sha256(ckpt),
                                  "repos": list(fmt.repos)}
    with torch.no_grad():
        logits, _ = model.backend(ref["ref__input_ssl_features"])
        assert (logits - ref["ref__logits"]).abs().max().item() <= 1e-5
        wave = torch.randn(1, 8000, generator=torch.Generator(device="cpu").manual_seed(1), device="cpu")
        ours = model.ssl.model(wave).last_hidden_state
        theirs = small_ssl(wave).last_hidden_state
        assert (ours - theirs).abs().max().item() <= 1e-4
    assert load_checkpoint(out)["format"] == 1

    wav = tmp_path / "a.wav"
    sf.write(wav, 0.1 * np.sin(np.arange(fmt.crop_samples + 800) / 9.0).astype(np.float32), 16000)
    assert main(["detect", "--model", str(out), str(wav), "--threshold", "0", "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)


def _first_format_with_reference(reference_dir):
    for name in FORMATS:
        fmt = published_formats()[name]
        if (reference_dir / "published" / f"{REFERENCE[fmt.architecture]}_backend_ref.npz").is_file():
            return name, fmt
    pytest.skip("no published format registered")


def test_a_renamed_or_mis_shaped_key_is_named(reference_dir, small_ssl, tmp_path, capsys):
    name, fmt = _first_format_with_reference(reference_dir)
    backend = {k: v for k, v in reference(reference_dir, fmt.architecture).items() if not k.startswith("ref__")}
    key = sorted(backend)[len(backend) // 2]
    renamed = dict(backend)
    renamed[key + "_renamed"] = renamed.pop(key)
    bad_shape = dict(backend)
    bad_shape[key] = torch.zeros(*[d + 1 for d in backend[key].shape], device="cpu") if backend[key].dim() else \
        torch.zeros(2, device="cpu")
    for label, state in (("renamed", renamed), ("shape", bad_shape)):
        ckpt = released_checkpoint(tmp_path / f"{label}.pth", small_ssl, state)
        out = tmp_path / f"{label}.pt"
        assert main(["import", name, str(ckpt), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dpda import: error: ") and key in err, err
        assert not out.exists()


def test_bad_invocations(reference_dir, small_ssl, tmp_path, capsys):
    name, fmt = _first_format_with_reference(reference_dir)
    assert main(["import", "no-such-format", str(tmp_path / "x.pth"), "--out", str(tmp_path / "m.pt")]) == 2
    assert "unknown published format 'no-such-format'" in capsys.readouterr().err
    assert main(["import", name, str(tmp_path / "missing.pth"), "--out", str(tmp_path / "m.pt")]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    backend_only = {k: v for k, v in reference(reference_dir, fmt.architecture).items() if not k.startswith("ref__")}
    torch.save(backend_only, tmp_path / "backend.pth")
    assert main(["import", name, str(tmp_path / "backend.pth"), "--out", str(tmp_path / "m.pt")]) == 2
    assert "no ssl_model.model.* keys" in capsys.readouterr().err
    (tmp_path / "exists.pt").write_bytes(b"x")
    assert main(["import", name, str(tmp_path / "backend.pth"), "--out", str(tmp_path / "exists.pt")]) == 2
    assert "exists; pass --force" in capsys.readouterr().err


@pytest.mark.slow
def test_training_starts_from_an_imported_model(reference_dir, small_ssl, tmp_path, capsys):
    """dpda train with model.init_from: the imported architecture and weights are where training starts."""
    import yaml

    from tests.train.test_trainer import write_corpus

    name, fmt = _first_format_with_reference(reference_dir)
    backend = {k: v for k, v in reference(reference_dir, fmt.architecture).items() if not k.startswith("ref__")}
    imported = tmp_path / "imported.pt"
    assert main(["import", name, str(released_checkpoint(tmp_path / "r.pth", small_ssl, backend)), "--out", str(imported)]) == 0
    cfg = {
        "name": "ft", "seed": 1, "device": "cpu",
        "model": {"name": fmt.architecture, "config": {"freeze_ssl": True}},  # init_from: on the command line
        "data": {"format": "generic", "train": {"protocol": str(write_corpus(tmp_path / "train", 4, 0))},
                 "crop_samples": 4000, "batch_size": 2, "num_workers": 0},
        "augment": {"where": "device", "rawboost_algo": 3},
        "train": {"mode": "dpda", "epochs": 1, "optimizer": {"lr": 0.0, "weight_decay": 0.0}, "final_model": "best"},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "cfg.yaml"), "--run-dir", str(run), "--no-progress", "--init-from", str(imported)]) == 0
    assert "starting from the weights of" in capsys.readouterr().out
    start, _ = load_model(imported)
    trained, info = load_model(run)
    assert info["model_config"]["freeze_ssl"] is True and "ssl_config" in info["model_config"]
    for (k, a), (_, b) in zip(start.named_parameters(), trained.named_parameters()):
        assert torch.equal(a, b), k  # lr 0: the parameters are the imported ones
    bad = dict(cfg, model={"name": "xlsr_mamba" if fmt.architecture != "xlsr_mamba" else "xlsr_aasist",
                           "init_from": str(imported)})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert main(["train", str(tmp_path / "bad.yaml"), "--run-dir", str(tmp_path / "bad")]) == 2
    assert f"holds a {fmt.architecture!r} model" in capsys.readouterr().err


@pytest.mark.slow
def test_the_readme_recipe_on_the_reference_files(reference_dir, small_ssl, tmp_path, capsys):
    """README 'Run a published model in three commands': import, score + evaluate on an In-the-Wild layout, detect."""
    name, fmt = _first_format_with_reference(reference_dir)
    backend = {k: v for k, v in reference(reference_dir, fmt.architecture).items() if not k.startswith("ref__")}
    model_file = tmp_path / "published.pt"
    assert main(["import", name, str(released_checkpoint(tmp_path / "r.pth", small_ssl, backend)),
                 "--out", str(model_file)]) == 0
    itw = tmp_path / "release_in_the_wild"
    itw.mkdir()
    rows = ["file,speaker,label"]
    rng = np.random.default_rng(0)
    for i in range(6):
        sf.write(itw / f"{i}.wav", (0.1 * rng.standard_normal(5000)).astype(np.float32), 16000)
        rows.append(f"{i}.wav,spk{i % 2},{'bona-fide' if i % 2 else 'spoof'}")
    (itw / "meta.csv").write_text("\n".join(rows) + "\n")
    capsys.readouterr()
    assert main(["score", "--model", str(model_file), "--format", "itw", "--protocol", str(itw / "meta.csv"),
                 "--out", str(tmp_path / "itw.txt"), "--evaluate", "--workers", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "EER:" in out and "threshold" in out
    assert main(["detect", "--model", str(model_file), "--threshold", "0.5", str(itw / "0.wav"), "--no-progress"]) == 0


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_aasist_weights_import_in_the_same_command(reference_dir, tmp_path, capsys, name):
    tag = OFFICIAL[name]
    weights = reference_dir / "aasist" / f"{tag}.pth"
    out = tmp_path / "m.pt"
    assert main(["import", name, str(weights), "--out", str(out)]) == 0
    model, info = load_model(out)
    assert info["crop_samples"] == 64600 and info["provenance"]["sha256"] == file_sha256(weights)
    ref = np.load(reference_dir / "aasist" / f"{tag}_forward_ref.npz")
    with torch.no_grad():
        logits = model(torch.from_numpy(ref["input"]))
    assert np.abs(logits.numpy() - ref["logits"]).max() <= 1e-4
    state = torch.load(weights, map_location="cpu", weights_only=True)
    key = sorted(state)[3]
    state[key + "_renamed"] = state.pop(key)
    torch.save(state, tmp_path / "renamed.pth")
    capsys.readouterr()
    assert main(["import", name, str(tmp_path / "renamed.pth"), "--out", str(tmp_path / "r.pt")]) == 2
    assert key in capsys.readouterr().err
