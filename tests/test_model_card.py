"""The model card: the typed view of a model file, its defaults, its dict form."""

from __future__ import annotations

import torch

from dpda.audio import AASIST_NUM_SAMPLES
from dpda.inference import ModelCard, Scorer, read_card
from dpda.inference.card import model_payload
from dpda.inference.modelfile import save_checkpoint
from dpda.models import DEFAULT_SAMPLE_RATE, build_model, model_sample_rate



def tiny_lcnn():
    return build_model("lcnn")


def test_card_round_trip_keeps_the_old_info_keys(tmp_path):
    model = tiny_lcnn()
    payload = model_payload("lcnn", {"ssl_pretrained": "x.pt"}, model, 16000, 32000, threshold=0.5,
                            calibration={"a": 2.0, "b": -1.0}, epoch=3)
    assert "ssl_pretrained" not in payload["model_config"]  # init-only options are not stored
    save_checkpoint(tmp_path / "m.pt", payload)
    card = read_card(tmp_path / "m.pt")
    assert (card.model_name, card.sample_rate, card.crop_samples, card.threshold) == ("lcnn", 16000, 32000, 0.5)
    assert card.extra == {"epoch": 3}
    info = Scorer.from_checkpoint(tmp_path / "m.pt").info
    assert list(info) == ["format", "model_name", "model_config", "sample_rate", "crop_samples", "threshold",
                          "calibration", "epoch", "path"]
    assert info["calibration"] == {"a": 2.0, "b": -1.0} and info["path"] == str(tmp_path / "m.pt")


def test_card_without_rate_or_window_takes_the_registry_defaults():
    card = ModelCard.from_payload({"model_name": "aasist-l", "model_state": {}, "optimizer": {}})
    assert (card.sample_rate, card.crop_samples) == (DEFAULT_SAMPLE_RATE, AASIST_NUM_SAMPLES)
    assert "optimizer" not in card.as_dict() and "model_state" not in card.as_dict()


def test_model_sample_rate_follows_the_config_option():
    assert model_sample_rate("rawnet2") == DEFAULT_SAMPLE_RATE
    assert model_sample_rate("rawnet2", {"sample_rate": 8000}) == 8000
    assert model_sample_rate("lcnn", {"lfcc": {"sample_rate": 8000}}) == 8000
    assert model_sample_rate("lcnn", {"lfcc": None}) == DEFAULT_SAMPLE_RATE


def test_card_payload_rebuilds_the_same_weights(tmp_path):
    model = tiny_lcnn()
    card = ModelCard("lcnn")
    save_checkpoint(tmp_path / "m.pt", card.payload(model))
    scorer = Scorer.from_checkpoint(tmp_path / "m.pt")
    for a, b in zip(model.state_dict().values(), scorer.model.state_dict().values()):
        assert torch.equal(a, b)
