"""The schema of ``dpda train`` configurations (YAML; every run directory stores the resolved one).

Units: samples at ``data.sample_rate`` Hz; ``batch_size`` is per path (a
dual-path step sees 2 x batch_size waveforms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from dpda.audio.crop import AASIST_NUM_SAMPLES
from dpda.config import ConfigError


@dataclass
class SplitConfig:
    """One corpus split: protocol (key) file and audio root, in a ``dpda.data`` format."""

    protocol: str
    root: Optional[str] = None
    format: Optional[str] = None  # defaults to data.format
    subset: Optional[str] = None


@dataclass
class DataConfig:
    format: str = "asvspoof2019"
    train: Optional[SplitConfig] = None
    dev: Optional[SplitConfig] = None
    sample_rate: int = 16000
    crop_samples: int = AASIST_NUM_SAMPLES  # training crops (random) and dev crops (first N samples)
    batch_size: int = 5  # per path
    eval_batch_size: int = 32
    num_workers: int = 2
    max_train_utterances: Optional[int] = None  # take a fixed random subset (quick experiments)


@dataclass
class ModelConfig:
    name: str = "aasist-l"
    config: Dict[str, Any] = field(default_factory=dict)
    # a dpda model file (a run's model.pt, or one written by dpda import) to start from: its architecture
    # options are the defaults of ``config`` and its weights are loaded strictly before the first step
    init_from: Optional[str] = None


@dataclass
class AlignerConfig:
    name: str = "pcgrad"
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-6
    weight_decay: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9  # sgd only


@dataclass
class SchedulerConfig:
    name: str = "none"  # none | cosine | step
    step_size: int = 10  # epochs (step)
    gamma: float = 0.5  # step
    min_lr: float = 0.0  # cosine


@dataclass
class AugmentConfig:
    """Augmented path: batched RawBoost on the device, or a chain in the DataLoader workers."""

    where: str = "device"  # device (batched RawBoost in the step) | workers (reference-exact / chain)
    rawboost_algo: int = 4
    rawboost_params: Dict[str, Any] = field(default_factory=dict)
    chain: Optional[str] = None  # YAML chain file for where=workers (instead of RawBoost)


@dataclass
class TrainConfig:
    mode: str = "dpda"  # single | dual | dpda
    engine_mode: str = "joint"  # joint | split
    # both path gradients from one batched pass (dpda.train.one_pass): auto (on CUDA, where a step is
    # launch-bound; the unbatched passes on the CPU) | on | off; a model it cannot batch runs the unbatched passes
    one_pass: str = "auto"
    # joint mode's one pass: copies (one vmapped forward/backward over two copies of the joint batch: fewest
    # operators, twice the activation memory) | batched_backward (one backward over the two losses)
    joint_one_pass: str = "copies"
    aligner: AlignerConfig = field(default_factory=AlignerConfig)
    epochs: int = 100
    steps_per_epoch: Optional[int] = None  # cap: an epoch is the first N batches of its shuffled order (None: all)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    bonafide_weight: float = 0.9
    spoof_weight: float = 0.1
    patience: int = 7  # epochs without dev improvement before stopping (0: never stop early)
    monitor: str = "dev_loss"  # dev_loss | dev_eer
    top_k: int = 5  # checkpoints kept (and averaged) by the monitored metric
    # model.pt: "better" of the top-k average and the best epoch on dev (the monitored metric; the average
    # without a dev split), "average" (the paper code's habit), or "best" (the best epoch alone)
    final_model: str = "better"
    average_top_k: Optional[bool] = None  # deprecated: true = final_model average, false = best
    amp: str = "none"  # none | bf16 | fp16
    grad_clip: Optional[float] = None
    log_every: int = 10  # steps between metrics.jsonl step records (every step's stats are still aggregated)


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    runs_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_CHOICES = {
    "train.mode": ("single", "dual", "dpda"),
    "train.engine_mode": ("joint", "split"),
    "train.one_pass": ("auto", "on", "off"),
    "train.joint_one_pass": ("copies", "batched_backward"),
    "train.monitor": ("dev_loss", "dev_eer"),
    "train.amp": ("none", "bf16", "fp16"),
    "train.final_model": ("better", "average", "best"),
    "train.optimizer.name": ("adam", "adamw", "sgd"),
    "train.scheduler.name": ("none", "cosine", "step"),
    "augment.where": ("device", "workers"),
}


def validate(cfg: RunConfig) -> RunConfig:
    """Check the values that the types cannot (choices, ranges, required splits)."""
    for key, choices in _CHOICES.items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    from dpda.data import FORMATS
    from dpda.models import model_names

    if cfg.data.format not in FORMATS:
        raise ConfigError(f"data.format: expected one of {', '.join(FORMATS)}, got {cfg.data.format!r}")
    if cfg.model.name not in model_names():
        raise ConfigError(f"model.name: expected one of {', '.join(model_names())}, got {cfg.model.name!r}")
    if not cfg.model.init_from:  # else checked once the model file's options are merged (resolve_init_from)
        check_sample_rate(cfg)
    if cfg.data.train is None:
        raise ConfigError("data.train: required (protocol and root of the training split)")
    for name, value in (("data.batch_size", cfg.data.batch_size), ("data.crop_samples", cfg.data.crop_samples),
                        ("train.epochs", cfg.train.epochs), ("data.sample_rate", cfg.data.sample_rate)):
        if value < 1:
            raise ConfigError(f"{name}: must be >= 1, got {value}")
    if not 0 <= cfg.augment.rawboost_algo <= 8:
        raise ConfigError(f"augment.rawboost_algo: expected 0..8, got {cfg.augment.rawboost_algo}")
    if cfg.train.steps_per_epoch is not None and cfg.train.steps_per_epoch < 1:
        raise ConfigError(f"train.steps_per_epoch: must be >= 1 or null, got {cfg.train.steps_per_epoch}")
    if cfg.device != "auto":
        try:
            torch.device(cfg.device)
        except (RuntimeError, TypeError):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {cfg.device!r}") from None
    if cfg.train.average_top_k is not None:  # older configs and run directories
        cfg.train.final_model = "average" if cfg.train.average_top_k else "best"
    o, sch, t = cfg.train.optimizer, cfg.train.scheduler, cfg.train
    checks = [
        ("train.top_k", t.top_k >= 1, ">= 1"), ("train.optimizer.lr", o.lr >= 0, ">= 0"),
        ("train.optimizer.weight_decay", o.weight_decay >= 0, ">= 0"),
        ("train.optimizer.betas", len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "two numbers in [0, 1)"),
        ("train.optimizer.momentum", o.momentum >= 0, ">= 0"),
        ("train.scheduler.step_size", sch.step_size >= 1, ">= 1"), ("train.scheduler.gamma", sch.gamma > 0, "> 0"),
        ("train.scheduler.min_lr", sch.min_lr >= 0, ">= 0"),
        ("train.grad_clip", t.grad_clip is None or t.grad_clip > 0, "> 0 or null"),
        ("train.patience", t.patience >= 0, ">= 0"), ("train.log_every", t.log_every >= 1, ">= 1"),
        ("train.bonafide_weight", t.bonafide_weight >= 0, ">= 0"), ("train.spoof_weight", t.spoof_weight >= 0, ">= 0"),
        ("data.eval_batch_size", cfg.data.eval_batch_size >= 1, ">= 1"),
        ("data.num_workers", cfg.data.num_workers >= 0, ">= 0"),
    ]
    for name, ok, expected in checks:
        if not ok:
            value: Any = cfg
            for part in name.split("."):
                value = getattr(value, part)
            raise ConfigError(f"{name}: must be {expected}, got {value!r}")
    return cfg


def check_sample_rate(cfg: RunConfig) -> None:
    """``data.sample_rate`` must be the rate the model is built for (its front-end's filters assume it).

    Audio is resampled to ``data.sample_rate`` when read, so a corpus at any
    rate is fine; a model built for 16 kHz fed 8 kHz samples is not.
    """
    from dpda.models import model_sample_rate, model_spec

    expected = model_sample_rate(cfg.model.name, cfg.model.config)
    if cfg.data.sample_rate == expected:
        return
    spec = model_spec(cfg.model.name)
    option = spec.rate_option if spec is not None else None
    hint = f"set data.sample_rate: {expected} (audio is resampled to it when read)"
    if option:
        hint += f", or build the model for {cfg.data.sample_rate} Hz with model.config.{'.'.join(option)}: {cfg.data.sample_rate}"
    raise ConfigError(f"data.sample_rate: {cfg.data.sample_rate} Hz, but model {cfg.model.name} expects {expected} Hz; "
                      + hint)


def resolve_init_from(cfg: RunConfig) -> Optional[Dict[str, Any]]:
    """With ``model.init_from``: check the file, merge its architecture options under ``model.config``.

    Returns the model file's payload (its ``model_state`` is what the run starts
    from), or None without ``init_from``. Idempotent. Raises :class:`ConfigError`
    for a missing or unreadable file and for another architecture than ``model.name``.
    """
    if not cfg.model.init_from:
        return None
    from dpda.train.checkpoint import CheckpointError, load_checkpoint, resolve_model_path

    try:
        # mapped, not read: check_buildable needs only the metadata, the trainer copies the weights once
        payload = load_checkpoint(resolve_model_path(cfg.model.init_from), mmap=True)
    except CheckpointError as e:
        raise ConfigError(f"model.init_from: {e}") from None
    if payload.get("model_name") != cfg.model.name:
        raise ConfigError(f"model.init_from: {cfg.model.init_from} holds a {payload.get('model_name')!r} model, "
                          f"but model.name is {cfg.model.name!r}")
    rate = payload.get("sample_rate")
    if rate and int(rate) != cfg.data.sample_rate:
        raise ConfigError(f"data.sample_rate: {cfg.data.sample_rate} Hz, but model.init_from {cfg.model.init_from} "
                          f"was trained at {int(rate)} Hz; set data.sample_rate: {int(rate)}")
    cfg.model.config = {**dict(payload.get("model_config") or {}), **cfg.model.config}
    check_sample_rate(cfg)
    return payload


def check_buildable(cfg: RunConfig) -> None:
    """What only building can tell, checked before a run directory exists (cheaply: the model on ``meta``).

    The aligner and its options, the augmentation parameters, the model and its
    options, and that ``data.crop_samples`` is long enough for the model.
    Raises :class:`ConfigError` naming the setting.
    """
    from dpda.align import build_aligner
    from dpda.augment.rawboost import RawBoostParams
    from dpda.models import build_model
    from dpda.train.checkpoint import INIT_ONLY_OPTIONS

    resolve_init_from(cfg)
    if cfg.train.mode == "dpda":
        try:
            build_aligner(cfg.train.aligner.name, **cfg.train.aligner.options)
        except ValueError as e:
            raise ConfigError(f"train.aligner: {e}") from None
    if cfg.augment.rawboost_params:
        try:
            RawBoostParams(**cfg.augment.rawboost_params)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"augment.rawboost_params: {e}") from None
    if cfg.augment.where == "workers" and cfg.augment.chain and not Path(cfg.augment.chain).is_file():
        raise ConfigError(f"augment.chain: {cfg.augment.chain} not found")
    options = dict(cfg.model.config)
    pretrained = options.get("ssl_pretrained")
    if pretrained and not Path(pretrained).exists():
        raise ConfigError(f"model.config.ssl_pretrained: {pretrained} not found")
    options = {k: v for k, v in options.items() if k not in INIT_ONLY_OPTIONS}
    try:
        with torch.device("meta"):
            model = build_model(cfg.model.name, **options)
    except (TypeError, ValueError, KeyError) as e:
        raise ConfigError(f"model.config ({cfg.model.name}): {e}") from None
    model.eval()

    def forward(samples: int) -> None:
        with torch.no_grad():
            model(torch.zeros(2, samples, device="meta"))

    try:
        forward(cfg.data.crop_samples)
    except ValueError as e:  # the models' own length checks
        raise ConfigError(f"data.crop_samples: {e}") from None
    except (RuntimeError, NotImplementedError) as e:
        try:
            forward(max(cfg.data.crop_samples, AASIST_NUM_SAMPLES))
        except (RuntimeError, NotImplementedError, ValueError):
            return  # an operation the meta device lacks: the first step will tell
        raise ConfigError(f"data.crop_samples: {cfg.data.crop_samples} samples are too short for "
                          f"{cfg.model.name} ({str(e).splitlines()[0]})") from None


#: unit and meaning of every key of :class:`RunConfig` (by ``Class.field``): the source of the
#: configuration reference in docs/training.md (:func:`config_reference`; types and defaults come from
#: the dataclasses, so the reference cannot drift from the schema)
KEY_DOCS: Dict[str, Tuple[str, str]] = {
    "RunConfig.name": ("", "run name: the run directory is `RUNS_DIR/NAME-DATE-TIME` (or `--run-dir`)"),
    "RunConfig.seed": ("", "seed of everything (initial weights, data order, augmentation)"),
    "RunConfig.device": ("", "`auto` (CUDA when visible), `cpu`, `cuda`, `cuda:N`; see \"Devices\""),
    "RunConfig.runs_dir": ("path", "folder of the run directories"),
    "ModelConfig.name": ("", "architecture (`dpda models list`)"),
    "ModelConfig.config": ("", "the architecture's options (`ssl_pretrained`, `freeze_ssl`, ...); unset ones keep "
                               "the full-size defaults"),
    "ModelConfig.init_from": ("path", "a dpda model file (a run's `model.pt`, or one written by `dpda import`) to "
                                      "fine-tune: its architecture options are the defaults of `model.config`, its "
                                      "weights are loaded strictly before the first step"),
    "DataConfig.format": ("", "corpus format of the protocols (`docs/corpora.md`)"),
    "DataConfig.train": ("", "the training split (required)"),
    "DataConfig.dev": ("", "the dev split; without it, no validation, threshold or calibration"),
    "SplitConfig.protocol": ("path", "protocol (key) file, or the folder of a folder layout"),
    "SplitConfig.root": ("path", "audio root (default: next to the protocol)"),
    "SplitConfig.format": ("", "corpus format of this split (default `data.format`)"),
    "SplitConfig.subset": ("", "keep only this subset of the protocol (formats with subsets)"),
    "DataConfig.sample_rate": ("Hz", "audio is resampled to it on loading; must be the rate the model is built "
                                     "for (checked)"),
    "DataConfig.crop_samples": ("samples", "per training crop (random position) and per dev crop (first N); the "
                                           "window stored in the model card"),
    "DataConfig.batch_size": ("utterances", "per path per step (per rank under torchrun)"),
    "DataConfig.eval_batch_size": ("utterances", "per dev batch"),
    "DataConfig.num_workers": ("processes", "DataLoader workers (they die with the trainer)"),
    "DataConfig.max_train_utterances": ("utterances", "a fixed random subset, for quick experiments"),
    "AugmentConfig.where": ("", "`device`: batched RawBoost inside the step on the model's device; `workers`: the "
                                "reference RawBoost or a YAML chain (`augment.chain`) in the DataLoader workers"),
    "AugmentConfig.rawboost_algo": ("", "RawBoost algorithm 0-8"),
    "AugmentConfig.rawboost_params": ("", "any of `RawBoostParams`' fields"),
    "AugmentConfig.chain": ("path", "YAML augmentation chain for `where: workers`, instead of RawBoost "
                                    "(e.g. `configs/augment.yaml`)"),
    "TrainConfig.mode": ("", "see \"Modes\""),
    "TrainConfig.engine_mode": ("", "`joint`: one forward pass over both paths; `split`: one per path (see \"Modes\")"),
    "TrainConfig.one_pass": ("", "both path gradients from one batched pass (one vmapped forward/backward; joint "
                                 "mode: see `train.joint_one_pass`); `auto` = on CUDA only"),
    "TrainConfig.joint_one_pass": ("", "joint mode's one pass: `copies` (one forward/backward over two copies of the "
                                       "joint batch: fewest operators, twice the activation memory; falls back to "
                                       "the next if it fails on the first step, e.g. out of memory) or "
                                       "`batched_backward` (one backward batched over the two losses)"),
    "AlignerConfig.name": ("", "gradient aligner of `dpda` mode (`dpda.align`)"),
    "AlignerConfig.options": ("", "the aligner's constructor arguments"),
    "TrainConfig.epochs": ("epochs", "maximum number of epochs"),
    "TrainConfig.steps_per_epoch": ("steps", "cap on batches per epoch: the first N of each epoch's shuffled order"),
    "OptimizerConfig.name": ("", "optimizer"),
    "OptimizerConfig.lr": ("", "learning rate"),
    "OptimizerConfig.weight_decay": ("", "weight decay"),
    "OptimizerConfig.betas": ("", "Adam / AdamW betas"),
    "OptimizerConfig.momentum": ("", "SGD momentum (sgd only)"),
    "SchedulerConfig.name": ("", "learning-rate schedule"),
    "SchedulerConfig.step_size": ("epochs", "between learning-rate drops (`step`)"),
    "SchedulerConfig.gamma": ("", "learning-rate factor at each drop (`step`)"),
    "SchedulerConfig.min_lr": ("", "final learning rate (`cosine`)"),
    "TrainConfig.bonafide_weight": ("", "cross-entropy weight of the bona fide class"),
    "TrainConfig.spoof_weight": ("", "cross-entropy weight of the spoof class"),
    "TrainConfig.patience": ("epochs", "early stopping after N epochs without improvement of `train.monitor` "
                                       "(0: never)"),
    "TrainConfig.monitor": ("", "dev metric that ranks epochs and stops early"),
    "TrainConfig.top_k": ("checkpoints", "best epochs kept (and averaged); see \"The final model\""),
    "TrainConfig.final_model": ("", "what `model.pt` holds; see \"The final model\""),
    "TrainConfig.average_top_k": ("", "deprecated: `true` means `final_model: average`, `false` means `best`"),
    "TrainConfig.amp": ("", "`bf16` or `fp16` autocast (fp16 with dynamic loss scaling; a non-finite step is "
                            "skipped)"),
    "TrainConfig.grad_clip": ("", "clip the global gradient norm to this (after alignment)"),
    "TrainConfig.log_every": ("steps", "between step records in `metrics.jsonl` (statistics use every step)"),
}


def config_reference() -> str:
    """The Markdown table of every configuration key (type, default, unit, meaning), for docs/training.md."""
    from dpda.config import reference_table
    from dpda.data import FORMATS
    from dpda.models import model_names

    choices = {**_CHOICES, "data.format": tuple(FORMATS), "model.name": tuple(model_names())}
    return reference_table(RunConfig, KEY_DOCS, choices)
