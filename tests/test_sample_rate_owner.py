"""One owner for the sample rate: the model (registry default, config option, model card), checked against data."""

from __future__ import annotations

import pytest

from dpda.config import ConfigError, from_dict
from dpda.inference.card import model_payload
from dpda.inference.modelfile import save_checkpoint
from dpda.models import build_model
from dpda.train.config import RunConfig, check_buildable, validate

TINY_AASIST = {"filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]], "gat_dims": [8, 8]}


def run_config(**data) -> RunConfig:
    return from_dict(RunConfig, {"device": "cpu", "model": {"name": "aasist-l", "config": dict(TINY_AASIST)},
                                 "data": {"format": "generic", "train": {"protocol": "x.csv"}, **data}})


def test_data_rate_other_than_the_models_is_refused_naming_both():
    with pytest.raises(ConfigError, match=r"data\.sample_rate: 8000 Hz, but model aasist-l expects 16000 Hz.*"
                                          r"model\.config\.sample_rate: 8000"):
        validate(run_config(sample_rate=8000))
    validate(run_config())  # 16 kHz: the default of both


def test_a_model_built_for_another_rate_accepts_it():
    cfg = run_config(sample_rate=8000)
    cfg.model.config["sample_rate"] = 8000
    validate(cfg)
    cfg = from_dict(RunConfig, {"model": {"name": "lcnn", "config": {"lfcc": {"sample_rate": 8000}}},
                                "data": {"format": "generic", "train": {"protocol": "x.csv"}, "sample_rate": 16000}})
    with pytest.raises(ConfigError, match=r"model\.config\.lfcc\.sample_rate"):
        validate(cfg)


def test_init_from_a_model_trained_at_another_rate_is_refused(tmp_path):
    model = build_model("aasist-l", **TINY_AASIST)
    save_checkpoint(tmp_path / "m.pt", model_payload("aasist-l", TINY_AASIST, model, 16000, 16000))
    cfg = run_config(sample_rate=8000)
    cfg.model.init_from = str(tmp_path / "m.pt")
    validate(cfg)  # the model file decides: checked when it is read
    with pytest.raises(ConfigError, match=r"data\.sample_rate: 8000 Hz, but model\.init_from .* 16000 Hz"):
        check_buildable(cfg)
