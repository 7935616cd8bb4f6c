"""The model card: what a trained dpda model carries besides its weights, and loading a model from it.

A dpda model file (``model.pt`` of a run, every training checkpoint, a file
written by ``dpda import``) is a dict (see :mod:`dpda.inference.modelfile`)::

    format: 1
    model_name: "aasist-l"           # architecture: a dpda.models registry name
    model_config: {...}              # keyword overrides for build_model
    model_state: state_dict
    sample_rate: 16000               # Hz the model expects
    crop_samples: 64600              # samples per input window (the training crop)
    threshold: float | None          # dev-set EER threshold on logit[:, 1] (if validated)
    calibration: {"a": .., "b": ..} | None   # P(bona fide) = sigmoid(a * score + b), fitted on dev
    provenance: {...}                # where imported weights came from (dpda import)
    ...                              # training metadata (epoch, averaged_epochs, final_model, ...)

:class:`ModelCard` is the typed view of everything but the weights (and the
training state of a checkpoint); it is the one owner of a model's sample rate
and window length, with the model registry's defaults
(:func:`dpda.models.model_spec`) for a file that lacks them.
:func:`model_payload` writes a card and weights into the dict,
:func:`load_model` reads one back into a ready model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

from dpda.errors import PathLike

if TYPE_CHECKING:
    import torch.nn as nn

#: model options that only choose initial weights (not stored in model files)
INIT_ONLY_OPTIONS = ("ssl_pretrained", "trust_pickle")
#: payload keys that are training state, not part of the card
STATE_KEYS = ("optimizer", "scheduler", "engine", "rng")


@dataclass(frozen=True)
class ModelCard:
    """What a trained model is: architecture + options, input format, decision, provenance.

    ``sample_rate`` (Hz) and ``crop_samples`` (samples per input window) are
    what scoring feeds the model; ``threshold`` is the dev-set EER threshold on
    the score ``logit[:, 1]`` and ``calibration`` ``{"a", "b"}`` maps a score to
    P(bona fide) = sigmoid(a * score + b) (both None when not validated).
    ``provenance``: where imported weights came from. ``extra``: any other
    metadata of the file, in file order (training epoch, averaged epochs, ...).
    ``path``: the file it was read from.
    """

    model_name: str
    model_config: Dict[str, Any] = field(default_factory=dict)
    sample_rate: int = 0
    crop_samples: int = 0
    threshold: Optional[float] = None
    calibration: Optional[Dict[str, float]] = None
    provenance: Optional[Dict[str, Any]] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    path: Optional[str] = None
    format: int = 1

    def __post_init__(self) -> None:
        if not self.sample_rate or not self.crop_samples:  # a file without them: the registry's defaults
            from dpda.audio.crop import AASIST_NUM_SAMPLES
            from dpda.models import DEFAULT_SAMPLE_RATE, model_spec

            spec = model_spec(self.model_name)
            if not self.sample_rate:
                object.__setattr__(self, "sample_rate", spec.sample_rate if spec else DEFAULT_SAMPLE_RATE)
            if not self.crop_samples:
                object.__setattr__(self, "crop_samples", spec.crop_samples if spec else AASIST_NUM_SAMPLES)
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        object.__setattr__(self, "crop_samples", int(self.crop_samples))

    _NAMED = ("format", "model_name", "model_config", "sample_rate", "crop_samples", "threshold", "calibration",
              "provenance")

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], path: Optional[PathLike] = None) -> "ModelCard":
        """The card of a model file's dict (weights and training state are left out)."""
        extra = {k: v for k, v in payload.items()
                 if k not in cls._NAMED and not k.endswith("_state") and k not in STATE_KEYS}
        return cls(
            model_name=str(payload.get("model_name") or ""),
            model_config=dict(payload.get("model_config") or {}),
            sample_rate=int(payload.get("sample_rate") or 0),
            crop_samples=int(payload.get("crop_samples") or 0),
            threshold=payload.get("threshold"),
            calibration=payload.get("calibration"),
            provenance=payload.get("provenance"),
            extra=extra,
            path=None if path is None else str(path),
            format=int(payload.get("format") or 1),
        )

    def as_dict(self) -> Dict[str, Any]:
        """The card as the plain dict scorers expose as ``info`` (``path`` last, no weights)."""
        out: Dict[str, Any] = {"format": self.format, "model_name": self.model_name,
                               "model_config": dict(self.model_config), "sample_rate": self.sample_rate,
                               "crop_samples": self.crop_samples, "threshold": self.threshold,
                               "calibration": self.calibration}
        if self.provenance is not None:
            out["provenance"] = self.provenance
        out.update(self.extra)
        if self.path is not None:
            out["path"] = self.path
        return out

    def payload(self, model: "nn.Module") -> Dict[str, Any]:
        """The model file's dict for this card and ``model``'s weights (see the module docstring).

        Options that only say where initial weights come from (``ssl_pretrained``,
        ``trust_pickle``) are dropped from the stored model config: the file
        holds the weights, so loading it needs neither that file nor pickle.
        """
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        config = {k: v for k, v in dict(self.model_config).items() if k not in INIT_ONLY_OPTIONS}
        out = {"model_name": self.model_name, "model_config": config, "model_state": state,
               "sample_rate": int(self.sample_rate), "crop_samples": int(self.crop_samples),
               "threshold": self.threshold, "calibration": self.calibration}
        if self.provenance is not None:
            out["provenance"] = self.provenance
        out.update(self.extra)
        return out


def model_payload(
    model_name: str,
    model_config: Mapping[str, Any],
    model: "nn.Module",
    sample_rate: int,
    crop_samples: int,
    threshold: Optional[float] = None,
    calibration: Optional[Dict[str, float]] = None,
    **extra: Any,
) -> Dict[str, Any]:
    """The dict that :func:`load_model` understands: :meth:`ModelCard.payload` from keyword arguments."""
    provenance = extra.pop("provenance", None)
    card = ModelCard(model_name, dict(model_config), int(sample_rate), int(crop_samples), threshold, calibration,
                     provenance, extra)
    return card.payload(model)


def read_card(path: PathLike) -> ModelCard:
    """The card of a model file or run directory, without building the model (weights are mapped, not read)."""
    from dpda.inference.modelfile import load_checkpoint, resolve_model_path

    file = resolve_model_path(path)
    return ModelCard.from_payload(load_checkpoint(file, map_location="cpu", mmap=True), file)


def load_model_card(path: PathLike, device: Any = "cpu") -> Tuple["nn.Module", ModelCard]:
    """Build the model of a model file or run directory, load its weights, put it in eval mode.

    Raises :class:`~dpda.inference.modelfile.CheckpointError` for a file that
    is not a dpda model or whose weights do not fit its architecture.
    """
    from dpda.inference.modelfile import CheckpointError, load_checkpoint, resolve_model_path
    from dpda.models import build_model

    file = resolve_model_path(path)
    payload = load_checkpoint(file, map_location="cpu")
    for key in ("model_name", "model_state"):
        if key not in payload:
            raise CheckpointError(f"{file}: checkpoint has no {key!r}")
    card = ModelCard.from_payload(payload, file)
    model = build_model(card.model_name, **card.model_config)
    try:
        model.load_state_dict(payload["model_state"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{file}: weights do not fit model {card.model_name!r}: {str(e).splitlines()[0]}") from None
    model.to(device).eval()
    return model, card


def load_model(path: PathLike, device: Any = "cpu") -> Tuple["nn.Module", Dict[str, Any]]:
    """:func:`load_model_card` with the card as a plain dict (``sample_rate``, ``crop_samples``,
    ``threshold``, ``calibration``, ..., ``path``), as :class:`Scorer` keeps it in ``info``."""
    model, card = load_model_card(path, device)
    return model, card.as_dict()


__all__ = ["INIT_ONLY_OPTIONS", "ModelCard", "load_model", "load_model_card", "model_payload", "read_card"]
