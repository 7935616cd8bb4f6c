"""Typed configs: validation errors name the key path; overrides; round trip."""

from __future__ import annotations

import pytest
import yaml

from dpda.config import ConfigError, apply_overrides, dump_yaml, from_dict, load_config
from dpda.train.config import RunConfig, validate

BASE = {"data": {"train": {"protocol": "train.csv"}, "format": "generic"}}


def test_defaults_and_round_trip():
    cfg = from_dict(RunConfig, BASE)
    assert cfg.train.mode == "dpda" and cfg.train.aligner.name == "pcgrad" and cfg.data.crop_samples == 64600
    again = from_dict(RunConfig, yaml.safe_load(dump_yaml(cfg)))
    assert again == cfg


@pytest.mark.parametrize(
    "data, message",
    [
        ({"trian": {}}, "trian: unknown key; expected one of"),
        ({"train": {"optimizer": {"lr": "fast"}}}, "train.optimizer.lr: expected a number, got 'fast'"),
        ({"train": {"epochs": 2.5}}, "train.epochs: expected an integer"),
        ({"data": {"train": {"root": "x"}}}, "data.train.protocol: required key is missing"),
        ({"train": {"aligner": {"name": ["pcgrad"]}}}, "train.aligner.name: expected a string"),
    ],
)
def test_errors_name_the_key_path(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict(RunConfig, data)


def test_validate_choices():
    cfg = from_dict(RunConfig, {**BASE, "train": {"mode": "triple"}})
    with pytest.raises(ConfigError, match="train.mode: expected one of single, dual, dpda"):
        validate(cfg)
    with pytest.raises(ConfigError, match="model.name"):
        validate(from_dict(RunConfig, {**BASE, "model": {"name": "resnet"}}))


def test_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    cfg = load_config(RunConfig, path, ["train.epochs=3", "train.optimizer.lr=1e-4", "model.config={gat_dims: [16, 16]}",
                                        "train.aligner.options.reduction=sum"])
    assert cfg.train.epochs == 3 and cfg.train.optimizer.lr == 1e-4
    assert cfg.model.config == {"gat_dims": [16, 16]} and cfg.train.aligner.options == {"reduction": "sum"}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["train.epochs"])


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(RunConfig, path)


def test_load_config_values_are_set_as_they_are_before_the_overrides(tmp_path):
    from dpda.config import load_config
    from dpda.train.config import RunConfig

    path = tmp_path / "c.yaml"
    path.write_text("model:\n")  # an empty mapping is filled in
    cfg = load_config(RunConfig, path, ["train.epochs=3"], {"model.init_from": "123"})
    assert cfg.model.init_from == "123" and cfg.train.epochs == 3  # a path stays a string (not YAML 123)
    cfg = load_config(RunConfig, path, ["model.init_from=b.pt"], {"model.init_from": "a.pt"})
    assert cfg.model.init_from == "b.pt"
